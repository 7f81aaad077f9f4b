// The TypeScript/Python twins of the executors, compared on shared cases: kernels/step_plan.ts checkPlan against
// kernels/torch/step_plan.py check_plan (the same plans accepted with the same SP ranks, or refused with the same
// message), kernels/packing.ts packGroup against kernels/torch/packing.py pack_group (the same packed stream, or
// the same error), and core/hf_config.ts hfConfigOf against kernels/torch/hf.py hf_config (the same config.json of a
// llama-family shape), and kernels/profiling.ts checkComputeRequest/checkAllToAllRequest against
// kernels/torch/profiling.py check_compute_request/check_alltoall_request (the same requests refused, by the same
// message), and the test fault injection kernels/fault_injection.ts injectedFault against
// kernels/torch/fault_injection.py injected_fault (the same spec asks the same rank for the same fault). Python-only
// checks (the SP-group pool's alignment, K/V heads) are out of these cases' reach.

import { assertEquals } from "../assert.ts";
import { checkPlan } from "../../kernels/step_plan.ts";
import { packGroup } from "../../kernels/packing.ts";
import type { ModelShape } from "../../kernels/model.ts";
import type { ExecutorStepPlan, ProfileAllToAllRequest, ProfileComputeRequest } from "../../core/protocol.ts";
import { torchModuleCommand } from "../../core/torch_package.ts";
import { hfConfigOf } from "../../core/hf_config.ts";
import { checkAllToAllRequest, checkComputeRequest } from "../../kernels/profiling.ts";
import { injectedFault } from "../../kernels/fault_injection.ts";
import type { ModelShape as CoreShape } from "../../core/model_shape.ts";
import { pythonImportFailure } from "../python_probe.ts";

const missing = await pythonImportFailure("torch");
if (missing) console.log(`skipping the TypeScript/Python twin comparison: ${missing}`);

const PACKAGE = new URL("../../kernels/torch", import.meta.url).pathname;
const SHAPE = { layers: 2, hidden: 64, heads: 4, vocab: 256, maxSeq: 64 };
const seq = (id: number, length: number, offset = 0) => ({ id, offset, length });
const group = (ranks: number[], sequences: ReturnType<typeof seq>[]) => ({ ranks, degree: ranks.length, sequences });
const plan = (microBatches: unknown[], over: Record<string, unknown> = {}) => ({
  step: 3,
  microBatches: microBatches.map((groups) => ({ groups })),
  globalTokens: 100,
  lr: 1e-3,
  ...over,
});

/** [plan, rank, world size]: accepted and refused plans, each refusal of another check. */
const PLANS: [unknown, number, number][] = [
  [plan([[group([0, 1], [seq(1, 40)]), group([2], [seq(2, 8)]), group([3], [seq(3, 64)])]]), 1, 4],
  [
    plan([[group([0, 1, 2, 3], [seq(1, 10), seq(2, 20, 10)])], [
      group([0], [seq(3, 5)]),
      group([1], []),
      group([2, 3], []),
    ]]),
    3,
    4,
  ],
  [plan([[group([0], [seq(1, 5)])]], { step: -1 }), 0, 1],
  [plan([]), 0, 1],
  [plan([[group([0], [seq(1, 5)])]], { globalTokens: 0 }), 0, 1],
  [plan([[group([0], [seq(1, 5)])]], { lr: -1 }), 0, 1],
  [plan([[{ ranks: [0, 1], degree: 1, sequences: [] }]]), 0, 2],
  [plan([[group([0, 1, 2], [seq(1, 5)])]]), 0, 3],
  [plan([[group([0, 5], [seq(1, 5)])]]), 0, 2],
  [plan([[group([0], [seq(1, 5)]), group([0], [seq(2, 5)])]]), 0, 2],
  [plan([[group([0], [seq(1, 65)])]]), 0, 1],
  [plan([[group([0], [seq(1, 0)])]]), 0, 1],
  [plan([[group([0], [seq(1, 5, -2)])]]), 0, 1],
  [plan([[group([0], [seq(1, 5)])]]), 0, 2],
  [plan([[group([1], [seq(1, 5)])]], { scope: "rank" }), 0, 2],
  [plan([[group([0], [seq(1, 5)])]], { scope: "rank" }), 0, 2],
];

/** [sequences, degree, maxSeq, vocab]: packings with and without padding, and each error. */
const PACKS: [number[][], number, number, number][] = [
  [[[1, 2, 3], [4, 5]], 1, 8, 16],
  [[[1, 2, 3], [4, 5]], 2, 8, 16],
  [[[7], [8, 9, 10, 11, 12]], 4, 6, 16],
  [[[1]], 4, 2, 16],
  [[[1, 2], []], 2, 8, 16],
  [[[1, 2, 3]], 2, 2, 16],
  [[[1, 16]], 1, 8, 16],
  [[[1]], 0, 8, 16],
];

