// The config is described in three places: its schema (orchestrator/config/cluster_schema.ts: keys, types,
// defaults), its types (types.ts) and the resolvers that turn the validated document into a Config (load.ts; the
// `observe:` section in observe_config.ts). This test fails when they disagree: every key of the schema must reach
// the resolved Config (under its camelCase name, or a name listed in RENAMED) with the value the file gave, an absent
// key must arrive as the schema's default, and every field of the resolved Config must come from a schema key.

import { assertEquals } from "../assert.ts";
import { parseConfig } from "../../orchestrator/config/load.ts";
import { clusterConfigSpec } from "../../orchestrator/config/cluster_schema.ts";
import type { Field, Spec } from "../../orchestrator/config/schema_spec.ts";
import type { Config } from "../../orchestrator/config/types.ts";
import { observeConfig } from "../../orchestrator/run/observe/observe_config.ts";
import { nodesOfAllocation } from "../../orchestrator/cluster/slurm_allocation.ts";

/** Schema paths whose Config field has another name: path -> [Config path, value as the Config holds it]. */
const RENAMED: Record<string, [string, (v: unknown) => unknown]> = {
  "training.step_timeout": ["training.stepTimeoutS", (v) => v],
  "profile.constants.bandwidth_gbps.intra": ["profile.constants.bandwidth.intra", (v) => v],
  "profile.constants.bandwidth_gbps.inter": ["profile.constants.bandwidth.inter", (v) => v],
  "observe.hang_min_s": ["observe.hangMinMs", (v) => 1000 * (v as number)],
};

/** Keys read another way than into a Config field of their own, and where (checked to exist in the schema). */
const READ_ELSEWHERE: Record<string, string> = {
  "model.from": "the model directory: its shape becomes the model's (tests/config/model_from_test.ts)",
  "profile.models": "the constants of model.preset when profile.constants is absent (resolveConstants)",
  "profile.constants.params_by_max_seq": "interpolated into profile.constants.params at model.max_seq",
};

/**
 * The cluster-level node keys of `cluster.scheduler: slurm`: applied to every node of the allocation
 * (nodesOfAllocation in orchestrator/cluster/slurm_allocation.ts); schema path -> the node's key in the schema.
 */
const SLURM_NODE_KEYS: Record<string, string> = {
  "cluster.devices_per_node": "devices",
  "cluster.executor": "executor",
  "cluster.device_memory_gb": "device_memory_gb",
  "cluster.speed": "speed",
  "cluster.deno": "deno",
  "cluster.python": "python",
  "cluster.workdir": "workdir",
};
const readElsewhere = (path: string) => path in READ_ELSEWHERE || path in SLURM_NODE_KEYS;

/** Fields of the resolved Config that no schema key sets (derived or filled in later). */
const DERIVED = new Set(["cluster.nodes.index"]);

/** Sample values where the generic one would break a check across keys. */
const SAMPLES: Record<string, unknown> = {
  "cluster.scheduler": "none", // slurm takes the nodes from an allocation
  "cluster.nodes.executor": "sim", // training.simulate (sampled true) requires it
  "cluster.nodes.jump": ["bastion-a", "bastion-b"],
  "planner.static_degree": 2, // powers of two
  "planner.min_degree": 2,
  "planner.zero_stage": 1,
};

const camel = (key: string) => key.replace(/_([a-z])/g, (_, c: string) => c.toUpperCase());

interface Leaf {
  path: string;
  field: Field;
}

/** The leaves of the schema (an open-keyed table is one leaf; a list of objects is entered at its first item). */
function leaves(spec: Spec, prefix = ""): Leaf[] {
  if (spec.kind !== "object") return [];
  return Object.entries(spec.fields).flatMap(([key, field]) => {
    const path = prefix ? `${prefix}.${key}` : key;
    const s = field.spec.kind === "array" && field.spec.of.kind === "object" ? field.spec.of : field.spec;
    return s.kind === "object" && Object.keys(s.fields).length ? leaves(s, path) : [{ path, field }];
  });
}

