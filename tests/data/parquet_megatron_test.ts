// Parquet and Megatron inputs of `data prepare`, and `data export --format megatron`, against independent writers
// and readers: pyarrow writes Parquet with several row groups and codecs (read back text for text), megatron-core's
// IndexedDatasetBuilder writes .bin/.idx (imported token for token, kept in place where the dtype allows), and
// megatron-core's IndexedDataset reads flexsp's export. Bad inputs get one clear error and leave nothing behind.

import { prepareDataset } from "../../orchestrator/data/prepare.ts";
import { exportMegatron } from "../../orchestrator/data/megatron_format.ts";
import { DATASET_FILES, readDatasetIndex } from "../../orchestrator/data/dataset_format.ts";
import { denoTypesText } from "../../orchestrator/data/builtin_corpus.ts";
import { assert, assertEquals, assertIncludes, assertThrows } from "../assert.ts";
import { datasetTokens, oracle, oracleMissing } from "./oracle.ts";
import { mixedDocuments } from "./mixed_documents.ts";

const ignore = oracleMissing !== undefined;
const dec = new TextDecoder();

async function withTemp(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "flexsp-pq-mg-test-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** Whether a path exists. */
const exists = (p: string) => Deno.stat(p).then(() => true, () => false);

const texts = async (dir: string) => (await datasetTokens(dir)).map((ids) => dec.decode(Uint8Array.from(ids)));

Deno.test({
  name: "parquet: pyarrow files with several row groups and codecs, a file or a directory of shards, read back",
  ignore,
  fn: () =>
    withTemp(async (tmp) => {
      const docs = mixedDocuments(await denoTypesText(), 300, 3);
      await Deno.mkdir(`${tmp}/shards`);
      const codecs = ["snappy", "gzip", "zstd", "brotli", "none"];
      const per = Math.ceil(docs.length / codecs.length);
      for (let i = 0; i < codecs.length; i++) {
        const r = await oracle<{ row_groups: number }>("write_parquet", {
          path: `${tmp}/shards/part-${i}.parquet`,
          texts: docs.slice(i * per, (i + 1) * per),
          column: "content",
          codec: codecs[i],
          row_group_size: 17,
        });
        assert(r.row_groups >= 3, `${codecs[i]}: several row groups`);
      }
      const { manifest: m } = await prepareDataset({ input: `${tmp}/shards`, out: `${tmp}/ds`, field: "content" });
      assertEquals(m.source.kind, "parquet");
      assertEquals(await texts(`${tmp}/ds`), docs);
      // One file, --limit and --shuffle-seed: the first N documents, listed in a seeded order.
      const one = `${tmp}/shards/part-1.parquet`;
      await prepareDataset({ input: one, out: `${tmp}/lim`, field: "content", limit: 25, shuffleSeed: 9 });
      const got = await texts(`${tmp}/lim`);
      const first = docs.slice(per, per + 25);
      assertEquals([...got].sort(), [...first].sort());
      assert(JSON.stringify(got) !== JSON.stringify(first), "shuffled");
      await prepareDataset({ input: one, out: `${tmp}/lim2`, field: "content", limit: 25, shuffleSeed: 9 });
      assertEquals(await texts(`${tmp}/lim2`), got, "same seed, same order");

      // Bad input: a missing column, a corrupt file. One clear error; the output directory holds nothing.
      let msg = await assertThrows(() => prepareDataset({ input: one, out: `${tmp}/bad1` }), 'no column "text"');
      assertIncludes(msg, '"id"', '"content"', "--field");
      assertEquals(await exists(`${tmp}/bad1`), false, "a failed prepare removes the directory it created");
      const bytes = await Deno.readFile(one);
      const corrupt = bytes.slice();
      for (let i = 8; i < corrupt.length / 2; i++) corrupt[i] ^= 0x5a;
      await Deno.writeFile(`${tmp}/corrupt.parquet`, corrupt);
      msg = await assertThrows(
        () => prepareDataset({ input: `${tmp}/corrupt.parquet`, out: `${tmp}/bad2`, field: "content" }),
        "corrupt.parquet",
      );
      assert(!msg.includes("    at "), `no stack trace: ${msg}`);
      assertEquals(await exists(`${tmp}/bad2`), false, "a failed prepare removes the directory it created");
      await Deno.writeFile(`${tmp}/short.parquet`, bytes.slice(0, bytes.length - 100));
      await assertThrows(
        () => prepareDataset({ input: `${tmp}/short.parquet`, out: `${tmp}/bad3`, field: "content" }),
        "not a readable Parquet file",
      );
      assertEquals(await exists(`${tmp}/bad3`), false, "a failed prepare removes the directory it created");
    }),
});

Deno.test("jsonl: --field picks the text; a record without it is named by file and line and nothing is written", () =>
  withTemp(async (tmp) => {
    await Deno.writeTextFile(`${tmp}/a.jsonl`, '{"content": "first doc"}\n{"content": "second doc"}\n');
    await prepareDataset({ input: `${tmp}/a.jsonl`, out: `${tmp}/ok`, field: "content" });
    assertEquals(await texts(`${tmp}/ok`), ["first doc", "second doc"]);
    await Deno.writeTextFile(`${tmp}/b.jsonl`, '{"content": "first doc"}\n{"body": "no content"}\n');
    const msg = await assertThrows(() =>
      prepareDataset({ input: `${tmp}/b.jsonl`, out: `${tmp}/bad`, field: "content" })
    );
    assertIncludes(msg, "b.jsonl:2", '"content"', '"body"', "--field");
    assertEquals(await exists(`${tmp}/bad`), false, "a failed prepare removes the directory it created");
  }));

Deno.test({
  name: "megatron: IndexedDatasetBuilder output imports token for token; flexsp's export reads in IndexedDataset",
  ignore,
  fn: () =>
    withTemp(async (tmp) => {
      await oracle("train_bpe", {
        style: "bytelevel",
        vocab: 600,
        corpus: await Deno.makeTempFile({ dir: tmp }).then(async (p) => {
          await Deno.writeTextFile(p, (await denoTypesText()).slice(0, 200_000));
          return p;
        }),
        out: `${tmp}/tok`,
      });
      // Documents of one or more sequences, ids below the vocabulary.
      let seed = 1;
      const rnd = (n: number) => (seed = (seed * 1103515245 + 12345) % 2 ** 31) % n;
      const documents = Array.from(
        { length: 120 },
        () => Array.from({ length: 1 + rnd(3) }, () => Array.from({ length: 1 + rnd(300) }, () => rnd(600))),
      );
      const dtypes = ["uint16", "int32", "int64"];
      // One Python process builds every input (importing megatron-core takes seconds), one reads every output.
      await oracle("megatron_build", {
        jobs: [
          ...dtypes.map((dtype) => ({ prefix: `${tmp}/mg-${dtype}`, dtype, documents })),
          { prefix: `${tmp}/big`, dtype: "uint16", documents: [[[1, 2, 3, 900]]] },
        ],
      });
      const exported: { prefix: string; dtype: string }[] = [];
      for (const dtype of dtypes) {
        const prefix = `${tmp}/mg-${dtype}`;
        const { manifest: m } = await prepareDataset({
          input: prefix,
          format: "megatron",
          out: `${tmp}/ds-${dtype}`,
          tokenizer: `${tmp}/tok`,
        });
        assertEquals(await datasetTokens(`${tmp}/ds-${dtype}`), documents.map((d) => d.flat()), dtype);
        assertEquals(m.source.tokens, dtype === "int64" ? "converted" : "hardlink", `${dtype}: kept in place?`);
        assertEquals(m.tokenBytes, dtype === "int32" ? 4 : 2);
        assertEquals(m.vocab, 600);
        if (dtype !== "int64") {
          const a = await Deno.stat(`${prefix}.bin`), b = await Deno.stat(`${tmp}/ds-${dtype}/${DATASET_FILES.tokens}`);
          assertEquals(a.ino, b.ino, "the .bin is the token file");
        }
        const r = await exportMegatron({ dataset: `${tmp}/ds-${dtype}`, prefix: `${tmp}/out-${dtype}` });
        exported.push({ prefix: `${tmp}/out-${dtype}`, dtype: r.dtype });
      }
      const texts300 = Array.from({ length: 40 }, (_, i) => `document ${i} ` + "word ".repeat(i));
      await Deno.writeTextFile(`${tmp}/s.jsonl`, texts300.map((t) => JSON.stringify({ text: t })).join("\n"));
      await prepareDataset({ input: `${tmp}/s.jsonl`, out: `${tmp}/shuf`, tokenizer: `${tmp}/tok`, shuffleSeed: 4 });
      await exportMegatron({ dataset: `${tmp}/shuf`, prefix: `${tmp}/shuf-out` });
      const back = await oracle<{ datasets: { sequences: number[][]; dtype: string; document_indices: number[] }[] }>(
        "megatron_read",
        { prefixes: [...exported.map((e) => e.prefix), `${tmp}/shuf-out`] },
      );
      for (let i = 0; i < exported.length; i++) {
        const b = back.datasets[i];
        assertEquals(b.sequences, documents.map((d) => d.flat()), exported[i].prefix);
        assertEquals(b.dtype, exported[i].dtype);
        assertEquals(b.document_indices, Array.from({ length: documents.length + 1 }, (_, i) => i));
      }
      assertEquals(back.datasets[3].sequences, await datasetTokens(`${tmp}/shuf`), "export follows the index order");

      // Bad input: no --tokenizer, wrong magic, truncated .bin, ids outside the vocabulary.
      const p = `${tmp}/mg-uint16`;
      await assertThrows(() => prepareDataset({ input: p, format: "megatron", out: `${tmp}/b0` }), "needs --tokenizer");
      const idx = await Deno.readFile(`${p}.idx`);
      const badMagic = idx.slice();
      badMagic.set(new TextEncoder().encode("NOTANIDX"), 0);
      await Deno.writeFile(`${tmp}/magic.idx`, badMagic);
      await Deno.copyFile(`${p}.bin`, `${tmp}/magic.bin`);
      const mg = (input: string, out: string) =>
        prepareDataset({ input, format: "megatron", out, tokenizer: `${tmp}/tok` });
      let msg = await assertThrows(() => mg(`${tmp}/magic`, `${tmp}/b1`), "not a Megatron index");
      assertIncludes(msg, "magic.idx", "MMIDIDX");
      assertEquals(await exists(`${tmp}/b1`), false);
      await Deno.copyFile(`${p}.idx`, `${tmp}/trunc.idx`);
      const bin = await Deno.readFile(`${p}.bin`);
      await Deno.writeFile(`${tmp}/trunc.bin`, bin.slice(0, bin.length - 10));
      msg = await assertThrows(() => mg(`${tmp}/trunc`, `${tmp}/b2`), "truncated");
      assertIncludes(msg, "trunc.bin");
      assertEquals(await exists(`${tmp}/b2`), false);
      await Deno.writeFile(`${tmp}/trunc2.idx`, idx.slice(0, idx.length - 8));
      await Deno.copyFile(`${p}.bin`, `${tmp}/trunc2.bin`);
      await assertThrows(() => mg(`${tmp}/trunc2`, `${tmp}/b3`), "damaged or truncated");
      // A token id outside the tokenizer's vocabulary: refused, and the output directory holds nothing.
      msg = await assertThrows(() => mg(`${tmp}/big`, `${tmp}/b4`), "outside the tokenizer's vocabulary of 600");
      assertEquals(await exists(`${tmp}/b4`), false, "a failed prepare removes the directory it created");
      // The source .bin is untouched by a failed in-place import.
      assertEquals((await Deno.stat(`${tmp}/big.bin`)).nlink, 1);
      assert((await readDatasetIndex(`${tmp}/ds-uint16`)).manifest.documents === 120);
    }),
});

Deno.test("deno task data prepare --field --limit / export --format megatron / a Megatron import without --tokenizer", () =>
  withTemp(async (tmp) => {
    const cli = async (...args: string[]) => {
      const o = await new Deno.Command(Deno.execPath(), {
        args: ["run", "-A", new URL("../../orchestrator/cli/data.ts", import.meta.url).pathname, ...args],
        stdout: "piped",
        stderr: "piped",
        env: { NO_COLOR: "1" },
      }).output();
      return { code: o.code, out: dec.decode(o.stdout), err: dec.decode(o.stderr) };
    };
    await Deno.writeTextFile(
      `${tmp}/a.jsonl`,
      Array.from({ length: 50 }, (_, i) => JSON.stringify({ content: `document number ${i}` })).join("\n"),
    );
    let r = await cli(
      "prepare",
      "--input",
      `${tmp}/a.jsonl`,
      "--field",
      "content",
      "--limit",
      "20",
      "--out",
      `${tmp}/ds`,
    );
    assertEquals(r.code, 0, r.err);
    assertIncludes(r.out, "20 documents");
    assertIncludes(r.err, "read ", "(100.0%)", "20 documents");
    r = await cli("export", `${tmp}/ds`, "--format", "megatron", "--out", `${tmp}/mg/corpus`);
    assertEquals(r.code, 0, r.err);
    assertIncludes(r.out, "corpus.bin", "corpus.idx", "20 documents", "uint16");
    r = await cli("prepare", "--input", `${tmp}/mg/corpus`, "--format", "megatron", "--out", `${tmp}/back`);
    assertEquals(r.code, 1);
    assertIncludes(r.err, "--format megatron needs --tokenizer");
    assert(!r.err.includes("    at "), r.err);
    r = await cli("export", `${tmp}/ds`, "--format", "megatron", "--out", `${tmp}/mg/corpus`);
    assertEquals(r.code, 1);
    assertIncludes(r.err, "exists; pass --overwrite");
  }));
