// `deno task data`: build, inspect, export and trace indexed token datasets.
//   prepare --input PATH --out DIR   text files, JSONL, Parquet, a text file, or a Megatron .bin/.idx (--format megatron)
//   prepare --builtin deno-corpus --out DIR
//   info DIR [--verify]              manifest summary and length histogram; --verify re-hashes the token file
//   export DIR --format megatron --out PREFIX
//   trace RUN_DIR --step N           which documents and token ranges each sequence of a step trained on

import { fileSha256 } from "../../core/hash.ts";
import { runCli, UserError } from "../errors.ts";
import { parseCommand, positiveInt } from "./args.ts";
import { buildBuiltinDataset, BUILTIN_DATASETS, type BuiltinDataset } from "../data/builtin_corpus.ts";
import { DATASET_FILES, readDatasetIndex } from "../data/dataset_format.ts";
import { INPUT_FORMATS, type InputFormat, prepareDataset, type PrepareProgress } from "../data/prepare.ts";
import { exportMegatron } from "../data/megatron_format.ts";
import { type LedgerSequence, traceLines } from "../data/data_ledger.ts";
import { loadConfig } from "../config/load.ts";
import { readLedger } from "../ledger/ledger.ts";
import { readRunInfo } from "../run/run_dir.ts";
import { SPLIT_MODES, type SplitMode } from "../data/text_splitter.ts";

const USAGE = `usage: deno task data prepare --input PATH --out DIR [options]
       deno task data prepare --builtin deno-corpus --out DIR
       deno task data info DIR [--verify]
       deno task data export DIR --format megatron --out PREFIX [--overwrite]
       deno task data trace RUN_DIR --step N [--dataset DIR] [--preview CHARS]

prepare: builds an indexed token dataset: DIR/tokens.bin (tokens, little-endian: uint16 when the vocabulary has at
most 65,536 ids, else uint32), DIR/index.bin (per document: uint64 LE token offset, uint32 LE length, uint32
reserved) and DIR/manifest.json (tokenizer hash, vocabulary and special tokens, counts, sha256 of each file, content
hash), written last. Streams its input; progress on stderr.
  --input PATH        a directory (every file, recursively, sorted; hidden and binary files skipped), a .jsonl file
                      (one object per line), a .parquet file or a directory of .parquet shards, a text file, or
                      with --format megatron the PREFIX of PREFIX.bin / PREFIX.idx
  --format F          ${INPUT_FORMATS.join(", ")} (default: from the input; megatron must be given)
  --tokenizer PATH    a Hugging Face tokenizer.json, or a model directory holding one (and tokenizer_config.json,
                      whose add_bos_token / add_eos_token say whether documents get BOS / EOS); default: bytes
                      (one token per UTF-8 byte, vocabulary 256). Required with --format megatron.
  --field NAME        the JSONL field or Parquet column holding the text (default text)
  --limit N           keep only the first N documents
  --shuffle-seed S    list the documents in the index in a random order drawn from S
  --split MODE        how text becomes documents: file (one per file; default for a directory), paragraph (blank
                      lines separate; default for a text file), line, or code (a declaration, JSDoc comment or
                      heading after a blank line starts one)
  --min-length N      skip documents shorter than N tokens (default 2)
  --overwrite         replace a dataset already in DIR
  --builtin NAME      build a built-in corpus instead: ${BUILTIN_DATASETS.join(", ")} (the declarations of the Deno
                      runtime, \`deno types\`, one document per declaration)
info: prints the manifest and a length histogram; --verify re-reads tokens.bin and checks its sha256.
export: writes the dataset as a Megatron-LM indexed dataset, PREFIX.bin and PREFIX.idx (one sequence per document;
uint16 tokens, or int32 above 65,536 ids).
trace: prints, for each sequence a step of a run trained on, its sequence id, the document, the token range of that
document and a text preview (the run's training.dataset, or --dataset DIR).`;

function fmtBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 ** 2) return `${(n / 1024).toFixed(1)} KiB`;
  if (n < 1024 ** 3) return `${(n / 1024 ** 2).toFixed(1)} MiB`;
  return `${(n / 1024 ** 3).toFixed(2)} GiB`;
}