/** A valid value of `spec` that differs from `dflt` (absolute paths for strings: config-relative resolution keeps them). */
function sample(spec: Spec, path: string, dflt: unknown): unknown {
  switch (spec.kind) {
    case "int":
      return [(spec.min ?? 0) + 2, spec.min ?? 0].find((v) => v !== dflt && v <= (spec.max ?? Infinity));
    case "number":
      return dflt === 2.5 ? 3.5 : 2.5;
    case "string":
      return `/sample/${path}`;
    case "bool":
      return dflt !== true;
    case "enum":
      return spec.values.find((v) => v !== dflt);
    case "oneOf":
      return sample(spec.options[0], path, dflt);
    case "array":
      return [sample(spec.of, path, undefined)];
    case "object":
      return { "2": 2.5 };
  }
}

/** Sets `value` at a dotted path, entering the first item of a list. */
function setPath(doc: Record<string, unknown>, path: string, value: unknown): void {
  const keys = path.split(".");
  let o = doc as Record<string, unknown>;
  for (const k of keys.slice(0, -1)) {
    if (k === "nodes") o = ((o[k] ??= [{}]) as Record<string, unknown>[])[0];
    else o = (o[k] ??= {}) as Record<string, unknown>;
  }
  o[keys[keys.length - 1]] = value;
}

/** The value at a dotted Config path (the first node for `cluster.nodes`), and whether the field exists. */
function getPath(view: Record<string, unknown>, path: string): { found: boolean; value: unknown } {
  let o: unknown = view;
  for (const k of path.split(".")) {
    if (Array.isArray(o)) o = o[0];
    if (o === null || typeof o !== "object" || !(k in (o as object))) return { found: false, value: undefined };
    o = (o as Record<string, unknown>)[k];
  }
  if (Array.isArray(o) && path === "cluster.nodes") o = o[0];
  return { found: true, value: o };
}

/** Where the value of schema key `path` lands in the view of a Config, and how it looks there. */
function target(path: string): [string, (v: unknown) => unknown] {
  return RENAMED[path] ?? [path.split(".").map(camel).join("."), (v) => v];
}

/** The resolved Config with the `observe:` section as its reader resolves it. */
function view(config: Config): Record<string, unknown> {
  return { ...config, observe: observeConfig(config) } as unknown as Record<string, unknown>;
}

const LEAVES = leaves(clusterConfigSpec);
/** One node, a preset model and the required cost constants: the least a config needs, with every section. */
const MINIMAL = {
  cluster: { nodes: [{ host: "n0", devices: 1 }] },
  model: { preset: "gpt-tiny" },
  profile: { constants: { alpha1: 1, alpha2: 1, act_mb_per_token: 1, bandwidth_gbps: { intra: { "2": 1 } } } },
};

Deno.test("config description: every schema key reaches the Config with the value the file gave", () => {
  const doc: Record<string, unknown> = {};
  for (const { path, field } of LEAVES) {
    if (readElsewhere(path)) continue;
    setPath(doc, path, path in SAMPLES ? SAMPLES[path] : sample(field.spec, path, field.default));
  }
  const resolved = view(parseConfig(JSON.stringify(doc), "/sample/c.yaml"));
  const wrong: string[] = [];
  for (const { path } of LEAVES) {
    if (readElsewhere(path)) continue;
    const given = getPath(doc, path).value;
    const [to, as] = target(path);
    const got = getPath(resolved, to);
    if (!got.found) {
      wrong.push(`${path}: no Config field ${to} (add it to types.ts and its resolver, or to READ_ELSEWHERE)`);
    } else if (JSON.stringify(got.value) !== JSON.stringify(as(given))) {
      wrong.push(`${path}: the file gave ${JSON.stringify(given)}, ${to} is ${JSON.stringify(got.value)}`);
    }
  }
  assertEquals(wrong, []);
});

