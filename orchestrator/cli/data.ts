// `deno task data`: build and inspect indexed token datasets.
//   prepare --input PATH --out DIR   a directory of text files, a JSONL file (`text` field) or a text file
//   prepare --builtin deno-corpus --out DIR
//   info DIR [--verify]              manifest summary and length histogram; --verify re-hashes the token file

import { fileSha256 } from "../../core/hash.ts";
import { runCli, UserError } from "../errors.ts";
import { parseCommand, positiveInt } from "./args.ts";
import { buildBuiltinDataset, BUILTIN_DATASETS, type BuiltinDataset } from "../data/builtin_corpus.ts";
import { DATASET_FILES, readDatasetIndex } from "../data/dataset_format.ts";
import { type InputFormat, prepareDataset, type PrepareProgress } from "../data/prepare.ts";
import { SPLIT_MODES, type SplitMode } from "../data/text_splitter.ts";

const USAGE = `usage: deno task data prepare --input PATH --out DIR [options]
       deno task data prepare --builtin deno-corpus --out DIR
       deno task data info DIR [--verify]

prepare: builds an indexed token dataset (byte-level tokens, vocabulary 256): DIR/tokens.bin (uint16 LE tokens),
DIR/index.bin (per document: uint64 LE token offset, uint32 LE length, uint32 reserved) and DIR/manifest.json
(counts, sha256 of each file, content hash). Streams its input; progress on stderr.
  --input PATH        a directory (every file, recursively, sorted; hidden and binary files skipped), a .jsonl file
                      (one {"text": ...} object per line) or a text file
  --format F          directory, jsonl or text (default: from the input)
  --split MODE        how text becomes documents: file (one per file; default for a directory), paragraph (blank
                      lines separate; default for a text file), line, or code (a declaration, JSDoc comment or
                      heading after a blank line starts one)
  --min-length N      skip documents shorter than N tokens (default 2)
  --overwrite         replace a dataset already in DIR
  --builtin NAME      build a built-in corpus instead: ${BUILTIN_DATASETS.join(", ")} (the declarations of the Deno
                      runtime, \`deno types\`, one document per declaration)
info: prints the manifest and a length histogram; --verify re-reads tokens.bin and checks its sha256.`;

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
  if (format !== undefined && !["directory", "jsonl", "text"].includes(format)) {
    throw new UserError(`--format ${format}: expected directory, jsonl or text`);
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
    onProgress: progress.onProgress,
  });
  progress.done();
  report(out, m.documents, m.tokens, m.lengths, m.contentHash, m.skipped, ms);
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
  if (cmd === "--help" || cmd === "-h") {
    console.log(USAGE);
    return 0;
  }
  throw new UserError(`${cmd ? `unknown subcommand "${cmd}"` : "expected a subcommand"}\n\n${USAGE}`);
}

if (import.meta.main) runCli(main);
