// Shared pieces of the profile tests: configs written to temp dirs, a valid profile document built from a config
// (as `deno task profile` would write it, without measuring), and a runner for the profile and plan CLIs.

import { loadConfig } from "../../orchestrator/config/load.ts";
import type { Config } from "../../orchestrator/config/types.ts";
import { fingerprintOf, hashOf } from "../../orchestrator/config/profile_fingerprint.ts";
import type { NodeFingerprint, ProfileDoc, StoredConstants } from "../../orchestrator/config/profile_doc.ts";
import { PROFILE_SCHEMA_VERSION } from "../../orchestrator/config/profile_doc.ts";
import { runCli } from "../run/launch_harness.ts";

export const REPO = new URL("../../", import.meta.url).pathname.replace(/\/$/, "");

/** A local cluster config (CPU executors unless `executor` says otherwise) in `dir`; `extra` lines are appended at the top level. */
export async function writeLocalConfig(
  dir: string,
  opts: { nodes?: number[]; name?: string; extra?: string; profilePath?: string; executor?: string } = {},
): Promise<string> {
  const nodes = (opts.nodes ?? [2]).map((d) =>
    [
      `    - host: localhost`,
      `      transport: local`,
      `      devices: ${d}`,
      `      executor: ${opts.executor ?? "cpu"}`,
    ]
      .join("\n")
  );
  const text = [
    `name: ${opts.name ?? "ptest"}`,
    "cluster:",
    "  heartbeat_timeout_s: 20",
    "  nodes:",
    ...nodes,
    "model:",
    "  preset: gpt-tiny",
    "  checkpointing: none",
    "training:",
    "  lengths: wikipedia",
    "  global_batch: 8",
    "planner:",
    "  memory_budget_gb: 0.25",
    "  milp: none",
    "  time_limit_ms: 300",
    ...(opts.profilePath ? ["profile:", `  path: ${opts.profilePath}`] : []),
    opts.extra ?? "",
    "",
  ].join("\n");
  const path = `${dir}/${opts.name ?? "ptest"}.yaml`;
  await Deno.writeTextFile(path, text);
  return path;
}

/** Constants of a plausible gpt-tiny CPU profile. */
export const SAMPLE_CONSTANTS: StoredConstants = {
  alpha1: 5e-4,
  alpha2: 0.4,
  beta1: 5,
  act_mb_per_token: 0.0152,
  bandwidth_gbps: { intra: { "2": 0.4, "4": 0.2 }, inter: { "4": 0.02 } },
  device_speed: { cpu: 1 },
};

/** Node fingerprints of a config as if every node were this machine. */
export function fakeNodes(config: Config, cpuModel = "Test CPU 3000"): NodeFingerprint[] {
  return config.cluster.nodes.map((n) => ({
    index: n.index,
    host: n.host,
    hostname: "testhost",
    os: "linux",
    arch: "x86_64",
    cpuModel,
    cpus: 2,
    memoryGb: 16,
    deno: Deno.version.deno,
    executorKind: n.executor === "auto" ? "cpu" : n.executor,
    gpus: [],
    devices: Array.from({ length: n.devices }, (_, d) => `cpu:${d} cpu (TypeScript reference, f32)`),
  }));
}

/** A valid profile document for `config` (no measurements behind it). */
export function sampleProfile(config: Config, constants: StoredConstants = SAMPLE_CONSTANTS): ProfileDoc {
  return {
    schema: PROFILE_SCHEMA_VERSION,
    tool: "flexsp profile",
    createdAt: new Date().toISOString(),
    durationMs: 1000,
    config: config.source,
    fingerprint: fingerprintOf(config, fakeNodes(config), "exec0"),
    constants,
    constantsSha256: hashOf(constants),
    compute: {
      grid: { points: [], repeats: 1, warmup: 0 },
      deviceTypes: [],
      reference: "cpu",
      perDevice: [],
      samples: [],
    },
    memory: {
      source: "buffers",
      actMbPerToken: constants.act_mb_per_token,
      actFit: { slopeMb: constants.act_mb_per_token, interceptMb: 0, r2: 1 },
      modelStateMb: 2.8,
      plannerModelStateMb: 0.7,
      budgetMb: 256,
      tokenCapacity: 16000,
      perDevice: [],
      samples: [],
    },
    network: { alltoall: [], units: "test", representativeTokens: 1024 },
    warnings: [],
  };
}

/** Loads a config file. */
export function load(path: string, sets: string[] = []): Promise<Config> {
  return loadConfig(path, sets);
}

/** Runs one of the CLIs to completion. */
export function cli(
  script: "profile" | "plan",
  args: string[],
  env: Record<string, string> = {},
): Promise<{ code: number; out: string; err: string }> {
  return runCli(script, args, env);
}

/** Fails if a stack trace leaked into user-facing output. */
export function noStackTrace(text: string): void {
  if (/^\s+at .*:\d+:\d+/m.test(text)) throw new Error(`a stack trace leaked:\n${text}`);
}
