// The llama family on torch-cpu, one forward + backward of a small GQA llama (4 layers, hidden 256, 8 query heads,
// 2 K/V heads) at 2K tokens per activation checkpointing policy (none, selective, full) and under ZeRO-3 (FSDP2,
// selective): tokens/s, peak RSS growth during the step and the ratio to "none", all in one run, each case in its
// own process (kernels/torch/llama_slice.py) so peak memory is per case. The cost model's expectation: selective
// drops the attention core's activations, full keeps only each layer's input, and full costs one more forward.
// A second table holds the executor's slice against what a user would run instead, transformers' own
// LlamaForCausalLM (SDPA, one sequence per call, float32) on the same sequences, in the same process, one after the
// other, alternating, the fastest run of each (target: >= 1.0x), at 4 packed sequences of the corpus' typical length
// and at one long sequence.
// Runnable alone: `deno run -A bench/llama.ts [--quick]`.

import type { BenchSection } from "./report.ts";
import { torchModuleCommand } from "../core/torch_package.ts";

const QUICK = Deno.args.includes("--quick");
const SHAPE = {
  family: "llama",
  layers: 4,
  hidden: 256,
  heads: 8,
  kvHeads: 2,
  intermediate: 688,
  vocab: 1024,
  maxSeq: 4096,
  ropeTheta: 10000,
  normEps: 1e-5,
};
const SLICE = torchModuleCommand(
  new URL("../kernels/torch", import.meta.url).pathname,
  "llama_slice",
  Deno.env.get("PYTHONPATH"),
);

interface SliceResult {
  policy: string;
  zero3: boolean;
  tokensPerS: number;
  peakGrowthBytes: number;
  modelStateBytes: number;
  transformersTokensPerS?: number;
  fastestTokensPerS?: number;
  vsTransformers?: number;
}

async function slice(policy: string, zero3: boolean, tokens: number, extra: string[] = []): Promise<SliceResult> {
  const args = [
    ...SLICE.args,
    "--shape",
    JSON.stringify(SHAPE),
    "--tokens",
    String(tokens),
    "--policy",
    policy,
    "--repeats",
    QUICK ? "1" : "2",
  ];
  if (zero3) args.push("--zero3");
  args.push(...extra);
  const out = await new Deno.Command("python3", {
    args,
    env: { OMP_NUM_THREADS: "1", PYTHONDONTWRITEBYTECODE: "1", ...SLICE.env },
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (!out.success) throw new Error(`llama_slice.py ${policy}: ${new TextDecoder().decode(out.stderr).slice(-800)}`);
  return JSON.parse(new TextDecoder().decode(out.stdout).trim().split("\n").at(-1)!);
}

/** The benchmark section. */
export async function bench(): Promise<BenchSection> {
  const tokens = QUICK ? 1024 : 2048;
  const cases: [string, boolean][] = [["none", false], ["selective", false], ["full", false], ["selective", true]];
  const results: SliceResult[] = [];
  for (const [p, z] of cases) results.push(await slice(p, z, tokens));
  const base = results[0];
  const rows = results.map((r) => ({
    policy: r.policy + (r.zero3 ? " + ZeRO-3 (FSDP2, 1 rank)" : ""),
    tokens,
    "tokens/s": Math.round(r.tokensPerS * 10) / 10,
    "vs none": Math.round((r.tokensPerS / base.tokensPerS) * 100) / 100,
    "peak RSS growth MB": Math.round(r.peakGrowthBytes / 2 ** 20),
    "memory vs none": Math.round((r.peakGrowthBytes / base.peakGrowthBytes) * 100) / 100,
  }));
  const peers: { sequences: number; r: SliceResult }[] = [];
  for (const sequences of [4, 1]) {
    peers.push({
      sequences,
      r: await slice("none", false, tokens, ["--sequences", String(sequences), "--transformers"]),
    });
  }
  const peerRows = peers.map(({ sequences, r }) => ({
    sequences: `${sequences} x ${tokens / sequences}`,
    "flexsp executor tokens/s": Math.round(r.fastestTokensPerS!),
    "transformers LlamaForCausalLM tokens/s": Math.round(r.transformersTokensPerS!),
    "ratio (target >= 1.0)": Math.round(r.vsTransformers! * 100) / 100,
  }));
  return {
    title: `llama: torch-cpu forward+backward per checkpointing policy (GQA llama, 4 layers, ${tokens} tokens)`,
    rows,
    json: { shape: SHAPE, tokens, results, vsTransformers: peers },
    extra: [{ title: "llama: the executor's slice against transformers' own model, same sequences", rows: peerRows }],
  };
}

if (import.meta.main) {
  const { printSection } = await import("./report.ts");
  printSection(await bench());
}
