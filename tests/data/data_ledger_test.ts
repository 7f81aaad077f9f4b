// The data ledger on real runs of the embedded default (4 local CPU executors) on a Hugging Face-tokenised dataset
// imported from a Megatron int32 .bin (so executors read a uint32 token file): the ledger's token ranges are the
// executors' inputs (step 1's group losses, which the executors computed from what they read, are recomputed here
// from the ranges alone), a killed and resumed run's ledger continues the same data order, `data trace` prints the
// right documents, and a dataset whose vocabulary does not fit the model is refused before a run directory exists.

import { prepareDataset } from "../../orchestrator/data/prepare.ts";
import { type DatasetIndex, readDatasetIndex } from "../../orchestrator/data/dataset_format.ts";
import { readDocumentRange } from "../../orchestrator/data/data_ledger.ts";
import { MEGATRON_MAGIC } from "../../orchestrator/data/megatron_format.ts";
import { denoTypesText } from "../../orchestrator/data/builtin_corpus.ts";
import { MODEL_PRESETS } from "../../core/model_shape.ts";
import { initParams, paramLayout } from "../../kernels/model.ts";
import { createCpuBackend } from "../../kernels/cpu/backend.ts";
import { UlyssesGpt } from "../../kernels/ulysses_model.ts";
import { packGroup, rankSlice } from "../../kernels/packing.ts";
import { SOLO_GROUP } from "../../kernels/group_comm.ts";
import { REPO_ROOT } from "../../orchestrator/cluster/bootstrap.ts";
import type { LedgerRecord } from "../../orchestrator/ledger/ledger.ts";
import { assert, assertEquals, assertIncludes, assertThrows } from "../assert.ts";
import { checkDatasetForModel, modelVocabularyOf } from "../../orchestrator/data/model_match.ts";
import { launchCli, ledger, startLaunch } from "../run/launch_harness.ts";
import { oracle, oracleMissing } from "./oracle.ts";

const ignore = oracleMissing !== undefined;
const tmp = await Deno.makeTempDir({ prefix: "flexsp-ledger-test-" });
const VOCAB = 600, MAX_SEQ = 128, SEED = 1;
const SETS = (ds: string, vocab = true) =>
  [
    `profile.path=${tmp}/no-profile.json`,
    `training.dataset=${ds}`,
    "training.steps=4",
    "training.checkpoint_interval=2",
    "training.global_batch=8",
    `model.max_seq=${MAX_SEQ}`,
    ...(vocab ? [`model.vocab=${VOCAB}`] : []),
    "cluster.nodes[0].executor=cpu",
    "planner.deterministic=true",
  ].flatMap((s) => ["--set", s]);

let texts: string[] = [];

/** A tokenised JSONL corpus, re-written as a Megatron int32 pair and imported (int32 stays in place: uint32). */
async function dataset(): Promise<string> {
  const dir = `${tmp}/ds`;
  if (await Deno.stat(`${dir}/manifest.json`).then(() => true, () => false)) return dir;
  const corpus = await denoTypesText();
  await Deno.writeTextFile(`${tmp}/corpus.txt`, corpus.slice(0, 300_000));
  await oracle("train_bpe", { style: "bytelevel", vocab: VOCAB, corpus: `${tmp}/corpus.txt`, out: `${tmp}/tok` });
  // Documents of 20-600 characters, so that some exceed max_seq tokens and are split into pieces.
  texts = corpus.split("\n\n").map((t) => t.trim()).filter((t) => t.length >= 20).slice(0, 300)
    .map((t) => t.slice(0, 600));
  await Deno.writeTextFile(`${tmp}/docs.jsonl`, texts.map((t) => JSON.stringify({ text: t })).join("\n"));
  await prepareDataset({ input: `${tmp}/docs.jsonl`, out: `${tmp}/ds16`, tokenizer: `${tmp}/tok` });
  const ds16 = await readDatasetIndex(`${tmp}/ds16`);
  assertEquals(ds16.lengths.length, texts.length);
  // The Megatron int32 pair (format: orchestrator/data/megatron_format.ts; checked against megatron-core elsewhere).
  const tok16 = new Uint16Array((await Deno.readFile(ds16.tokensPath)).buffer);
  await Deno.writeFile(`${tmp}/mg.bin`, new Uint8Array(Int32Array.from(tok16).buffer));
  const s = texts.length;
  const idx = new Uint8Array(34 + 12 * s + 8 * (s + 1));
  const dv = new DataView(idx.buffer);
  idx.set(MEGATRON_MAGIC);
  dv.setBigUint64(9, 1n, true);
  dv.setUint8(17, 4);
  dv.setBigUint64(18, BigInt(s), true);
  dv.setBigUint64(26, BigInt(s + 1), true);
  for (let i = 0; i < s; i++) {
    dv.setInt32(34 + 4 * i, ds16.lengths[i], true);
    dv.setBigInt64(34 + 4 * s + 8 * i, BigInt(ds16.offsets[i] * 4), true);
  }
  for (let i = 0; i <= s; i++) dv.setBigInt64(34 + 12 * s + 8 * i, BigInt(i), true);
  await Deno.writeFile(`${tmp}/mg.idx`, idx);
  const { manifest } = await prepareDataset({
    input: `${tmp}/mg`,
    format: "megatron",
    out: dir,
    tokenizer: `${tmp}/tok`,
  });
  assertEquals([manifest.tokenBytes, manifest.source.tokens], [4, "hardlink"]);
  return dir;
}