Deno.test("config description: an absent key arrives as the schema's default", () => {
  const resolved = view(parseConfig(JSON.stringify(MINIMAL), "/sample/c.yaml"));
  const wrong: string[] = [];
  for (const { path, field } of LEAVES) {
    if (field.default === undefined || readElsewhere(path) || getPath(MINIMAL, path).found) continue;
    const [to, as] = target(path);
    const got = getPath(resolved, to).value;
    if (JSON.stringify(got) !== JSON.stringify(as(field.default))) {
      wrong.push(`${path}: the schema's default is ${JSON.stringify(field.default)}, ${to} is ${JSON.stringify(got)}`);
    }
  }
  assertEquals(wrong, []);
});

Deno.test("config description: every field of the resolved sections comes from a schema key", () => {
  const resolved = view(parseConfig(JSON.stringify(MINIMAL), "/sample/c.yaml"));
  const fromSchema = new Set(LEAVES.map(({ path }) => target(path)[0]));
  const sections: [string, unknown][] = [
    ["cluster", resolved.cluster],
    ["cluster.nodes", (resolved.cluster as Config["cluster"]).nodes[0]],
    ["training", resolved.training],
    ["planner", resolved.planner],
    ["observe", resolved.observe],
  ];
  const orphans: string[] = [];
  for (const [prefix, section] of sections) {
    for (const key of Object.keys(section as object)) {
      const path = `${prefix}.${key}`;
      if (path !== "cluster.nodes" && !fromSchema.has(path) && !DERIVED.has(path)) orphans.push(path);
    }
  }
  assertEquals(orphans, []);
  const listed = [READ_ELSEWHERE, SLURM_NODE_KEYS, RENAMED, SAMPLES].flatMap((t) => Object.keys(t));
  for (const path of [...listed, ...Object.values(SLURM_NODE_KEYS).map((k) => `cluster.nodes.${k}`)]) {
    assertEquals(LEAVES.some((l) => l.path === path), true, `${path} is listed here but is not a schema key`);
  }
});

Deno.test("config description: a Slurm config's cluster-level node keys reach every node, absent ones as the node's default", () => {
  const alloc = [{ name: "n1", addr: "10.0.0.1", gpus: 2, visible: "0,1" }, {
    name: "n2",
    addr: "n2",
    gpus: 2,
    visible: "",
  }];
  const leaf = (path: string) => LEAVES.find((l) => l.path === path)!.field;
  const given: Record<string, unknown> = { scheduler: "slurm" };
  for (const path of Object.keys(SLURM_NODE_KEYS)) {
    const key = path.split(".")[1];
    given[key] = sample(leaf(path).spec, path, leaf(`cluster.nodes.${SLURM_NODE_KEYS[path]}`).default);
  }
  const cases: [string, Record<string, unknown>, (nodeKey: string, path: string) => unknown][] = [
    ["given", given, (_k, path) => given[path.split(".")[1]]],
    ["absent", { scheduler: "slurm" }, (k) => k === "devices" ? 2 : leaf(`cluster.nodes.${k}`).default],
  ];
  const wrong: string[] = [];
  for (const [name, cluster, expected] of cases) {
    const config = parseConfig(JSON.stringify({ cluster, model: { preset: "gpt-tiny" } }), "/sample/s.yaml");
    for (const node of nodesOfAllocation(config, alloc, "/sample/s.yaml")) {
      for (const [path, key] of Object.entries(SLURM_NODE_KEYS)) {
        const got = (node as unknown as Record<string, unknown>)[camel(key)];
        if (JSON.stringify(got) !== JSON.stringify(expected(key, path))) {
          wrong.push(
            `${name} ${path}: expected ${JSON.stringify(expected(key, path))}, node ${node.srun}.${camel(key)} is ${
              JSON.stringify(got)
            }`,
          );
        }
      }
    }
  }
  assertEquals(wrong, []);
});