function progressPrinter(): { onProgress: (p: PrepareProgress) => void; done: () => void } {
  const tty = Deno.stderr.isTerminal();
  const t0 = performance.now();
  let last = 0;
  const enc = new TextEncoder();
  return {
    onProgress: (p) => {
      const now = performance.now();
      if (!tty && now - last < 5000 && p.bytesRead < p.totalBytes) return;
      last = now;
      const pct = p.totalBytes ? ((100 * p.bytesRead) / p.totalBytes).toFixed(1) : "100";
      const rate = p.bytesRead / Math.max(1e-3, (now - t0) / 1000);
      const line = `read ${fmtBytes(p.bytesRead)} of ${fmtBytes(p.totalBytes)} (${pct}%), ${p.documents} documents, ` +
        `${p.tokens} tokens, ${fmtBytes(rate)}/s`;
      if (tty) Deno.stderr.writeSync(enc.encode(`\r\x1b[K${line}`));
      else console.error(line);
    },
    done: () => {
      if (tty) Deno.stderr.writeSync(enc.encode("\n"));
    },
  };
}

async function prepare(argv: string[]): Promise<void> {
  const { values, positionals } = parseCommand(argv, USAGE, {
    input: { type: "string" },
    out: { type: "string" },
    format: { type: "string" },
    split: { type: "string" },
    "min-length": { type: "string" },
    overwrite: { type: "boolean" },
    builtin: { type: "string" },
    tokenizer: { type: "string" },
    field: { type: "string" },
    limit: { type: "string" },
    "shuffle-seed": { type: "string" },
  });
  if (positionals.length) throw new UserError(`unexpected argument ${positionals[0]}\n\n${USAGE}`);
  const out = values.out as string | undefined;
  if (!out) throw new UserError(`--out DIR is required\n\n${USAGE}`);
  const progress = progressPrinter();
  if (values.builtin !== undefined) {
    const name = values.builtin as string;
    if (!(BUILTIN_DATASETS as readonly string[]).includes(name)) {
      throw new UserError(`--builtin ${name}: unknown; known: ${BUILTIN_DATASETS.join(", ")}`);
    }
    const m = await buildBuiltinDataset(name as BuiltinDataset, out, progress.onProgress);
    progress.done();
    report(out, m.documents, m.tokens, m.lengths, m.contentHash, m.skipped);
    return;
  }
  const input = values.input as string | undefined;
  if (!input) throw new UserError(`--input PATH (or --builtin NAME) is required\n\n${USAGE}`);
  const format = values.format as string | undefined;
  if (format !== undefined && !(INPUT_FORMATS as readonly string[]).includes(format)) {
    throw new UserError(`--format ${format}: expected one of ${INPUT_FORMATS.join(", ")}`);
  }
  const split = values.split as string | undefined;
  if (split !== undefined && !(SPLIT_MODES as readonly string[]).includes(split)) {
    throw new UserError(`--split ${split}: expected one of ${SPLIT_MODES.join(", ")}`);
  }
  const { manifest: m, ms } = await prepareDataset({
    input,
    out,
    format: format as InputFormat | undefined,
    split: split as SplitMode | undefined,
    minLength: positiveInt("min-length", values["min-length"] as string | undefined, 2),
    overwrite: Boolean(values.overwrite),
    tokenizer: values.tokenizer as string | undefined,
    field: values.field as string | undefined,
    limit: values.limit === undefined ? undefined : positiveInt("limit", values.limit as string, 1),
    shuffleSeed: values["shuffle-seed"] === undefined
      ? undefined
      : nonNegativeInt("shuffle-seed", values["shuffle-seed"] as string),
    onProgress: progress.onProgress,
  });
  progress.done();
  report(out, m.documents, m.tokens, m.lengths, m.contentHash, m.skipped, ms);
  const t = m.tokenizerInfo;
  if (t) {
    const sp = [
      t.special.addBos && t.special.bos ? `BOS ${t.special.bos.token}` : "",
      t.special.addEos && t.special.eos ? `EOS ${t.special.eos.token}` : "",
    ]
      .filter(Boolean);
    console.log(
      `tokenizer ${t.path} (vocab ${t.vocab}, uint${8 * m.tokenBytes} tokens${
        sp.length ? `, each document gets ${sp.join(" and ")}` : ""
      }), hash ${t.hash.slice(0, 16)}`,
    );
  }
}

