// Bad cluster.yaml files give one located, path-qualified message with the fix; good ones resolve fully.

import { assert, assertEquals, assertThrows } from "../assert.ts";
import { loadConfig, parseConfig } from "../../orchestrator/config/load.ts";

const GOOD = `cluster:
  nodes:
    - host: localhost
      transport: local
      devices: 4
model:
  preset: gpt-tiny
`;

const CASES: [string, string, string[], string][] = [
  [
    "devices not a number",
    GOOD.replace("devices: 4", "devices: eight"),
    [],
    `c.yaml:5:16 cluster.nodes[0].devices: expected a positive integer, got "eight"`,
  ],
  [
    "unknown key with a suggestion",
    GOOD.replace("devices: 4", "devices: 4\n      devcies: 2"),
    [],
    `c.yaml:6:7 cluster.nodes[0].devcies: unknown key "devcies" (did you mean "devices"?)`,
  ],
  [
    "enum typo",
    GOOD.replace("transport: local", "transport: locl"),
    [],
    `c.yaml:4:18 cluster.nodes[0].transport: expected one of local, ssh, got "locl" (did you mean "local"?)`,
  ],
  [
    "missing required key",
    GOOD.replace("      devices: 4\n", ""),
    [],
    `c.yaml:3:7 cluster.nodes[0]: missing required key "devices" (a positive integer)`,
  ],
  [
    "unknown preset",
    GOOD.replace("gpt-tiny", "gpt-7c"),
    [],
    `c.yaml:7:11 model.preset: expected one of gpt-tiny, gpt-small, gpt-7b, gpt-13b, gpt-30b, llama-tiny, llama2-7b, llama3-8b, llama3-70b, mistral-7b, qwen2-7b, got "gpt-7c" ` +
    `(did you mean "gpt-7b"?)`,
  ],
  [
    "heads must divide hidden",
    GOOD + "  heads: 5\n",
    [],
    `c.yaml:8:10 model.heads: 5 heads do not divide hidden size 64`,
  ],
  [
    "empty node list",
    "cluster:\n  nodes: []\nmodel:\n  preset: gpt-tiny\n",
    [],
    `c.yaml:2:10 cluster.nodes: expected at least 1 item(s), got 0`,
  ],
  [
    "YAML syntax",
    "cluster:\n  nodes: [\n",
    [],
    "c.yaml:3:1 YAML syntax error",
  ],
  [
    "static degree not a power of two",
    GOOD + "planner:\n  static_degree: 3\n",
    [],
    `c.yaml:9:18 planner.static_degree: expected a power of two, got 3`,
  ],
  [
    "override with a bad value",
    GOOD,
    ["cluster.nodes[0].devices=eight"],
    `--set cluster.nodes[0].devices=eight: cluster.nodes[0].devices: expected a positive integer, got "eight"`,
  ],
  [
    "override of an unknown key",
    GOOD,
    ["model.presett=gpt-7b"],
    `--set model.presett=gpt-7b: model.presett: unknown key "presett" (did you mean "preset"?)`,
  ],
  [
    "override syntax",
    GOOD,
    ["model.preset"],
    "--set model.preset: expected PATH=VALUE, e.g. --set model.preset=gpt-13b",
  ],
  [
    "bandwidth keys must be degrees",
    GOOD + "profile:\n  constants: {alpha1: 1, alpha2: 1, act_mb_per_token: 1, bandwidth_gbps: {intra: {3: 1}}}\n",
    [],
    "profile.constants.bandwidth_gbps.intra.3: keys must be powers of two >= 2 (SP degrees)",
  ],
  [
    "node memory budget above its device memory",
    GOOD.replace("devices: 4", "devices: 4\n      device_memory_gb: 80\n      memory_budget_gb: 90"),
    [],
    "c.yaml:7:25 cluster.nodes[0].memory_budget_gb: 90 GB is above this node's device_memory_gb (80 GB); lower " +
    "memory_budget_gb to at most 80",
  ],
  [
    "node memory budget above its device memory, from --set",
    GOOD.replace("devices: 4", "devices: 4\n      device_memory_gb: 40"),
    ["cluster.nodes[0].memory_budget_gb=41"],
    "--set cluster.nodes[0].memory_budget_gb=41: cluster.nodes[0].memory_budget_gb: 41 GB is above this node's " +
    "device_memory_gb (40 GB)",
  ],
  [
    "parameter table without the context",
    GOOD + "profile:\n  constants: {alpha1: 1, alpha2: 1, act_mb_per_token: 1, bandwidth_gbps: {intra: {2: 1}}, " +
    "params_by_max_seq: {2048: 1.0e6, 4096: 2.0e6}}\n",
    ["model.max_seq=8192"],
    "profile.constants.params_by_max_seq: model.max_seq 8192 is outside the table's contexts (2048, 4096); add " +
    "an entry for it or set model.params",
  ],
  [
    "the simulated executor in a config meant to train",
    GOOD.replace("devices: 4", "devices: 4\n      executor: sim"),
    [],
    "c.yaml:6:17 cluster.nodes[0].executor: sim is the simulated executor, a test and benchmark tool that trains " +
    "nothing; set training.simulate: true",
  ],
  [
    "a simulation with a real executor",
    GOOD.replace("devices: 4", "devices: 4\n      executor: cpu"),
    ["training.simulate=true"],
    "cluster.nodes[0].executor: cpu trains for real, but training.simulate is true; set executor: sim on every node",
  ],
  [
    "cpu_pinning with fewer CPU lists than devices",
    GOOD.replace("devices: 4", 'devices: 4\n      cpu_pinning: ["0", "1"]'),
    [],
    "cluster.nodes[0].cpu_pinning: 2 CPU list(s) for 4 device(s); list one per device, or use auto",
  ],
  [
    "cpu_pinning with a list that is not a CPU list",
    GOOD.replace("devices: 4", 'devices: 2\n      cpu_pinning: ["0-1", "3-2"]'),
    [],
    'cluster.nodes[0].cpu_pinning[1]: "3-2": range 3-2 runs backwards; write CPU lists like 0-3 or 0,2',
  ],
  [
    "cpu_pinning that is neither auto, off nor a list",
    GOOD.replace("devices: 4", "devices: 4\n      cpu_pinning: yes"),
    [],
    "cluster.nodes[0].cpu_pinning",
  ],
];

