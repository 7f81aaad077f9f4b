// Single-device throughput of the PyTorch executor on a slice of a big model: a 1-layer gpt-7b (hidden 4096, 64 heads,
// GPT-2 vocabulary) trained on one sequence of 4K-64K tokens, driven through the executor protocol's
// `profile_compute` requests (forward+backward of the packed batch, timed by the executor: CUDA events on a GPU) on a
// 1-node, 1-device local cluster. Reports tokens/s, model FLOPs utilisation against the GPU's dense bf16 peak, and
// peak memory per token (`torch.cuda.max_memory_allocated` on cuda). bench/cuda_check.sh runs it on a GPU machine;
// `--kind torch-cpu` runs the same path on the CPU (no MFU), `--dry-run` only prints the config, the requests and
// the FLOP counts.
//
// usage: deno run -A bench/cuda_slice.ts [--kind cuda|torch-cpu] [--preset gpt-7b] [--layers 1]
//          [--lengths 4096,8192,16384,32768,65536] [--repeats 3] [--python PY] [--peak-tflops N] [--gpu NAME]
//          [--out FILE] [--dry-run]

import { parseArgs } from "node:util";
import { stringify } from "yaml";
import { MODEL_PRESETS, type ModelShape } from "../core/model_shape.ts";
import { loadConfig } from "../orchestrator/config/load.ts";
import { ClusterSession } from "../orchestrator/cluster/cluster_session.ts";
import { ADAMW_DEFAULTS, ExecutorPool } from "../orchestrator/cluster/executor_pool.ts";
import { onAll, profileError } from "../orchestrator/profile/pool_calls.ts";
import { runCli, UserError } from "../orchestrator/errors.ts";
import { isTorchKind, type ProfileComputeRequest, TORCH_EXECUTOR_KINDS } from "../core/protocol.ts";

/** Dense bf16 tensor-core peaks (TFLOP/s, no sparsity) by GPU model, the first match of the name wins. */
export const BF16_PEAK_TFLOPS: [RegExp, number][] = [
  [/B200/i, 2250],
  [/GH200|H200/i, 989],
  [/H100.*PCIe/i, 756],
  [/H100.*NVL/i, 835],
  [/H100|H800/i, 989],
  [/A100|A800/i, 312],
  [/L40S/i, 362],
  [/L40\b/i, 181],
  [/L4\b/i, 121],
  [/A10G?\b/i, 125],
  [/RTX 4090/i, 165],
];

/** The dense bf16 peak of a GPU by its name, or undefined when not known. */
export function bf16PeakTflops(name: string): number | undefined {
  return BF16_PEAK_TFLOPS.find(([re]) => re.test(name))?.[1];
}

/**
 * Model FLOPs of one training step (forward + backward, 3x the forward) of one causal sequence of `s` tokens: the
 * dense matmuls (12 h^2 per layer and token, 2 FLOPs per multiply-add) and the tied LM head, plus causal attention
 * (QK^T and AV, half of the s x s scores).
 */
export function stepFlops(m: ModelShape, s: number): number {
  const dense = 2 * s * (12 * m.hidden * m.hidden * m.layers + m.vocab * m.hidden);
  const attention = 2 * 2 * m.layers * m.hidden * s * s / 2;
  return 3 * (dense + attention);
}

/** The 1-node, 1-device config the slice runs on (YAML text). */
export function sliceConfig(o: { kind: string; model: ModelShape; python?: string; name?: string }): string {
  return stringify({
    name: o.name ?? "cuda-slice",
    cluster: {
      nodes: [{
        host: "localhost",
        transport: "local",
        devices: 1,
        executor: o.kind,
        ...(o.python ? { python: o.python } : {}),
      }],
      heartbeat_timeout_s: 60,
    },
    model: {
      layers: o.model.layers,
      hidden: o.model.hidden,
      heads: o.model.heads,
      vocab: o.model.vocab,
      max_seq: o.model.maxSeq,
      checkpointing: "none",
    },
  });
}

/** One `profile_compute` request: one sequence of `length` tokens, `repeats` timed runs after one warm-up. */
export function sliceRequest(length: number, repeats: number): ProfileComputeRequest {
  return {
    id: `slice-${length}`,
    points: [{ count: 1, length }],
    order: Array.from({ length: repeats }, () => 0),
    warmup: 1,
    barrier: false,
  };
}