function nonNegativeInt(name: string, v: string): number {
  const n = Number(v);
  if (!/^\d+$/.test(v) || !Number.isSafeInteger(n)) {
    throw new UserError(`--${name} ${v}: expected a non-negative integer`);
  }
  return n;
}

async function exportCmd(argv: string[]): Promise<void> {
  const { values, positionals } = parseCommand(argv, USAGE, {
    format: { type: "string" },
    out: { type: "string" },
    overwrite: { type: "boolean" },
  });
  if (positionals.length !== 1) throw new UserError(`expected one dataset directory\n\n${USAGE}`);
  if (values.format !== "megatron") {
    throw new UserError(`--format ${values.format ?? "(missing)"}: the only export format is megatron`);
  }
  const prefix = values.out as string | undefined;
  if (!prefix) throw new UserError(`--out PREFIX is required (writes PREFIX.bin and PREFIX.idx)`);
  const r = await exportMegatron({ dataset: positionals[0], prefix, overwrite: Boolean(values.overwrite) });
  console.log(
    `${r.binPath}, ${r.idxPath}: ${r.documents} documents, ${r.tokens} ${r.dtype} tokens (Megatron indexed dataset)`,
  );
}

async function trace(argv: string[]): Promise<void> {
  const { values, positionals } = parseCommand(argv, USAGE, {
    step: { type: "string" },
    dataset: { type: "string" },
    preview: { type: "string" },
  });
  if (positionals.length !== 1) throw new UserError(`expected one run directory\n\n${USAGE}`);
  if (values.step === undefined) throw new UserError(`--step N is required\n\n${USAGE}`);
  const lines = await traceStep(
    positionals[0],
    positiveInt("step", values.step as string, 1),
    values.dataset as string | undefined,
    positiveInt("preview", values.preview as string | undefined, 60),
  );
  for (const l of lines) console.log(l);
}

/** The `data trace` lines of one step of a run (see USAGE). */
export async function traceStep(runDir: string, step: number, dataset?: string, previewChars = 60): Promise<string[]> {
  const info = await readRunInfo(runDir);
  if (!info) throw new UserError(`${runDir}: not a run directory (no run.json); pass the directory of a run`);
  const records = await readLedger(`${runDir}/ledger.jsonl`);
  const r = records.find((x) => x.step === step);
  if (!r) {
    const last = records.length ? records[records.length - 1].step : 0;
    throw new UserError(`${runDir}: the ledger has no step ${step} (steps 1..${last} are recorded)`);
  }
  const seqs = (r as { sequences?: unknown }).sequences;
  if (!Array.isArray(seqs)) {
    throw new UserError(
      `${runDir}: step ${step}'s ledger record lists no sequences (a run from before the data ledger)`,
    );
  }
  let dir = dataset;
  if (!dir && !info.datasetHash.startsWith("synthetic:")) {
    const sets: string[] = [];
    for (let i = 0; i < info.argv.length - 1; i++) if (info.argv[i] === "--set") sets.push(info.argv[i + 1]);
    const config = await loadConfig(info.config, sets).catch(() => undefined);
    dir = config?.training.dataset;
    if (!dir) {
      throw new UserError(`${runDir}: cannot find the run's dataset (config ${info.config}); pass --dataset DIR`);
    }
  }
  const ds = dir ? await readDatasetIndex(dir) : undefined;
  if (ds && ds.manifest.contentHash !== info.datasetHash) {
    throw new UserError(
      `${ds.dir}: not the dataset run ${runDir} trained on (content hash ${ds.manifest.contentHash.slice(0, 16)}, ` +
        `the run's is ${info.datasetHash.slice(0, 16)}); pass the right one with --dataset DIR`,
    );
  }
  return await traceLines(step, seqs as LedgerSequence[], ds, previewChars);
}