const computeRequest = (over: Record<string, unknown> = {}) => ({
  id: "c",
  points: [{ count: 2, length: 8 }, { count: 1, length: 64 }],
  order: [0, 1, 0],
  warmup: 1,
  ...over,
});
/** profile_compute requests for SHAPE: one accepted, then one of each refusal. */
const COMPUTE_REQUESTS: unknown[] = [
  computeRequest(),
  computeRequest({ points: [] }),
  computeRequest({ points: [{ count: 0, length: 8 }] }),
  computeRequest({ points: [{ count: 1, length: 65 }] }),
  computeRequest({ order: [] }),
  computeRequest({ order: [0, 2] }),
  computeRequest({ warmup: -1 }),
];
const allToAllRequest = (over: Record<string, unknown> = {}) => ({
  id: "a",
  groups: [[0, 1], [2, 3]],
  sizes: [16, 1024],
  iters: 2,
  warmup: 1,
  ...over,
});
/** profile_alltoall requests on 4 ranks: one accepted, then one of each refusal (the Python pool accepts any group). */
const ALLTOALL_REQUESTS: unknown[] = [
  allToAllRequest(),
  allToAllRequest({ sizes: undefined }),
  allToAllRequest({ groups: [[0]] }),
  allToAllRequest({ groups: [[0, 5]] }),
  allToAllRequest({ groups: [[0, 1], [1, 2]] }),
  allToAllRequest({ sizes: [16, -1] }),
  allToAllRequest({ iters: 0 }),
];

/** FLEXSP_*_FAULT values, each asked of ranks 0-2: unset, each mode, a mode spelt otherwise, junk. */
const FAULT_SPECS = [
  "",
  "1",
  "1:exit",
  "1:error",
  "2:exit:now",
  "1:EXIT",
  " 1:exit",
  "x:exit",
  "-1:exit",
  "1.0:exit",
  ":exit",
];

const LLAMA = {
  family: "llama",
  layers: 2,
  hidden: 64,
  heads: 4,
  kvHeads: 2,
  headDim: 16,
  intermediate: 96,
  vocab: 128,
  maxSeq: 256,
  ropeTheta: 500000,
  normEps: 1e-5,
};
/** [shape, dtype]: each model type, RoPE scalings, a sliding window, biases, tied embeddings. */
const CONFIGS: [Record<string, unknown>, "float32" | "bfloat16"][] = [
  [{
    ...LLAMA,
    modelType: "llama",
    ropeScaling: {
      type: "llama3",
      factor: 8,
      lowFreqFactor: 1,
      highFreqFactor: 4,
      originalMaxPositionEmbeddings: 128,
    },
  }, "bfloat16"],
  [{ ...LLAMA, modelType: "llama", qkvBias: true, tieEmbeddings: true }, "float32"],
  [{ ...LLAMA, modelType: "mistral", slidingWindow: 64, ropeScaling: { type: "linear", factor: 2 } }, "float32"],
  [{ ...LLAMA, modelType: "qwen2", qkvBias: true, slidingWindow: 32 }, "bfloat16"],
  [{ ...LLAMA, modelType: "qwen2" }, "float32"],
];

const PY = `
import json, sys
from kernels.torch.model_shape import ModelShape
from kernels.torch.packing import pack_group
from kernels.torch.step_plan import check_plan
from kernels.torch.hf import hf_config
from kernels.torch.profiling import check_alltoall_request, check_compute_request
from kernels.torch.fault_injection import injected_fault
import os
import torch
cases = json.load(sys.stdin)
shape = ModelShape.from_json(cases["shape"])
plans, packs = [], []
for p, rank, world in cases["plans"]:
    try:
        plans.append({"spRanks": [m.sp_rank for m in check_plan(p, rank, world, shape, lambda ranks: True)]})
    except ValueError as e:
        plans.append({"error": str(e)})
for seqs, degree, max_seq, vocab in cases["packs"]:
    try:
        g = pack_group(seqs, degree, max_seq, vocab)
        packs.append({"seqLen": g.seq_len, "tokens": g.tokens.tolist(), "positions": g.positions.tolist(),
                      "targets": g.targets.tolist(), "cuSeqlens": g.cu_seqlens, "bounds": g.bounds,
                      "targetCount": g.target_count})
    except ValueError as e:
        packs.append({"error": str(e)})
configs = [hf_config(s, getattr(torch, dtype)) for s, dtype in cases["configs"]]
def verdict(check):
    try:
        check()
        return "ok"
    except ValueError as e:
        return str(e)
compute = [verdict(lambda: check_compute_request(r, shape)) for r in cases["compute"]]
alltoall = [verdict(lambda: check_alltoall_request(r, 4, lambda g: True)) for r in cases["alltoall"]]
faults = []
for spec in cases["faults"]:
    os.environ["FLEXSP_TWIN_FAULT"] = spec
    faults.append([injected_fault("FLEXSP_TWIN_FAULT", r) for r in range(3)])
print(json.dumps({"plans": plans, "packs": packs, "configs": configs, "compute": compute, "alltoall": alltoall,
                  "faults": faults}))
`;

