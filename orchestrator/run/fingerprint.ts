// What identifies a run's training for resume: the config without its operational keys (timeouts, checkpoint
// cadence, failure policy, connection details, paths), the dataset's content hash and the cost constants' hash. A
// resume whose fingerprint differs is refused (unless forced) with the list of what changed.

import { canonicalJson } from "../../core/canonical_json.ts";
import { sha256Hex } from "../../core/hash.ts";
import type { Config, CostConstants } from "../config/types.ts";

/** Keys left out of the fingerprint: they change how the run is operated, not what it computes. */
const OPERATIONAL: Record<string, string[]> = {
  "": ["name", "profile", "observe"],
  cluster: ["connect_timeout_s", "heartbeat_timeout_s", "python"],
  "cluster.nodes[]": [
    "user",
    "port",
    "identity",
    "known_hosts",
    "host_key_policy",
    "deno",
    "python",
    "workdir",
    "transport",
    "jump",
    "ssh_config",
  ],
  training: [
    "checkpoint_interval",
    "checkpoint_dir",
    "checkpoint_async",
    "keep_checkpoints",
    "on_failure",
    "max_restarts",
    "dataset",
    "dataset_builtin",
    "resume",
    "step_timeout",
  ],
};

function strip(value: unknown, path: string): unknown {
  if (Array.isArray(value)) return value.map((v) => strip(v, `${path}[]`));
  if (value === null || typeof value !== "object") return value;
  const drop = OPERATIONAL[path] ?? [];
  const out: Record<string, unknown> = {};
  for (const k of Object.keys(value as Record<string, unknown>).sort()) {
    if (drop.includes(k)) continue;
    const v = (value as Record<string, unknown>)[k];
    if (v === undefined) continue;
    out[k] = strip(v, path ? `${path}.${k}` : k);
  }
  return out;
}

/** The part of a config that decides what a run computes (see the file header), as plain sorted data. */
export function configFingerprint(config: Config): Record<string, unknown> {
  return strip(config.document, "") as Record<string, unknown>;
}

/** Hash of the cost constants the planner uses. */
export function profileHash(constants: CostConstants): string {
  return sha256Hex(canonicalJson(constants));
}

/** Lists the differences between two fingerprints as `path: old -> new` lines. */
export function diffFingerprints(a: unknown, b: unknown, path = ""): string[] {
  const show = (v: unknown) => (v === undefined ? "(unset)" : JSON.stringify(v));
  if (a === b) return [];
  const isObj = (v: unknown) => v !== null && typeof v === "object";
  if (Array.isArray(a) && Array.isArray(b)) {
    if (a.length !== b.length) return [`${path}: ${a.length} entries -> ${b.length} entries`];
    return a.flatMap((x, i) => diffFingerprints(x, b[i], `${path}[${i}]`));
  }
  if (isObj(a) && isObj(b) && !Array.isArray(a) && !Array.isArray(b)) {
    const keys = [...new Set([...Object.keys(a as object), ...Object.keys(b as object)])].sort();
    return keys.flatMap((k) =>
      diffFingerprints(
        (a as Record<string, unknown>)[k],
        (b as Record<string, unknown>)[k],
        path ? `${path}.${k}` : k,
      )
    );
  }
  return JSON.stringify(a) === JSON.stringify(b) ? [] : [`${path}: ${show(a)} -> ${show(b)}`];
}
