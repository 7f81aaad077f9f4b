// Test helpers for `deno task launch` as a real process: start it, read its output as it comes, wait for a step,
// kill it or one of its executors, and read what the run left behind (ledger, checkpoint manifests, pids in logs);
// and the other CLIs (nodes, profile, submit) run to completion the same way.

import { REPO_ROOT } from "../../orchestrator/cluster/bootstrap.ts";
import type { LedgerRecord } from "../../orchestrator/ledger/ledger.ts";
import type { CheckpointManifest } from "../../orchestrator/run/checkpoint_store.ts";
import { eventually } from "../assert.ts";
import { isAlive } from "../../agents/process_tree.ts";
import type { TestHost, TestHosts } from "../hosts/test_hosts.ts";

/** A running `launch` process. */
export interface LaunchProc {
  child: Deno.ChildProcess;
  out: () => string;
  err: () => string;
  /** Resolves once stdout (or stderr) contains `text`; throws after `ms`. */
  waitFor: (text: string, ms: number) => Promise<void>;
  /** Like `waitFor`, but fails at once (with the output) when the process ends before printing `text`. */
  waitWhileRunning: (text: string, ms: number) => Promise<void>;
  finish: () => Promise<{ code: number; signal: Deno.Signal | null; out: string; err: string }>;
}

/**
 * Starts `deno run -A orchestrator/cli/launch.ts ARGS` in the repository root; with `task`, `deno task launch ARGS`
 * in a process group of its own (a terminal's foreground job: signal it with `Deno.kill(-child.pid, SIG)`).
 */
export function startLaunch(args: string[], env: Record<string, string> = {}, task = false): LaunchProc {
  const child = new Deno.Command(Deno.execPath(), {
    args: task ? ["task", "launch", ...args] : ["run", "-A", `${REPO_ROOT}/orchestrator/cli/launch.ts`, ...args],
    cwd: REPO_ROOT,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    detached: task,
    env: { NO_COLOR: "1", ...env },
  }).spawn();
  let out = "", err = "";
  const pump = async (s: ReadableStream<Uint8Array>, add: (t: string) => void) => {
    const d = new TextDecoder();
    for await (const c of s) add(d.decode(c, { stream: true }));
  };
  const pumps = Promise.all([pump(child.stdout, (t) => out += t), pump(child.stderr, (t) => err += t)]);
  return {
    child,
    out: () => out,
    err: () => err,
    waitFor: async (text, ms) => {
      const ok = await eventually(() => out.includes(text) || err.includes(text), ms);
      if (!ok) throw new Error(`launch did not print ${JSON.stringify(text)} within ${ms} ms:\n${out}\n${err}`);
    },
    waitWhileRunning: async (text, ms) => {
      let seen = false;
      const ended = child.status.then(() => {
        if (!seen) throw new Error(`launch ended before printing ${JSON.stringify(text)}:\n${out}\n${err}`);
      });
      ended.catch(() => {});
      const ok = eventually(() => out.includes(text) || err.includes(text), ms).then((ok) => {
        seen = ok;
        if (!ok) throw new Error(`launch did not print ${JSON.stringify(text)} within ${ms} ms:\n${out}\n${err}`);
      });
      await Promise.race([ok, ended.then(() => ok)]);
    },
    finish: async () => {
      const s = await child.status;
      await pumps;
      return { code: s.code, signal: s.signal, out, err };
    },
  };
}

/** Runs launch to completion. */
export function launchCli(args: string[], env: Record<string, string> = {}) {
  return startLaunch(args, env).finish();
}

/** Runs `export` (orchestrator/cli/export.ts) to completion. */
export async function exportCli(args: string[]): Promise<{ code: number; out: string; err: string }> {
  const o = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "orchestrator/cli/export.ts", ...args],
    stdout: "piped",
    stderr: "piped",
  }).output();
  return { code: o.code, out: new TextDecoder().decode(o.stdout), err: new TextDecoder().decode(o.stderr) };
}

/** Starts launch with `ARGS --run-dir RUNDIR`, SIGKILLs launch itself once it prints `at` (within `ms`), waits for it. */
export async function killLaunchAt(args: string[], runDir: string, at: string, ms: number) {
  const p = startLaunch([...args, "--run-dir", runDir]);
  await p.waitFor(at, ms);
  p.child.kill("SIGKILL");
  return await p.finish();
}

/**
 * Starts launch with `ARGS --run-dir RUNDIR`, SIGKILLs the executor of `rank` (its pid from the run's logs) once
 * launch prints `at` (within `ms`), and waits for launch to end.
 */
