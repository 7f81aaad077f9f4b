// `deno task bench --only data`: tokens/s of `data prepare` with a Hugging Face tokenizer on a JSONL file made from
// the built-in corpus (the Deno runtime's declarations, repeated up to the size asked), against the Python
// `tokenizers` package's batch encoder (Rust, multi-threaded) on the same file in the same run, and the byte
// tokenizer for scale. The tokenizer is a byte-level BPE trained on the corpus by the Python package (8,000 ids).
//
// Both sides read the JSONL line by line, parse each record and tokenise its `text`; flexsp also writes the token
// file, index and manifest. Python's time excludes its interpreter start. Peak RSS of the flexsp side is read from
// /proc after its run (the process is this one, so it includes the bench itself).
// Size: `--data-mb N` or FLEXSP_BENCH_DATA_MB (default 32; the full-size run is 1024).
// Runnable alone: `deno run -A bench/data.ts [--data-mb N]`.

import type { BenchSection } from "./report.ts";
import { denoTypesText } from "../orchestrator/data/builtin_corpus.ts";
import { prepareDataset } from "../orchestrator/data/prepare.ts";

const ORACLE = new URL("../tests/data/oracle.py", import.meta.url).pathname;
const r1 = (x: number) => Math.round(x * 10) / 10;
const r2 = (x: number) => Math.round(x * 100) / 100;

async function py(args: string[], stdin?: string): Promise<string> {
  const p = new Deno.Command("python3", { args, stdin: "piped", stdout: "piped", stderr: "piped" }).spawn();
  const w = p.stdin.getWriter();
  await w.write(new TextEncoder().encode(stdin ?? ""));
  await w.close();
  const out = await p.output();
  if (!out.success) throw new Error(`python3 ${args.join(" ")}: ${new TextDecoder().decode(out.stderr)}`);
  return new TextDecoder().decode(out.stdout);
}

const PY_ENCODE = `
import json, sys, time
from tokenizers import Tokenizer
tok = Tokenizer.from_file(sys.argv[1] + "/tokenizer.json")
eos = tok.token_to_id("<|endoftext|>")
t0 = time.perf_counter()
n = docs = 0
batch = []
def flush():
    global n, docs
    for e in tok.encode_batch(batch, add_special_tokens=True):
        n += len(e.ids) + 1  # + EOS, as tokenizer_config.json asks
    docs += len(batch)
    batch.clear()
with open(sys.argv[2], "rb") as f:
    for line in f:
        if line.strip():
            batch.append(json.loads(line)["text"])
            if len(batch) == 4096:
                flush()
flush()
print(json.dumps({"tokens": n, "documents": docs, "ms": (time.perf_counter() - t0) * 1000}))
`;

function peakRssMb(): number {
  try {
    const m = Deno.readTextFileSync("/proc/self/status").match(/VmHWM:\s+(\d+) kB/);
    return m ? Number(m[1]) / 1024 : NaN;
  } catch {
    return NaN;
  }
}

/** Runs the benchmark (see the file header). */
export async function bench(): Promise<BenchSection> {
  const argMb = Deno.args.includes("--data-mb") ? Deno.args[Deno.args.indexOf("--data-mb") + 1] : undefined;
  const mb = Number(argMb ?? Deno.env.get("FLEXSP_BENCH_DATA_MB") ?? 32);
  const tmp = await Deno.makeTempDir({ prefix: "flexsp-bench-data-" });
  try {
    const corpus = await denoTypesText();
    await Deno.writeTextFile(`${tmp}/corpus.txt`, corpus);
    await py(
      [ORACLE, "train_bpe"],
      JSON.stringify({ style: "bytelevel", vocab: 8000, corpus: `${tmp}/corpus.txt`, out: `${tmp}/tok` }),
    );
    // The JSONL: the corpus's paragraphs as records, repeated until the size is reached (written in 4 MB pieces).
    const lines = corpus.split("\n\n").filter((p) => p.trim()).map((p) => JSON.stringify({ text: p }) + "\n");
    const f = await Deno.open(`${tmp}/data.jsonl`, { write: true, create: true });
    let bytes = 0, records = 0;
    const enc = new TextEncoder();
    while (bytes < mb * 1024 * 1024) {
      const chunk = enc.encode(lines.join(""));
      for (let o = 0; o < chunk.length;) o += await f.write(chunk.subarray(o));
      bytes += chunk.length;
      records += lines.length;
    }
    f.close();
    const rssBefore = peakRssMb();
    const hf = await prepareDataset({ input: `${tmp}/data.jsonl`, out: `${tmp}/ds-hf`, tokenizer: `${tmp}/tok` });
    const rssHf = peakRssMb();
    const b = await prepareDataset({ input: `${tmp}/data.jsonl`, out: `${tmp}/ds-bytes` });
    const p = JSON.parse(await py(["-c", PY_ENCODE, `${tmp}/tok`, `${tmp}/data.jsonl`])) as {
      tokens: number;
      documents: number;
      ms: number;
    };
    const flexTps = hf.manifest.tokens / (hf.ms / 1000);
    const pyTps = p.tokens / (p.ms / 1000);
    const rows = [
      {
        encoder: "flexsp prepare, HF BPE (TypeScript)",
        "input MB": r1(bytes / 2 ** 20),
        documents: hf.manifest.documents,
        tokens: hf.manifest.tokens,
        s: r2(hf.ms / 1000),
        "tokens/s": Math.round(flexTps),
        "MB/s": r2(bytes / 2 ** 20 / (hf.ms / 1000)),
        "vs python": r2(flexTps / pyTps),
      },
      {
        encoder: "python tokenizers encode_batch (Rust)",
        "input MB": r1(bytes / 2 ** 20),
        documents: p.documents,
        tokens: p.tokens,
        s: r2(p.ms / 1000),
        "tokens/s": Math.round(pyTps),
        "MB/s": r2(bytes / 2 ** 20 / (p.ms / 1000)),
        "vs python": 1,
      },
      {
        encoder: "flexsp prepare, bytes",
        "input MB": r1(bytes / 2 ** 20),
        documents: b.manifest.documents,
        tokens: b.manifest.tokens,
        s: r2(b.ms / 1000),
        "tokens/s": Math.round(b.manifest.tokens / (b.ms / 1000)),
        "MB/s": r2(bytes / 2 ** 20 / (b.ms / 1000)),
        "vs python": "",
      },
    ];
    if (p.tokens !== hf.manifest.tokens) {
      throw new Error(`token counts differ: flexsp ${hf.manifest.tokens}, python ${p.tokens}`);
    }
    return {
      title: `data: prepare tokens/s on a ${r1(bytes / 2 ** 20)} MB JSONL (deno-corpus, ${records} records), ` +
        `HF byte-level BPE 8000 vs Python tokenizers; target >= 0.5x`,
      rows,
      json: {
        inputBytes: bytes,
        records,
        flexsp: {
          tokens: hf.manifest.tokens,
          ms: hf.ms,
          tokensPerS: flexTps,
          peakRssMb: rssHf,
          rssBeforeMb: rssBefore,
        },
        python: { tokens: p.tokens, ms: p.ms, tokensPerS: pyTps },
        bytes: { tokens: b.manifest.tokens, ms: b.ms },
        ratio: flexTps / pyTps,
      },
    };
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
}

if (import.meta.main) {
  const { printSection } = await import("./report.ts");
  printSection(await bench());
}
