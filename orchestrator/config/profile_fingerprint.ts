// The cluster fingerprint of a profile: the config-level key (model shape, nodes, devices, executor kinds) that
// `plan` checks without touching the cluster, the per-node hardware `launch` checks once agents report their
// inventories, and the software versions (warnings only: a new Deno or executor build may change timings).

import { canonicalJson } from "../../core/canonical_json.ts";
import { sha256Hex } from "../../core/hash.ts";
import type { Config } from "./types.ts";
import type { Inventory } from "../../core/protocol.ts";
import type { ClusterKey, Fingerprint, NodeFingerprint } from "./profile_doc.ts";

/** First 16 hex digits of the sha256 of the canonical JSON of `v`. */
export function hashOf(v: unknown): string {
  return sha256Hex(canonicalJson(v)).slice(0, 16);
}

/** The config-level part of the fingerprint. */
export function clusterKeyOf(config: Config): ClusterKey {
  const m = config.model;
  return {
    model: {
      layers: m.layers,
      hidden: m.hidden,
      heads: m.heads,
      vocab: m.vocab,
      maxSeq: m.maxSeq,
      checkpointing: m.checkpointing,
      ...(m.family === "llama"
        ? {
          family: "llama",
          kvHeads: m.kvHeads ?? m.heads,
          headDim: m.headDim ?? m.hidden / m.heads,
          intermediate: m.intermediate,
        }
        : {}),
    },
    nodes: config.cluster.nodes.map((n) => ({ host: n.host, devices: n.devices, executor: n.executor })),
  };
}

/** The YAML names of the cluster key's model fields, where they differ from the TypeScript ones. */
const MODEL_KEY_NAMES: Partial<Record<keyof ClusterKey["model"], string>> = {
  maxSeq: "max_seq",
  kvHeads: "kv_heads",
  headDim: "head_dim",
};

/** Differences between the cluster a profile was measured on and the config's (empty when they match). */
export function compareClusterKeys(profiled: ClusterKey, now: ClusterKey): string[] {
  const out: string[] = [];
  const keys = new Set([...Object.keys(profiled.model), ...Object.keys(now.model)]) as Set<keyof ClusterKey["model"]>;
  for (const k of keys) {
    // A gpt model has no family fields: absent reads as family gpt and as "none" for the llama-only widths.
    const show = (v: unknown) => v ?? (k === "family" ? "gpt" : "none");
    if (profiled.model[k] !== now.model[k]) {
      out.push(
        `model.${MODEL_KEY_NAMES[k] ?? k}: profiled ${show(profiled.model[k])}, config has ${show(now.model[k])}`,
      );
    }
  }
  if (profiled.nodes.length !== now.nodes.length) {
    out.push(`cluster.nodes: profiled ${profiled.nodes.length} node(s), config has ${now.nodes.length}`);
  }
  for (let i = 0; i < Math.min(profiled.nodes.length, now.nodes.length); i++) {
    const a = profiled.nodes[i], b = now.nodes[i];
    for (const k of ["host", "devices", "executor"] as const) {
      if (a[k] !== b[k]) out.push(`cluster.nodes[${i}].${k}: profiled ${a[k]}, config has ${b[k]}`);
    }
  }
  return out;
}

/** A node's hardware fingerprint from its inventory, resolved executor kind and executor device strings. */
export function nodeFingerprintOf(n: {
  index: number;
  host: string;
  inventory: Inventory;
  executorKind: string;
  /** Each device's name as its executor reported it. */
  devices: string[];
}): NodeFingerprint {
  const { index, host, inventory: inv, executorKind, devices } = n;
  return {
    index,
    host,
    hostname: inv.hostname,
    os: inv.os,
    arch: inv.arch,
    cpuModel: inv.cpuModel,
    cpus: inv.cpus,
    memoryGb: Math.round(inv.memoryGb * 10) / 10,
    deno: inv.deno,
    executorKind,
    gpus: inv.gpus.map((g) => ({ name: g.name, memoryMb: g.memoryMb })),
    webgpu: inv.webgpu ? { description: inv.webgpu.description, vendor: inv.webgpu.vendor } : undefined,
    devices,
  };
}

/** The whole fingerprint. `executorHash` identifies the executor build (see bootstrap's `sourceHash`). */
export function fingerprintOf(config: Config, nodes: NodeFingerprint[], executorHash: string): Fingerprint {
  const cluster = clusterKeyOf(config);
  return {
    cluster,
    clusterHash: hashOf(cluster),
    nodes,
    software: { deno: Deno.version.deno, executor: executorHash, protocol: 1, os: Deno.build.os },
  };
}

/**
 * Compares the nodes a profile was measured on with the nodes now up: hardware differences are problems (the
 * constants do not describe these devices), software differences are warnings.
 */
export function compareNodes(
  profiled: NodeFingerprint[],
  now: NodeFingerprint[],
): { problems: string[]; warnings: string[] } {
  const problems: string[] = [];
  const warnings: string[] = [];
  for (const b of now) {
    const a = profiled.find((p) => p.index === b.index);
    const where = `node ${b.index} (${b.host})`;
    if (!a) {
      problems.push(`${where}: not in the profile`);
      continue;
    }
    const hw: [string, unknown, unknown][] = [
      ["hostname", a.hostname, b.hostname],
      ["arch", a.arch, b.arch],
      ["CPU", a.cpuModel ?? "?", b.cpuModel ?? "?"],
      ["executor", a.executorKind, b.executorKind],
      ["GPUs", a.gpus.map((g) => g.name).join(", ") || "none", b.gpus.map((g) => g.name).join(", ") || "none"],
      ["WebGPU adapter", a.webgpu?.description ?? "none", b.webgpu?.description ?? "none"],
    ];
    for (const [what, x, y] of hw) {
      if (canonicalJson(x) !== canonicalJson(y)) problems.push(`${where}: ${what} was ${x}, is now ${y}`);
    }
    if (a.cpus !== b.cpus) warnings.push(`${where}: had ${a.cpus} CPU cores when profiled, now ${b.cpus}`);
    if (a.deno !== b.deno) warnings.push(`${where}: profiled with Deno ${a.deno}, now ${b.deno}`);
  }
  return { problems, warnings };
}
