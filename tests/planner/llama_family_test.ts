// The planner knows the llama family: its parameter count (Llama-3-8B's published 8,030,261,248) in the model-state
// memory, GQA all-to-all bytes (K and V carry fewer heads; replicated up to the degree past the K/V heads), and only
// SP degrees Ulysses can run with the model's query and K/V heads.

import { assert, assertEquals, assertThrows } from "../assert.ts";
import { validateShape } from "../../kernels/model.ts";
import { CostModel } from "../../orchestrator/planner/cost_model.ts";
import { DEFAULT_PLANNER_OPTIONS, PlanContext } from "../../orchestrator/planner/context.ts";
import { uniformTopology } from "../../orchestrator/planner/topology.ts";
import { degreeProblem, kvHeadsPerRank, MODEL_PRESETS, parameterCount } from "../../core/model_shape.ts";
import type { ModelConfig } from "../../orchestrator/config/types.ts";
import { TOY_CONSTANTS } from "./fixtures.ts";

const cfg = (preset: string): ModelConfig => ({ ...MODEL_PRESETS[preset], checkpointing: "selective" });

Deno.test("llama-family parameter counts: Llama-3-8B, Llama-2-7B, Qwen2-7B as published", () => {
  assertEquals(parameterCount(MODEL_PRESETS["llama3-8b"]), 8_030_261_248);
  assertEquals(parameterCount(MODEL_PRESETS["llama2-7b"]), 6_738_415_616);
  assertEquals(parameterCount(MODEL_PRESETS["qwen2-7b"]), 7_615_616_512);
  const cost = new CostModel(TOY_CONSTANTS, cfg("llama3-8b"), { memoryBudgetGb: 80, zeroStage: 3, devices: 64 });
  assertEquals(cost.modelStateMb, (8_030_261_248 * 16) / 64 / 2 ** 20);
});

Deno.test("GQA all-to-all: K/V bytes shrink with the K/V heads and grow back when replicated past them", () => {
  const m = cfg("llama3-8b"); // 32 query heads, 8 K/V heads, head dim 128
  const cost = new CostModel(TOY_CONSTANTS, m, { memoryBudgetGb: 80, zeroStage: 3, devices: 64 });
  const mb = (width: number) => (2 * 32 * width * 128 * 2) / 2 ** 20;
  assertEquals(cost.commMbPerTokenAt(8), mb(2 * 32 + 2 * 8)); // one K/V head per rank
  assertEquals(cost.commMbPerTokenAt(16), mb(2 * 32 + 2 * 16)); // each K/V head replicated twice
  const mha = new CostModel(TOY_CONSTANTS, cfg("llama2-7b"), { memoryBudgetGb: 80, zeroStage: 3, devices: 64 });
  assertEquals(mha.commMbPerTokenAt(8), (4 * 2 * 32 * 4096 * 2) / 2 ** 20); // MHA: the GPT formula
  assert(cost.commMs(8192, 8, false) < mha.commMs(8192, 8, false), "GQA moves less than MHA");
  assertEquals([kvHeadsPerRank(m, 4), kvHeadsPerRank(m, 8), kvHeadsPerRank(m, 32)], [2, 1, 1]);
});

Deno.test("only degrees Ulysses can run: 12 query heads and 3 K/V heads allow degree 1 and 3-free powers of two", () => {
  const m: ModelConfig = { ...cfg("llama-tiny"), heads: 12, kvHeads: 3, hidden: 96 };
  assert(degreeProblem(m, 2)?.includes("incompatible with the model's 3 K/V heads"), "degree 2 refused");
  assertEquals(degreeProblem(m, 1), undefined);
  const cost = new CostModel(TOY_CONSTANTS, m, { memoryBudgetGb: 1, zeroStage: 3, devices: 8 });
  const ctx = new PlanContext(cost, uniformTopology([8]), m.heads, DEFAULT_PLANNER_OPTIONS);
  assertEquals(ctx.degrees, [1]);
  const gqa = new CostModel(TOY_CONSTANTS, cfg("llama-tiny"), { memoryBudgetGb: 1, zeroStage: 3, devices: 8 });
  assertEquals(new PlanContext(gqa, uniformTopology([8]), 4, DEFAULT_PLANNER_OPTIONS).degrees, [1, 2, 4]);
});

Deno.test("the TypeScript executors refuse a llama-family shape with the fix (the torch executors run it)", async () => {
  await assertThrows(
    () => validateShape(MODEL_PRESETS["llama-tiny"]),
    "model shape: the llama family runs on the PyTorch executors only (executor: torch-cpu or cuda)",
  );
});
