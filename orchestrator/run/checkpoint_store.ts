// Checkpoints of a run: `<root>/step-NNNNNNNN/` holds the executors' state, `orchestrator.json` (step, sampler
// position and RNG state, config / dataset / profile hashes, rank layout) and `manifest.json` (every part's path,
// size and sha256), written last. The executors' state is one of two formats (the manifest's `format`):
//   - "flat" (the TypeScript executors): one whole-state part per rank (`rank-R.ckpt`, written atomically by the
//     executor; on SSH nodes the part lives in the node's run directory);
//   - "dcp" (the torch executors): a sharded torch.distributed.checkpoint directory `dcp/` that the ranks write
//     together, each only what it owns (written as `dcp.tmp/`, renamed when whole); the manifest lists each of its
//     files as a part (`dcp/__R_0.distcp`, `dcp/.metadata`, `dcp/flexsp.json`) with the rank that wrote it. `<root>/latest` names the newest checkpoint and is replaced (temporary file, fsync, rename)
// only after the manifest and the directory are durable, so a checkpoint is either complete or ignored.
//
// Loading walks `latest`, then every other checkpoint with a manifest, newest first; the first one whose manifest,
// orchestrator part and locally readable rank parts match their checksums is used (executors check the sha256 of
// their own part again when they load it, which covers parts on remote nodes).

import { fileSha256, sha256Hex } from "../../core/hash.ts";
import { fsyncDir, writeAtomic } from "../../core/atomic_write.ts";
import type { SamplerState } from "../data/sampler.ts";
import { writing } from "../errors.ts";
import { isTorchKind } from "../../core/protocol.ts";

/** The orchestrator's own part of a checkpoint. */
export interface OrchestratorState {
  version: 1;
  runId: string;
  /** Last step whose update is in the checkpoint. */
  step: number;
  /** Sampler position (and RNG state) after that step's batch. */
  sampler: SamplerState;
  fingerprintHash: string;
  datasetHash: string;
  profileHash: string;
  worldSize: number;
  ranks: { rank: number; node: number; host: string; device: number; kind: string }[];
  savedAt: string;
}

/** One rank's part in a manifest. */
export interface ManifestPart {
  rank: number;
  node: number;
  host: string;
  transport: "local" | "ssh";
  /**
   * Path on its node. A local part inside its checkpoint directory is written relative to it (`rank-R.ckpt`), so a
   * moved or copied run directory reads its own parts; `verify` returns manifests with such paths made absolute.
   */
  path: string;
  sha256: string;
  bytes: number;
}

/** The executors' state format of a checkpoint (see the file header). */
export type CheckpointFormat = "flat" | "dcp";

/** The directory of a "dcp" checkpoint's files, inside the checkpoint directory. */
export const DCP_DIR = "dcp";

/** The format an executor kind writes and reads: the torch executors' sharded DCP, else the flat one. */
export function formatOf(kind: string): CheckpointFormat {
  return isTorchKind(kind) ? "dcp" : "flat";
}

/** `manifest.json` of a checkpoint. */
export interface CheckpointManifest {
  version: 1;
  step: number;
  /** Absent in manifests written before sharded checkpoints: "flat". */
  format?: CheckpointFormat;
  complete: true;
  createdAt: string;
  orchestrator: { file: string; sha256: string; bytes: number };
  parts: ManifestPart[];
}

/** A checkpoint that passed verification. */
export interface VerifiedCheckpoint {
  name: string;
  dir: string;
  manifest: CheckpointManifest;
  state: OrchestratorState;
}

/** Directory name of step `step`'s checkpoint. */
export function checkpointName(step: number): string {
  return `step-${String(step).padStart(8, "0")}`;
}

/** The checkpoints of one run. */
export class CheckpointStore {
  /** `runDir`: the run directory, where parts may lie too (besides `root`, which may be outside it). */
  constructor(readonly root: string, readonly runDir?: string) {}

  /** Local directory of a checkpoint (created). */
  async prepare(step: number): Promise<string> {
    const dir = `${this.root}/${checkpointName(step)}`;
    await writing(dir, () => Deno.mkdir(dir, { recursive: true }));
    return dir;
  }

  /** Writes the orchestrator part and the manifest, then points `latest` at the checkpoint. */
  async commit(state: OrchestratorState, parts: ManifestPart[], format: CheckpointFormat = "flat"): Promise<string> {
    const name = checkpointName(state.step);
    const dir = `${this.root}/${name}`;
    await writing(dir, () => Deno.mkdir(dir, { recursive: true }));
    const orchText = JSON.stringify(state, null, 2) + "\n";
    const orchBytes = new TextEncoder().encode(orchText);
    await writing(`${dir}/orchestrator.json`, () => writeAtomic(`${dir}/orchestrator.json`, orchText));
    const manifest: CheckpointManifest = {
      version: 1,
      step: state.step,
      ...(format === "dcp" ? { format } : {}),
      complete: true,
      createdAt: new Date().toISOString(),
      orchestrator: { file: "orchestrator.json", sha256: sha256Hex(orchBytes), bytes: orchBytes.length },
      parts: parts.map((p) =>
        p.transport === "local" && p.path.startsWith(`${dir}/`) ? { ...p, path: p.path.slice(dir.length + 1) } : p
      ),
    };
    const text = JSON.stringify(manifest, null, 2) + "\n";
    await writing(`${dir}/manifest.json`, () => writeAtomic(`${dir}/manifest.json`, text));
    await fsyncDir(dir);
    await writing(`${this.root}/latest`, () => writeAtomic(`${this.root}/latest`, name + "\n"));
    await fsyncDir(this.root);
    return dir;
  }