/** Step 1's loss of each group, from the ledger's token ranges, on a fresh model with the run's seed. */
async function groupLossesFromRanges(ds: DatasetIndex, r: LedgerRecord, shift = 0): Promise<number[]> {
  const shape = { ...MODEL_PRESETS["gpt-tiny"], vocab: VOCAB, maxSeq: MAX_SEQ };
  const layout = paramLayout(shape);
  const b = createCpuBackend();
  const model = new UlyssesGpt(b, layout, b.upload(initParams(layout, SEED)), b.alloc(layout.total));
  const byId = new Map(r.sequences.map((q) => [q.id, q]));
  const out: number[] = [];
  for (const mb of r.plan.microBatches) {
    for (const g of mb.groups) {
      if (g.sequences.length === 0) continue;
      const seqs: Int32Array[] = [];
      for (const id of g.sequences) {
        const q = byId.get(id)!;
        const off = Math.max(0, Math.min(q.offset + shift, ds.lengths[q.doc!] - q.length));
        seqs.push(Int32Array.from(await readDocumentRange(ds, q.doc!, off, q.length)));
      }
      const packed = packGroup(seqs, 1, shape.maxSeq, shape.vocab);
      const res = await model.run(rankSlice(packed, 0), SOLO_GROUP, { backward: false });
      out.push(res.lossSum / packed.targetCount);
    }
  }
  return out;
}