function report(
  out: string,
  documents: number,
  tokens: number,
  l: { p50: number; p90: number; p99: number; max: number; mean: number },
  hash: string,
  skipped: { empty: number; short: number; binaryFiles: number },
  ms?: number,
): void {
  console.log(
    `${out}: ${documents} documents, ${tokens} tokens; lengths median ${l.p50}, mean ${Math.round(l.mean)}, ` +
      `p90 ${l.p90}, p99 ${l.p99}, max ${l.max}${ms !== undefined ? `; ${(ms / 1000).toFixed(2)} s` : ""}`,
  );
  const skips = [
    skipped.empty ? `${skipped.empty} empty` : "",
    skipped.short ? `${skipped.short} too short` : "",
    skipped.binaryFiles ? `${skipped.binaryFiles} binary file(s)` : "",
  ].filter(Boolean);
  if (skips.length) console.log(`skipped: ${skips.join(", ")}`);
  console.log(`content hash ${hash}`);
}

async function info(argv: string[]): Promise<number> {
  const { values, positionals } = parseCommand(argv, USAGE, { verify: { type: "boolean" } });
  if (positionals.length !== 1) throw new UserError(`expected one dataset directory\n\n${USAGE}`);
  const dir = positionals[0];
  const ds = await readDatasetIndex(dir);
  const m = ds.manifest;
  console.log(`${ds.dir}`);
  console.log(
    `  source     ${m.source.kind}: ${m.source.input} (split: ${m.source.split}, ${fmtBytes(m.source.inputBytes)})`,
  );
  console.log(
    `  documents  ${m.documents}, tokens ${m.tokens} (${m.tokenizer}, vocab ${m.vocab}, uint${8 * m.tokenBytes})`,
  );
  if (m.tokenizerInfo) {
    const t = m.tokenizerInfo;
    console.log(
      `  tokenizer  ${t.path ?? "?"}, hash ${t.hash.slice(0, 16)}; BOS ${t.special.bos?.token ?? "-"} ` +
        `(${t.special.addBos ? "added" : "not added"}), EOS ${t.special.eos?.token ?? "-"} ` +
        `(${t.special.addEos ? "added" : "not added"})`,
    );
  }
  console.log(
    `  lengths    median ${m.lengths.p50}, mean ${Math.round(m.lengths.mean)}, p90 ${m.lengths.p90}, ` +
      `p99 ${m.lengths.p99}, max ${m.lengths.max}`,
  );
  console.log(`  hash       ${m.contentHash}`);
  const edges = [1, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768, Infinity];
  const counts = new Array(edges.length - 1).fill(0);
  for (const len of ds.lengths) {
    let b = 0;
    while (len >= edges[b + 1]) b++;
    counts[b]++;
  }
  const top = Math.max(...counts);
  for (let b = 0; b < counts.length; b++) {
    if (!counts[b] && edges[b] > m.lengths.max) break;
    const range = `${edges[b]}-${edges[b + 1] === Infinity ? "" : edges[b + 1] - 1}`.padStart(12);
    console.log(`  ${range} ${String(counts[b]).padStart(8)} ${"#".repeat(Math.round((40 * counts[b]) / top))}`);
  }
  if (values.verify) {
    const sha = await fileSha256(`${ds.dir}/${DATASET_FILES.tokens}`);
    if (sha !== m.files.tokens.sha256) {
      console.log(`verify: FAILED: tokens.bin sha256 ${sha} is not ${m.files.tokens.sha256}`);
      return 1;
    }
    console.log("verify: tokens.bin and index.bin match the manifest");
  }
  return 0;
}

async function main(): Promise<number | void> {
  const [cmd, ...rest] = Deno.args;
  if (cmd === "prepare") return await prepare(rest);
  if (cmd === "info") return await info(rest);
  if (cmd === "export") return await exportCmd(rest);
  if (cmd === "trace") return await trace(rest);
  if (cmd === "--help" || cmd === "-h") {
    console.log(USAGE);
    return 0;
  }
  throw new UserError(`${cmd ? `unknown subcommand "${cmd}"` : "expected a subcommand"}\n\n${USAGE}`);
}

if (import.meta.main) runCli(main);
