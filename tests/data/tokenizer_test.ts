// Hugging Face tokenizers in `data prepare`: token ids equal the Rust `tokenizers` package's (an independent
// implementation) on 240 mixed documents, for a GPT-2-like byte-level BPE (EOS per document from
// tokenizer_config.json), a Llama-like Metaspace BPE with byte fallback (BOS from its template and EOS from the
// config), and one whose ids pass 65,535 (uint32 token file). The manifest records hash, vocabulary and specials.

import { prepareDataset } from "../../orchestrator/data/prepare.ts";
import { loadTokenizer, tokenizerIdentity } from "../../orchestrator/data/tokenizer.ts";
import { denoTypesText } from "../../orchestrator/data/builtin_corpus.ts";
import { assert, assertEquals } from "../assert.ts";
import { datasetTokens, oracle, oracleMissing } from "./oracle.ts";
import { mixedDocuments } from "./mixed_documents.ts";

Deno.test({
  name: "tokenizer: ids equal the Python tokenizers package's on 240 mixed documents (3 tokenizers, uint16 and uint32)",
  ignore: oracleMissing !== undefined,
  async fn() {
    const tmp = await Deno.makeTempDir({ prefix: "flexsp-tok-test-" });
    try {
      const corpus = await denoTypesText();
      await Deno.writeTextFile(`${tmp}/corpus.txt`, corpus);
      const docs = mixedDocuments(corpus, 240);
      await Deno.writeTextFile(`${tmp}/docs.jsonl`, docs.map((t) => JSON.stringify({ body: t })).join("\n") + "\n");
      await oracle("train_bpe", { style: "bytelevel", vocab: 1200, corpus: `${tmp}/corpus.txt`, out: `${tmp}/gpt` });
      await oracle("train_bpe", { style: "metaspace", vocab: 1200, corpus: `${tmp}/corpus.txt`, out: `${tmp}/llama` });
      await oracle("shift_ids", { src: `${tmp}/gpt`, out: `${tmp}/wide`, shift: 70000 });
      for (const name of ["gpt", "llama", "wide"]) {
        const tk = `${tmp}/${name}`;
        const want = await oracle<{ ids: number[][]; vocab: number }>("encode", { tokenizer: tk, texts: docs });
        const { manifest: m } = await prepareDataset({
          input: `${tmp}/docs.jsonl`,
          out: `${tmp}/ds-${name}`,
          field: "body",
          tokenizer: tk,
          minLength: 1,
        });
        const got = await datasetTokens(`${tmp}/ds-${name}`);
        assertEquals(got.length, docs.length, `${name}: documents`);
        for (let i = 0; i < docs.length; i++) {
          assertEquals(got[i], want.ids[i], `${name}: document ${i} ${JSON.stringify(docs[i].slice(0, 60))}`);
        }
        assertEquals(m.vocab, want.vocab, `${name}: vocab`);
        assertEquals(m.tokenBytes, name === "wide" ? 4 : 2, `${name}: token width`);
        assertEquals(m.tokenizer, "huggingface");
        assertEquals(m.tokenizerInfo!.hash, await tokenizerIdentity(tk));
        assertEquals(m.tokens, want.ids.reduce((s, x) => s + x.length, 0));
        const sp = m.tokenizerInfo!.special;
        if (name === "llama") {
          assertEquals([sp.bos?.token, sp.eos?.token, sp.addBos, sp.addEos], ["<s>", "</s>", true, true]);
          assert(got.every((ids) => ids[0] === sp.bos!.id && ids[ids.length - 1] === sp.eos!.id), "BOS ... EOS");
        } else {
          assertEquals([sp.eos?.token, sp.addBos, sp.addEos], ["<|endoftext|>", false, true]);
        }
        if (name === "wide") assert(Math.max(...got.flat()) > 65535, "ids past uint16");
        if (name === "gpt") {
          // Worker threads (the default uses the cores) and this thread give the same dataset, byte for byte.
          for (const workers of [1, 3]) {
            const r = await prepareDataset({
              input: `${tmp}/docs.jsonl`,
              out: `${tmp}/ds-${name}-${workers}`,
              field: "body",
              tokenizer: tk,
              minLength: 1,
              workers,
            });
            assertEquals(r.manifest.contentHash, m.contentHash, `${workers} worker(s)`);
          }
        }
      }
      // The same tokenizer.json with another config is another tokenizer.
      const a = await loadTokenizer(`${tmp}/gpt/tokenizer.json`);
      await Deno.writeTextFile(`${tmp}/gpt/tokenizer_config.json`, JSON.stringify({ eos_token: "<|endoftext|>" }));
      const b = await loadTokenizer(`${tmp}/gpt`);
      assert(a.info.hash !== b.info.hash, "the config is part of the identity");
      assertEquals(b.encode("hello world").includes(b.info.special.eos!.id), false);
    } finally {
      await Deno.remove(tmp, { recursive: true });
    }
  },
});