for (const [name, text, sets, expected] of CASES) {
  Deno.test(`bad config: ${name}`, async () => {
    const msg = await assertThrows(() => parseConfig(text, "c.yaml", sets));
    assert(msg.includes(expected), `expected message containing:\n${expected}\ngot:\n${msg}`);
    assert(!msg.includes("\n    at "), "no stack trace in the message");
  });
}

Deno.test("a simulation: executor sim with training.simulate", () => {
  const c = parseConfig(GOOD.replace("devices: 4", "devices: 4\n      executor: sim"), "c.yaml", [
    "training.simulate=true",
  ]);
  assertEquals([c.cluster.nodes[0].executor, c.training.simulate], ["sim", true]);
});

Deno.test("cpu_pinning resolves to auto, off or the lists as written, and is absent when not set", () => {
  assertEquals(parseConfig(GOOD, "c.yaml").cluster.nodes[0].cpuPinning, undefined);
  assertEquals(parseConfig(GOOD, "c.yaml", ["cluster.nodes[0].cpu_pinning=auto"]).cluster.nodes[0].cpuPinning, "auto");
  const lists = GOOD.replace("devices: 4", 'devices: 2\n      cpu_pinning: ["0-1", "2,3"]');
  assertEquals(parseConfig(lists, "c.yaml").cluster.nodes[0].cpuPinning, ["0-1", "2,3"]);
});

Deno.test("a good config resolves presets, defaults and overrides", () => {
  const c = parseConfig(GOOD, "c.yaml", ["model.preset=gpt-13b", "cluster.nodes[0].executor=webgpu"]);
  assertEquals([c.model.layers, c.model.hidden, c.model.heads], [40, 5120, 64]);
  assertEquals(c.cluster.nodes[0].executor, "webgpu");
  assertEquals(c.planner.strategy, "flexsp");
  assertEquals(c.training.globalBatch, 16);
  assertEquals(c.cluster.nodes[0].port, 22);
});

Deno.test("paths are relative to the config file, and ~/ is the home directory", () => {
  const text = GOOD.replace(
    "transport: local",
    "transport: ssh\n      identity: ~/.ssh/id_ed25519\n      known_hosts: kh",
  );
  const c = parseConfig(text, "conf/c.yaml");
  assertEquals(c.cluster.nodes[0].identity, `${Deno.env.get("HOME")}/.ssh/id_ed25519`);
  assertEquals(c.cluster.nodes[0].knownHosts, "conf/kh");
});

Deno.test("shipped configs load, and --set model.preset switches the paper's constants", async () => {
  const local = await loadConfig("configs/local.yaml");
  assertEquals(local.cluster.nodes[0].devices, 4);
  const p7 = await loadConfig("configs/paper-a100-64.yaml");
  const p30 = await loadConfig("configs/paper-a100-64.yaml", ["model.preset=gpt-30b"]);
  assertEquals(p7.cluster.nodes.reduce((s, n) => s + n.devices, 0), 64);
  assertEquals(p7.profile.constants!.alpha1, 5.128e-6);
  assertEquals(p30.profile.constants!.beta1, 2789.3644);
  await assertThrows(() => loadConfig("configs/nope.yaml"), "configs/nope.yaml: no such file");
});
