// The cost model reproduces the reference's numbers (paper-notes §2.1-2.2, derived examples).

import { assert, assertClose } from "../assert.ts";
import { loadConfig } from "../../orchestrator/config/load.ts";
import { plannerSetup } from "../../orchestrator/planner/from_config.ts";
import { PlanContext } from "../../orchestrator/planner/context.ts";

const paper = async (sets: string[] = []) => {
  const config = await loadConfig("configs/paper-a100-64.yaml", sets);
  return plannerSetup(config, config.profile.constants!);
};

Deno.test("GPT-7B compute and all-to-all times match the reference's derived examples", async () => {
  const { cost } = await paper();
  // notes §2.1: s=4K: d=8 -> 105 / 11 ms; d=64 -> 13 / 26 ms. s=64K: d=8 -> 4260 / 170; d=64 -> 533 / 420.
  assertClose(cost.computeMs(4096, 8), 105, 0.01);
  assertClose(cost.commMs(4096, 8, false), 10.6, 0.02);
  assertClose(cost.computeMs(4096, 64), 13.1, 0.02);
  assertClose(cost.commMs(4096, 64, true), 26.3, 0.02);
  assertClose(cost.computeMs(65536, 8), 4260, 0.01);
  assertClose(cost.commMs(65536, 8, false), 170, 0.01);
  assertClose(cost.computeMs(65536, 64), 533, 0.01);
  assertClose(cost.commMs(65536, 64, true), 420, 0.01);
  assert(cost.commMs(4096, 1, false) === 0, "degree 1 has no all-to-all");
});

Deno.test("token capacity is about 5,950 per A100 at 28 GB, so 192K needs SP=64 and 48K fits SP=8", async () => {
  const { cost, topology, options } = await paper();
  const cap = cost.tokenCapacity();
  assert(cap > 5900 && cap < 6050, `capacity ${cap}`);
  const ctx = new PlanContext(cost, topology, 64, options);
  assert(ctx.minDegreeOf(32 * 1024) === 8, "32K on SP=8");
  assert(ctx.minDegreeOf(64 * 1024) === 16, "64K on SP=16");
  assert(ctx.minDegreeOf(100 * 1024) === 32, "100K on SP=32");
  assert(ctx.minDegreeOf(196608) === 64, "192K on SP=64");
  assert(ctx.minDegreeOf(393216) === Infinity, "384K fits nowhere with selective checkpointing");
});

Deno.test("full activation checkpointing trades memory for a third more compute", async () => {
  const sel = (await paper()).cost;
  const full = (await paper(["model.checkpointing=full"])).cost;
  assert(full.tokenCapacity() > 5 * sel.tokenCapacity(), "checkpointing multiplies the token capacity");
  assertClose(full.computeMs(8192, 8) / sel.computeMs(8192, 8), 4 / 3, 1e-9);
});

Deno.test("bandwidth: exact degree, nearest degree, and inter-node groups use the inter table", async () => {
  const { cost } = await paper();
  assertClose(cost.bandwidth(8, false), 96.5);
  assertClose(cost.bandwidth(16, true), 10.33);
  assertClose(cost.bandwidth(128, true), 4.87); // beyond the table: nearest (64)
  assertClose(cost.bandwidth(2, true), 10.33); // a spanning pair uses the nearest inter-node entry
});