function typescriptSide() {
  const plans = PLANS.map(([p, rank, world]) => {
    try {
      return { spRanks: checkPlan(p as ExecutorStepPlan, rank, world, SHAPE as ModelShape).map((m) => m.spRank) };
    } catch (e) {
      return { error: (e as Error).message };
    }
  });
  const packs = PACKS.map(([seqs, degree, maxSeq, vocab]) => {
    try {
      const g = packGroup(seqs.map((s) => Int32Array.from(s)), degree, maxSeq, vocab);
      return {
        seqLen: g.seqLen,
        tokens: [...g.tokens],
        positions: [...g.positions],
        targets: [...g.targets],
        cuSeqlens: [...g.cuSeqlens],
        bounds: g.bounds,
        targetCount: g.targetCount,
      };
    } catch (e) {
      return { error: (e as Error).message };
    }
  });
  const configs = CONFIGS.map(([shape, dtype]) => hfConfigOf(shape as unknown as CoreShape, dtype));
  const verdict = (check: () => void) => {
    try {
      check();
      return "ok";
    } catch (e) {
      return (e as Error).message;
    }
  };
  const compute = COMPUTE_REQUESTS.map((r) =>
    verdict(() => checkComputeRequest(r as ProfileComputeRequest, SHAPE as ModelShape))
  );
  const alltoall = ALLTOALL_REQUESTS.map((r) => verdict(() => checkAllToAllRequest(r as ProfileAllToAllRequest, 4)));
  const faults = FAULT_SPECS.map((spec) => [0, 1, 2].map((r) => injectedFault("F", r, () => spec) ?? null));
  return { plans, packs, configs, compute, alltoall, faults };
}

Deno.test({
  name:
    "twins: step-plan checks, packing, a shape's config.json, profiling requests' checks and fault injection are the same in TypeScript and in the torch executor",
  ignore: missing !== undefined,
  fn: async () => {
    // The package's root on PYTHONPATH, as for its entry points (the script itself runs with -c).
    const { env } = torchModuleCommand(PACKAGE, "step_plan", Deno.env.get("PYTHONPATH"));
    const child = new Deno.Command("python3", {
      args: ["-c", PY],
      env,
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const w = child.stdin.getWriter();
    await w.write(
      new TextEncoder().encode(JSON.stringify({
        shape: SHAPE,
        plans: PLANS,
        packs: PACKS,
        configs: CONFIGS,
        compute: COMPUTE_REQUESTS,
        alltoall: ALLTOALL_REQUESTS,
        faults: FAULT_SPECS,
      })),
    );
    await w.close();
    const out = await child.output();
    assertEquals(out.code, 0, new TextDecoder().decode(out.stderr));
    const py = JSON.parse(new TextDecoder().decode(out.stdout));
    const ts = typescriptSide();
    assertEquals(ts.plans.filter((p) => "error" in p).length, PLANS.length - 3, "the cases reach every refusal");
    for (let i = 0; i < PLANS.length; i++) assertEquals(py.plans[i], ts.plans[i], `plan case ${i}`);
    for (let i = 0; i < PACKS.length; i++) assertEquals(py.packs[i], ts.packs[i], `packing case ${i}`);
    for (let i = 0; i < CONFIGS.length; i++) assertEquals(py.configs[i], ts.configs[i], `config.json case ${i}`);
    assertEquals(new Set(ts.compute).size, COMPUTE_REQUESTS.length, "each compute request reaches another verdict");
    assertEquals(
      new Set(ts.alltoall).size,
      ALLTOALL_REQUESTS.length,
      "each all-to-all request reaches another verdict",
    );
    assertEquals(py.compute, ts.compute, "profile_compute requests");
    assertEquals(py.alltoall, ts.alltoall, "profile_alltoall requests");
    for (let i = 0; i < FAULT_SPECS.length; i++) {
      assertEquals(py.faults[i], ts.faults[i], `fault injection ${JSON.stringify(FAULT_SPECS[i])}`);
    }
  },
});