Deno.test({
  name: "data ledger: token ranges are the executors' inputs; a resumed run continues the same data order; trace",
  ignore,
  async fn() {
    const dir = await dataset();
    const ds = await readDatasetIndex(dir);
    const ref = `${tmp}/run-ref`;
    const r = await launchCli(["configs/local.yaml", ...SETS(dir), "--run-dir", ref]);
    assertEquals(r.code, 0, r.out + r.err);
    const recs = await ledger(ref);
    assertEquals(recs.map((x) => x.step), [1, 2, 3, 4]);
    let pieces = 0;
    for (const rec of recs) {
      const planned = rec.plan.microBatches.flatMap((mb) => mb.groups.flatMap((g) => g.sequences)).sort((a, b) =>
        a - b
      );
      assertEquals(rec.sequences.map((q) => q.id).sort((a, b) => a - b), planned, `step ${rec.step}: every sequence`);
      for (const q of rec.sequences) {
        assert(q.doc !== null && q.offset + q.length <= ds.lengths[q.doc], `step ${rec.step}: range inside its doc`);
        assertEquals(
          q.length,
          rec.plan.microBatches.flatMap((mb) => mb.groups).flatMap((g) =>
            g.sequences.map((id, i) => [id, g.lengths[i]])
          ).find(([id]) => id === q.id)![1],
          "length as planned",
        );
        if (q.offset > 0) pieces++;
      }
    }
    assert(pieces > 0, "some sequences are later pieces of split documents");
    // Step 1: the executors' group losses (computed from the tokens they read) from the ranges alone.
    const want = recs[0].plan.microBatches.flatMap((mb) => mb.groups).filter((g) => g.sequences.length > 0)
      .map((g) => g.loss!);
    const got = await groupLossesFromRanges(ds, recs[0]);
    assertEquals(got.length, want.length);
    for (let i = 0; i < got.length; i++) {
      assert(
        Math.abs(got[i] - want[i]) <= 2e-6 * want[i],
        `group ${i}: loss ${got[i]} from the ranges, ${want[i]} run`,
      );
    }
    // The check can fail: ranges shifted by one token give other losses.
    const shifted = await groupLossesFromRanges(ds, recs[0], 1);
    assert(shifted.some((x, i) => Math.abs(x - want[i]) > 1e-4 * want[i]), "shifted ranges are detected");

    // Killed after step 3 (checkpoint at 2) and resumed: the same sequences at every step.
    const run = `${tmp}/run-kill`;
    const p = startLaunch(["configs/local.yaml", ...SETS(dir), "--run-dir", run]);
    await p.waitFor("step 3/4", 240_000);
    p.child.kill("SIGKILL");
    await p.finish();
    const again = await launchCli(["configs/local.yaml", ...SETS(dir), "--resume", run]);
    assertEquals(again.code, 0, again.out + again.err);
    const resumed = await ledger(run);
    assertEquals(resumed.map((x) => x.step), [1, 2, 3, 4]);
    assertEquals(resumed.map((x) => x.sequences), recs.map((x) => x.sequences), "same data order after resume");

    // data trace: each sequence with its document, range and a preview of that document's text.
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", `${REPO_ROOT}/orchestrator/cli/data.ts`, "trace", ref, "--step", "2", "--preview", "30"],
      stdout: "piped",
      stderr: "piped",
      env: { NO_COLOR: "1" },
    }).output();
    const text = new TextDecoder().decode(out.stdout);
    assert(out.success, text + new TextDecoder().decode(out.stderr));
    const lines = text.trim().split("\n");
    assertIncludes(lines[0], `step 2: ${recs[1].sequences.length} sequences`);
    for (const q of recs[1].sequences) {
      const line = lines.find((l) => l.trim().startsWith(`${q.id} `));
      assert(line, `a line for sequence ${q.id}:\n${text}`);
      const [, doc, range] = line.trim().match(/^\d+\s+(\d+)\s+(\[\d+, \d+\))/)!;
      assertEquals([Number(doc), range], [q.doc, `[${q.offset}, ${q.offset + q.length})`]);
      const preview = JSON.parse(`"${line.slice(line.indexOf(")") + 1).trim().replace(/\.\.\.$/, "")}"`) as string;
      const source = texts[q.doc!];
      // The preview is that document's text (at the piece's start): its first 20 characters occur there.
      assert(source.includes(preview.slice(0, 20)), `sequence ${q.id}: ${JSON.stringify(preview)} not in doc ${q.doc}`);
      if (q.offset === 0) assert(source.startsWith(preview.slice(0, 20)), `doc ${q.doc} starts with the preview`);
    }
    const bad = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", `${REPO_ROOT}/orchestrator/cli/data.ts`, "trace", ref, "--step", "9"],
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert(!bad.success);
    assertIncludes(new TextDecoder().decode(bad.stderr), "no step 9", "1..4");
  },
});

Deno.test({
  name: "launch: a dataset whose vocabulary does not fit the model is refused before a run directory exists",
  ignore,
  async fn() {
    const dir = await dataset();
    const run = `${tmp}/run-mismatch`;
    const r = await launchCli(["configs/local.yaml", ...SETS(dir, false), "--run-dir", run]);
    assert(r.code !== 0, "refused");
    assertIncludes(r.err, dir, "600 token ids do not fit the model's vocabulary of 256", "model.preset gpt-tiny");
    assert(!r.err.includes("    at "), `no stack trace:\n${r.err}`);
    assertEquals(await Deno.stat(run).then(() => true, () => false), false, "no run directory");
    // A model with its own tokenizer (a checkpoint directory, as `model.from` gives): the same tokenizer passes,
    // another one (here: the same tokenizer.json with another tokenizer_config.json) is refused.
    const m = (await readDatasetIndex(dir)).manifest;
    checkDatasetForModel(dir, m, await modelVocabularyOf(`${tmp}/tok`, VOCAB, "model.from tok"));
    await Deno.mkdir(`${tmp}/other`);
    await Deno.copyFile(`${tmp}/tok/tokenizer.json`, `${tmp}/other/tokenizer.json`);
    await Deno.writeTextFile(`${tmp}/other/tokenizer_config.json`, JSON.stringify({ eos_token: "<|endoftext|>" }));
    const other = await modelVocabularyOf(`${tmp}/other`, 1000, "model.from other/config.json");
    const msg = await assertThrows(() => checkDatasetForModel(dir, m, other), "tokenised with");
    assertIncludes(msg, "other/tokenizer.json", "model.from other/config.json", "--tokenizer");
  },
});

globalThis.addEventListener("unload", () => {
  try {
    Deno.removeSync(tmp, { recursive: true });
  } catch { /* gone */ }
});