/** What one length measured. */
export interface SliceRow {
  tokens: number;
  ms?: number;
  tokensPerS?: number;
  tflops?: number;
  mfu?: number;
  peakMb?: number;
  mbPerToken?: number;
  error?: string;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

function table(rows: SliceRow[]): string {
  const head = ["tokens", "ms/step", "tokens/s", "TFLOP/s", "MFU", "peak MB", "MB/token"];
  const cells = rows.map((r) =>
    r.error ? [String(r.tokens), `failed: ${r.error.split("\n")[0].slice(0, 90)}`, "", "", "", "", ""] : [
      String(r.tokens),
      r.ms!.toFixed(1),
      Math.round(r.tokensPerS!).toLocaleString("en-US"),
      r.tflops! >= 10 ? r.tflops!.toFixed(1) : r.tflops!.toPrecision(3),
      r.mfu === undefined ? "-" : `${(100 * r.mfu).toFixed(1)}%`,
      r.peakMb === undefined ? "-" : Math.round(r.peakMb).toLocaleString("en-US"),
      r.mbPerToken === undefined ? "-" : r.mbPerToken.toFixed(4),
    ]
  );
  const all = [head, ...cells];
  const w = head.map((_, i) => Math.max(...all.map((r) => r[i].length)));
  return all.map((r) => r.map((c, i) => c.padEnd(w[i])).join("  ").trimEnd()).join("\n");
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      kind: { type: "string", default: "cuda" },
      preset: { type: "string", default: "gpt-7b" },
      layers: { type: "string", default: "1" },
      lengths: { type: "string", default: "4096,8192,16384,32768,65536" },
      repeats: { type: "string", default: "3" },
      python: { type: "string" },
      "peak-tflops": { type: "string" },
      gpu: { type: "string" },
      out: { type: "string" },
      "dry-run": { type: "boolean", default: false },
      help: { type: "boolean", short: "h", default: false },
    },
  });
  if (values.help) {
    console.log(
      new TextDecoder().decode(Deno.readFileSync(new URL(import.meta.url))).split("\n")
        .filter((l) => l.startsWith("//")).map((l) => l.slice(3)).join("\n"),
    );
    return 0;
  }
  if (!isTorchKind(values.kind!)) {
    throw new UserError(`--kind ${values.kind}: expected ${TORCH_EXECUTOR_KINDS.join(" or ")}`);
  }
  const base = MODEL_PRESETS[values.preset!];
  if (!base) throw new UserError(`--preset ${values.preset}: expected one of ${Object.keys(MODEL_PRESETS).join(", ")}`);
  const layers = Number(values.layers);
  if (!Number.isInteger(layers) || layers < 1) throw new UserError(`--layers ${values.layers}: a positive integer`);
  const lengths = values.lengths!.split(",").map((s) => Number(s.trim()));
  if (!lengths.length || lengths.some((l) => !Number.isInteger(l) || l < 1)) {
    throw new UserError(`--lengths ${values.lengths}: expected positive integers, e.g. 4096,8192`);
  }
  const repeats = Number(values.repeats);
  if (!Number.isInteger(repeats) || repeats < 1) throw new UserError(`--repeats ${values.repeats}: positive integer`);
  const peakArg = values["peak-tflops"] === undefined ? undefined : Number(values["peak-tflops"]);
  if (peakArg !== undefined && !(peakArg > 0)) throw new UserError(`--peak-tflops ${values["peak-tflops"]}: > 0`);
  const model: ModelShape = { ...base, layers, maxSeq: Math.max(...lengths) };
  const yaml = sliceConfig({ kind: values.kind!, model, python: values.python });
  const requests = lengths.map((l) => sliceRequest(l, repeats));

  const dir = await Deno.makeTempDir({ prefix: "flexsp-slice-" });
  const cfgPath = `${dir}/slice.yaml`;
  await Deno.writeTextFile(cfgPath, yaml);
  const config = await loadConfig(cfgPath).finally(async () => {
    if (values["dry-run"]) await Deno.remove(dir, { recursive: true });
  });
  if (values["dry-run"]) {
    const gpu = values.gpu ?? "NVIDIA H200";
    const peak = peakArg ?? bf16PeakTflops(gpu);
    console.log(
      `# config (${values.kind}, ${values.preset} with ${layers} layer(s)), loads as ${config.name}\n${yaml}`,
    );
    for (const r of requests) console.log(JSON.stringify({ type: "profile_compute", request: r }));
    console.log(`peak bf16 of ${gpu}: ${peak ?? "unknown"} TFLOP/s`);
    for (const l of lengths) {
      const f = stepFlops(model, l);
      const ms = peak ? f / (0.4 * peak * 1e12) * 1000 : undefined;
      console.log(
        `${l} tokens: ${(f / 1e12).toFixed(2)} TFLOP per step${ms ? `; 40% MFU is ${ms.toFixed(1)} ms` : ""}`,
      );
    }
    return 0;
  }

  const say = (l: string) => console.error(l);
  say(`cuda_slice: ${values.kind}, ${values.preset} x ${layers} layer(s), lengths ${lengths.join(", ")}`);
  const cluster = await ClusterSession.launch(config, { runId: "cuda-slice", runDir: `${dir}/run` });
  const rows: SliceRow[] = [];
  let device = "";
  let modelStateBytes = 0;
  let memorySource = "";
  try {
    if (cluster.failures.length) throw new UserError(cluster.failures.map((f) => f.error).join("\n"));
    // Only profile_compute runs: a zero learning rate keeps the parameters as initialised (as the profiler does).
    const pool = ExecutorPool.create(cluster, {
      config,
      startTimeoutMs: 300_000,
      log: say,
      init: { optimizer: { lr: 0, weightDecay: 0, gradClip: 0, ...ADAMW_DEFAULTS } },
    });
    await pool.start().catch(async (e) => {
      const err = await profileError(pool, "executor start", e);
      pool.stop();
      throw err;
    });
    device = pool.places[0].deviceName ?? "";
    const peak = peakArg ?? (values.kind === "cuda" ? bf16PeakTflops(device) : undefined);
    try {
      for (const req of requests) {
        const tokens = req.points[0].length;
        try {
          const done = await onAll(pool, {
            cmd: { type: "profile_compute", request: req },
            type: "profile_compute_done",
            timeoutMs: 600_000,
            what: `a ${tokens}-token slice`,
          });
          const res = done.get(0)!.result;
          modelStateBytes = res.modelStateBytes;
          memorySource = res.memorySource;
          const ms = median(res.samples.map((s) => s.ms));
          const peakBytes = Math.max(...res.samples.map((s) => s.peakBytes));
          const tflops = stepFlops(model, tokens) / (ms / 1000) / 1e12;
          rows.push({
            tokens,
            ms,
            tokensPerS: tokens / (ms / 1000),
            tflops,
            mfu: peak ? tflops / peak : undefined,
            peakMb: peakBytes / 2 ** 20,
            mbPerToken: peakBytes / 2 ** 20 / tokens,
          });
          say(`  ${tokens} tokens: ${ms.toFixed(1)} ms`);
        } catch (e) {
          rows.push({ tokens, error: (e as Error).message });
          say(`  ${tokens} tokens: ${(e as Error).message.split("\n")[0]}`);
          break; // an executor that failed (e.g. out of memory at this length) is gone: longer ones cannot run
        }
      }
    } finally {
      pool.stop();
    }
    console.log(`\n## ${values.preset} slice (${layers} layer(s)) on ${device} (${values.kind})\n`);
    console.log(table(rows));
    const json = {
      kind: values.kind,
      device,
      preset: values.preset,
      model,
      peakBf16Tflops: peak ?? null,
      modelStateBytes,
      memorySource,
      rows,
      target: "MFU >= 40% at 32K tokens",
    };
    const out = values.out ?? new URL("./results/cuda_slice.json", import.meta.url).pathname;
    await Deno.mkdir(out.slice(0, out.lastIndexOf("/")) || ".", { recursive: true });
    await Deno.writeTextFile(out, JSON.stringify(json, null, 2) + "\n");
    console.log(`\nJSON written to ${out}`);
  } finally {
    await cluster.shutdown("slice done");
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
  return rows.some((r) => r.error) ? 1 : 0;
}

if (import.meta.main) runCli(main);