  /** Names of checkpoints to try, best first: `latest`, then every directory with a manifest, newest first. */
  async candidates(): Promise<string[]> {
    const names: string[] = [];
    try {
      for await (const e of Deno.readDir(this.root)) {
        if (e.isDirectory && /^step-\d{8}$/.test(e.name)) names.push(e.name);
      }
    } catch (e) {
      if (e instanceof Deno.errors.NotFound) return [];
      throw e;
    }
    names.sort().reverse();
    const latest = (await Deno.readTextFile(`${this.root}/latest`).catch(() => "")).trim();
    const out = latest && names.includes(latest) ? [latest] : [];
    for (const n of names) if (n !== latest) out.push(n);
    return out;
  }

  /**
   * Verifies a checkpoint: manifest, orchestrator part, and each rank part that `readable` says this machine can
   * read. Returns the checkpoint, or the reason it cannot be used.
   */
  async verify(
    name: string,
    readable: (p: ManifestPart) => boolean,
  ): Promise<{ ok: true; checkpoint: VerifiedCheckpoint } | { ok: false; reason: string }> {
    const dir = `${this.root}/${name}`;
    let manifest: CheckpointManifest;
    try {
      manifest = JSON.parse(await Deno.readTextFile(`${dir}/manifest.json`));
    } catch (e) {
      return {
        ok: false,
        reason: e instanceof Deno.errors.NotFound
          ? "no manifest (the checkpoint was never completed)"
          : `manifest unreadable (${(e as Error).message})`,
      };
    }
    if (manifest.version !== 1 || manifest.complete !== true || !Array.isArray(manifest.parts)) {
      return { ok: false, reason: "manifest is not a complete version-1 manifest" };
    }
    let orchBytes: Uint8Array;
    try {
      orchBytes = await Deno.readFile(`${dir}/${manifest.orchestrator.file}`);
    } catch (e) {
      return { ok: false, reason: `orchestrator part unreadable (${(e as Error).message})` };
    }
    if (sha256Hex(orchBytes) !== manifest.orchestrator.sha256) {
      return { ok: false, reason: "orchestrator.json does not match its sha256 in the manifest" };
    }
    const state = JSON.parse(new TextDecoder().decode(orchBytes)) as OrchestratorState;
    if (state.step !== manifest.step) return { ok: false, reason: "orchestrator part and manifest disagree on step" };
    const within: string[] = [];
    for (const d of [this.root, this.runDir]) {
      if (d !== undefined) within.push(`${d}/`, `${await Deno.realPath(d).catch(() => d)}/`);
    }
    for (const p of manifest.parts) {
      if (p.transport !== "local") continue;
      if (!p.path.startsWith("/")) p.path = `${dir}/${p.path}`;
      else if (!within.some((w) => p.path.startsWith(w))) {
        // An older manifest's absolute path: the run directory was moved or copied from there.
        return {
          ok: false,
          reason:
            `rank ${p.rank} part ${p.path} lies outside ${
              this.runDir ?? this.root
            } (the run directory was moved or copied ` +
            `from elsewhere; its checkpoints name parts there)`,
        };
      }
    }
    for (const p of manifest.parts) {
      if (!readable(p)) continue;
      let sha: string;
      try {
        const st = await Deno.stat(p.path);
        if (st.size !== p.bytes) {
          return { ok: false, reason: `rank ${p.rank} part ${p.path} has ${st.size} bytes, manifest says ${p.bytes}` };
        }
        sha = await fileSha256(p.path);
      } catch (e) {
        return { ok: false, reason: `rank ${p.rank} part ${p.path} unreadable (${(e as Error).message})` };
      }
      if (sha !== p.sha256) return { ok: false, reason: `rank ${p.rank} part ${p.path} does not match its sha256` };
    }
    return { ok: true, checkpoint: { name, dir, manifest, state } };
  }

  /**
   * Deletes local checkpoints beyond the newest `keep` complete ones, and unfinished ones older than the newest
   * complete one (parts on SSH nodes stay where they are).
   */
  async prune(keep: number): Promise<string[]> {
    const names = (await this.candidates()).sort().reverse();
    const complete: string[] = [];
    const removed: string[] = [];
    for (const n of names) {
      const hasManifest = await Deno.stat(`${this.root}/${n}/manifest.json`).then(() => true, () => false);
      if (hasManifest) complete.push(n);
      const old = hasManifest ? complete.length > keep : complete.length > 0;
      if (old) {
        await Deno.remove(`${this.root}/${n}`, { recursive: true }).catch(() => {});
        removed.push(n);
      }
    }
    return removed;
  }
}