export async function killRankAt(args: string[], runDir: string, at: string, ms: number, rank: number) {
  const p = startLaunch([...args, "--run-dir", runDir]);
  await p.waitFor(at, ms);
  Deno.kill(await executorPid(runDir, rank), "SIGKILL");
  return await p.finish();
}

/**
 * `--set` flags that shorten configs/local.yaml for a test: `steps` steps of 8 sequences of at most 256 tokens, a
 * checkpoint every `checkpointInterval` steps, deterministic plans, and a profile path where none is (`TMP/no-profile.json`,
 * so the config's inline cost constants are used); then `extra` (`KEY=VALUE`).
 */
export function shortRun(tmp: string, steps: number, checkpointInterval: number, extra: string[] = []): string[] {
  return [
    `profile.path=${tmp}/no-profile.json`,
    `training.steps=${steps}`,
    `training.checkpoint_interval=${checkpointInterval}`,
    "training.global_batch=8",
    "model.max_seq=256",
    "planner.deterministic=true",
    ...extra,
  ].flatMap((s) => ["--set", s]);
}

/** Runs `deno run -A orchestrator/cli/SCRIPT.ts ARGS` in the repository root to completion; `ms`: how long it took. */
export async function runCli(
  script: string,
  args: string[],
  env: Record<string, string> = {},
): Promise<{ code: number; out: string; err: string; ms: number }> {
  const t0 = performance.now();
  const r = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", `${REPO_ROOT}/orchestrator/cli/${script}.ts`, ...args],
    cwd: REPO_ROOT,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1", ...env },
  }).output();
  const d = new TextDecoder();
  return { code: r.code, out: d.decode(r.stdout), err: d.decode(r.stderr), ms: performance.now() - t0 };
}

/** Runs `deno task nodes ARGS` to completion. */
export function nodesCli(args: string[]): Promise<{ code: number; out: string; err: string; ms: number }> {
  return runCli("nodes", args);
}

/** The run's ledger records. */
export async function ledger(runDir: string): Promise<LedgerRecord[]> {
  const text = await Deno.readTextFile(`${runDir}/ledger.jsonl`);
  return text.split("\n").filter((l) => l.trim()).map((l) => JSON.parse(l));
}

/** Manifest of a checkpoint step of a run. */
export async function manifestOf(runDir: string, step: number): Promise<CheckpointManifest> {
  return JSON.parse(
    await Deno.readTextFile(`${runDir}/checkpoints/step-${String(step).padStart(8, "0")}/manifest.json`),
  );
}

/** Pid of a rank's executor, from its log (the latest start); the log name depends on the node. */
export async function executorPid(runDir: string, rank: number): Promise<number> {
  let pid = 0;
  for await (const d of Deno.readDir(`${runDir}/logs`)) {
    const text = await Deno.readTextFile(`${runDir}/logs/${d.name}/executor-${rank}.log`).catch(() => "");
    for (const m of text.matchAll(/^--- \S+ rank \d+ device \d+ kind \S+ pid (\d+)$/gm)) pid = Number(m[1]);
  }
  if (!pid) throw new Error(`no executor log of rank ${rank} in ${runDir}/logs`);
  return pid;
}

/** Every executor pid a run's logs name. */
export async function allExecutorPids(runDir: string): Promise<number[]> {
  const out: number[] = [];
  for await (const d of Deno.readDir(`${runDir}/logs`)) {
    for await (const f of Deno.readDir(`${runDir}/logs/${d.name}`)) {
      const text = await Deno.readTextFile(`${runDir}/logs/${d.name}/${f.name}`);
      for (const m of text.matchAll(/ pid (\d+)$/gm)) out.push(Number(m[1]));
    }
  }
  return out;
}

/** Waits until none of `pids` runs; returns those still alive after `ms`. */
export async function leftAlive(pids: number[], ms: number): Promise<number[]> {
  await eventually(() => pids.every((p) => !isAlive(p)), ms);
  return pids.filter(isAlive);
}

/** Repository root (the working directory of launches). */
export { REPO_ROOT };

/** Kills every sshd of a host (the listener and the sessions it forked), as when the machine drops off. */
export async function killSshd(th: TestHosts, h: TestHost): Promise<void> {
  for (const pid of await th.pids(h)) {
    const comm = (await Deno.readTextFile(`/proc/${pid}/comm`).catch(() => "")).trim();
    if (comm === "sshd") {
      try {
        Deno.kill(pid, "SIGKILL");
      } catch { /* gone */ }
    }
  }
}
