// `deno task bench --only checkpoint`: the torch executor's sharded checkpoints (torch.distributed.checkpoint,
// kernels/torch/dcp_checkpoint.py) against the full-copy format it wrote before (every tensor gathered whole and the
// whole state written by every rank), in the same processes: save and load seconds, bytes written per rank and peak
// host memory per rank (the rise of its resident memory during the save or load, against its shard bytes), for a GPT of about 25M parameters (2.5M with --quick) on 1, 2 and 4 torch-cpu ranks under ZeRO-0 and ZeRO-3.
// The asynchronous save (training.checkpoint_async): seconds it blocks the caller (staging) and until durable.
// Targets: the bytes of a checkpoint independent of the number of ranks (12 per parameter plus serialisation);
// save time per rank falling as ranks grow (on a shared 2-core machine the 4-rank times mostly measure contention).
// Runnable alone: `deno run -A bench/checkpoint.ts [--quick]`.

import type { BenchSection } from "./report.ts";

const SCRIPT = new URL("./checkpoint_bench.py", import.meta.url).pathname;
const QUICK = Deno.args.includes("--quick");
const SHAPE = QUICK
  ? { layers: 2, hidden: 256, heads: 4, vocab: 4096, maxSeq: 512 }
  : { layers: 6, hidden: 512, heads: 8, vocab: 8192, maxSeq: 1024 };

interface RankResult {
  rank: number;
  dcpSaveS: number;
  dcpLoadS: number;
  dcpBytes: number;
  fullSaveS: number;
  fullBytes: number;
  dcpSavePeakHostBytes: number;
  dcpLoadPeakHostBytes: number;
  fullSavePeakHostBytes: number;
  asyncBlockS: number;
  asyncDurableS: number;
}

interface CaseResult {
  params: number;
  world: number;
  stage: number;
  ranks: RankResult[];
}

async function measure(world: number, stage: number): Promise<CaseResult> {
  const dir = await Deno.makeTempDir({ prefix: "flexsp-bench-ckpt-" });
  try {
    const out = await new Deno.Command("python3", {
      args: [
        SCRIPT,
        "--shape",
        JSON.stringify(SHAPE),
        "--world",
        String(world),
        "--stage",
        String(stage),
        "--dir",
        dir,
      ],
      env: { OMP_NUM_THREADS: "1", PYTHONDONTWRITEBYTECODE: "1", PYTHONPATH: new URL("..", import.meta.url).pathname },
      stdout: "piped",
      stderr: "piped",
    }).output();
    if (!out.success) {
      throw new Error(`checkpoint_bench.py ${world} ranks: ${new TextDecoder().decode(out.stderr).slice(-800)}`);
    }
    return JSON.parse(new TextDecoder().decode(out.stdout).trim().split("\n").at(-1)!);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

const MiB = 2 ** 20;
const r2 = (x: number) => Math.round(x * 100) / 100;
const max = (xs: number[]) => Math.max(...xs);
const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);

/** The benchmark section. */
export async function bench(): Promise<BenchSection> {
  const results: CaseResult[] = [];
  for (const stage of [0, 3]) for (const world of [1, 2, 4]) results.push(await measure(world, stage));
  const rows = results.map((c) => ({
    ranks: c.world,
    ZeRO: c.stage,
    "DCP save s (max rank)": r2(max(c.ranks.map((r) => r.dcpSaveS))),
    "DCP load s": r2(max(c.ranks.map((r) => r.dcpLoadS))),
    "DCP MiB/rank (max)": r2(max(c.ranks.map((r) => r.dcpBytes)) / MiB),
    "DCP MiB total": r2(sum(c.ranks.map((r) => r.dcpBytes)) / MiB),
    "bytes/param": r2(sum(c.ranks.map((r) => r.dcpBytes)) / c.params),
    "DCP save peak host MiB (max rank)": r2(max(c.ranks.map((r) => r.dcpSavePeakHostBytes)) / MiB),
    "DCP load peak host MiB (max rank)": r2(max(c.ranks.map((r) => r.dcpLoadPeakHostBytes)) / MiB),
    "DCP peak / shard (max rank)": r2(
      max(c.ranks.map((r) => Math.max(r.dcpSavePeakHostBytes, r.dcpLoadPeakHostBytes) / r.dcpBytes)),
    ),
    "async save: blocks s": r2(max(c.ranks.map((r) => r.asyncBlockS))),
    "async save: durable s": r2(max(c.ranks.map((r) => r.asyncDurableS))),
    "full-copy save s": r2(max(c.ranks.map((r) => r.fullSaveS))),
    "full-copy save peak host MiB": r2(max(c.ranks.map((r) => r.fullSavePeakHostBytes)) / MiB),
    "full-copy MiB total": r2(sum(c.ranks.map((r) => r.fullBytes)) / MiB),
  }));
  return {
    title: `checkpoint: sharded DCP vs the former full copy per rank (torch-cpu GPT, ${results[0].params} parameters)`,
    rows,
    json: { shape: SHAPE, results },
  };
}

if (import.meta.main) {
  const { printSection } = await import("./report.ts");
  printSection(await bench());
}
