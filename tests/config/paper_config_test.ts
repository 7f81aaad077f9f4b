// The paper config carries the reference's parameter counts (P_B x 2^30, linear between 192K and 384K), so its
// token capacities are the reference's floor((E*1024 - M_ms) / M_token); model.params overrides the count, and
// per-node budgets give each device its own capacity.

import { assert, assertEquals } from "../assert.ts";
import { interpolateParams, loadConfig, parseConfig } from "../../orchestrator/config/load.ts";
import { plannerSetup } from "../../orchestrator/planner/from_config.ts";
import { PlanContext } from "../../orchestrator/planner/context.ts";

const PAPER = "configs/paper-a100-64.yaml";

// The reference (flexsp-paper-notes.md §2.2, from Galvatron's solver.py): P_B in units of 2^30 parameters and
// activation MB per token of each model; E = 28 GB, ZeRO-3 over N = 64 GPUs, 16 bytes per parameter.
const P_B: Record<string, [number, number]> = {
  "gpt-7b": [7.117, 7.850],
  "gpt-13b": [13.116, 14.032],
  "gpt-30b": [31.525, 32.715],
};
const M_TOKEN: Record<string, number> = { "gpt-7b": 4.480441895, "gpt-13b": 4.220439453, "gpt-30b": 3.417381836 };

function referenceCapacity(pb: number, mToken: number, e = 28, n = 64): number {
  const mMs = pb * 16 * (1 / n) * 1024;
  return Math.floor((e * 1024 - mMs) / mToken);
}

Deno.test("paper config: token capacities equal the reference's formula for 7B, 13B and 30B at 192K and 384K", async () => {
  for (const [model, [p192, p384]] of Object.entries(P_B)) {
    for (const [maxSeq, pb] of [[196608, p192], [393216, p384]]) {
      const config = await loadConfig(PAPER, [`model.preset=${model}`, `model.max_seq=${maxSeq}`]);
      const setup = plannerSetup(config, config.profile.constants!);
      const ctx = new PlanContext(setup.cost, setup.topology, config.model.heads, setup.options);
      const want = referenceCapacity(pb, M_TOKEN[model]);
      assertEquals(setup.cost.tokenCapacity(), want, `${model} at ${maxSeq}`);
      assert(ctx.capacity.every((c) => c === want), `${model} at ${maxSeq}: every device holds ${want}`);
    }
  }
  // The example: 13B at 192K holds 5,998 tokens per device (the GPT-2 formula gave 6,011).
  const c13 = await loadConfig(PAPER, ["model.preset=gpt-13b"]);
  assertEquals(plannerSetup(c13, c13.profile.constants!).cost.tokenCapacity(), 5998);
});

Deno.test("paper config: parameter counts interpolate linearly between 192K and 384K", async () => {
  const mid = await loadConfig(PAPER, ["model.preset=gpt-13b", "model.max_seq=294912"]);
  const want = (13.116 + 14.032) / 2 * 2 ** 30;
  assert(Math.abs(mid.profile.constants!.params! - want) < 1, `${mid.profile.constants!.params} vs ${want}`);
  assertEquals(interpolateParams({ "100": 10, "300": 30 }, 150), 15);
  assertEquals(interpolateParams({ "100": 10, "300": 30 }, 300), 30);
});

Deno.test("model.params overrides the profile's count in any config", async () => {
  const base = await loadConfig(PAPER);
  const over = await loadConfig(PAPER, [`model.params=${7e9}`]);
  assertEquals(over.model.params, 7e9);
  const cost = plannerSetup(over, over.profile.constants!).cost;
  assertEquals(cost.modelStateMb, 7e9 * 16 / 64 / 2 ** 20);
  assert(cost.tokenCapacity() > plannerSetup(base, base.profile.constants!).cost.tokenCapacity());
});

Deno.test("per-node memory_budget_gb overrides planner.memory_budget_gb for that node's devices", async () => {
  const config = await loadConfig(PAPER, [
    "cluster.nodes[7].device_memory_gb=80",
    "cluster.nodes[7].memory_budget_gb=68",
    "cluster.nodes[7].speed=2",
  ]);
  const setup = plannerSetup(config, config.profile.constants!);
  const ctx = new PlanContext(setup.cost, setup.topology, config.model.heads, setup.options);
  const small = referenceCapacity(7.117, M_TOKEN["gpt-7b"]);
  const large = referenceCapacity(7.117, M_TOKEN["gpt-7b"], 68);
  assertEquals(ctx.capacity.slice(0, 56), new Array(56).fill(small));
  assertEquals(ctx.capacity.slice(56), new Array(8).fill(large));
  assertEquals(setup.topology.deviceType![0], "cuda 40GB");
  assertEquals(setup.topology.deviceType![7], "cuda 80GB x2");
  // A node without its own budget and without a planner budget uses 90% of its own device memory.
  const text = `cluster:
  nodes:
    - { host: a, transport: local, devices: 2, device_memory_gb: 40 }
    - { host: b, transport: local, devices: 2, device_memory_gb: 80 }
model: { preset: gpt-tiny }
profile:
  constants: { alpha1: 1, alpha2: 1, act_mb_per_token: 1, bandwidth_gbps: { intra: { 2: 1 } } }
`;
  const c2 = parseConfig(text, "c.yaml");
  const s2 = plannerSetup(c2, c2.profile.constants!);
  assertEquals(s2.topology.budgetGb, [36, 36, 72, 72]);
});
