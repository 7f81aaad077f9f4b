// Reading, validating and writing the profile `deno task profile` produces, and choosing the cost constants `plan`
// and `launch` use: the profile (when it exists and its fingerprint matches the cluster), else the config's inline
// constants, else a NoProfileError naming the command to run (the CLI, not this module, may offer to profile now).

import { constantsToStored, storedToConstants } from "./cost_constants.ts";
import { UserError } from "../errors.ts";
import type { Config, CostConstants } from "./types.ts";
import { costConstantsSpec } from "./cluster_schema.ts";
import { formatPath, SchemaError, type Spec, validate } from "./schema_spec.ts";
import { clusterKeyOf, compareClusterKeys, compareNodes, hashOf } from "./profile_fingerprint.ts";
import { writeAtomic, type WriteAtomicOptions } from "../../core/atomic_write.ts";
import {
  clusterKeySpec,
  type NodeFingerprint,
  PROFILE_SCHEMA_VERSION,
  type ProfileDoc,
  type StoredConstants,
} from "./profile_doc.ts";

export { PROFILE_SCHEMA_VERSION };

/** Where a config's profile lives: `profile.path`, else `profiles/<name>.json` beside the config file. */
export function profilePathOf(config: Config): string {
  if (config.profile.path) return config.profile.path;
  const dir = config.source.includes("/") ? config.source.slice(0, config.source.lastIndexOf("/") + 1) : "";
  return `${dir}profiles/${config.name}.json`;
}

export { constantsToStored, storedToConstants };

const nodeFingerprintSpec: Spec = {
  kind: "object",
  fields: {
    index: { spec: { kind: "int", min: 0 }, required: true },
    host: { spec: { kind: "string" }, required: true },
    hostname: { spec: { kind: "string" }, required: true },
    executorKind: { spec: { kind: "string" }, required: true },
  },
};

const rerun = (path: string) => `re-run \`deno task profile\` to measure it again (or delete ${path})`;

function need(doc: Record<string, unknown>, path: (string | number)[], spec: Spec, file: string): void {
  let v: unknown = doc;
  for (const k of path) v = (v as Record<string | number, unknown> | undefined)?.[k];
  validate(v, spec, path, () => `${file}:`);
}

/**
 * Validates a parsed profile document; throws a UserError naming the file and the field for the first problem
 * (wrong schema version, a missing or mistyped field, a bandwidth key that is not an SP degree).
 */
export function checkProfileDoc(value: unknown, file: string): ProfileDoc {
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    throw new UserError(`${file}: not a profile (expected a JSON object); ${rerun(file)}`);
  }
  const doc = value as Record<string, unknown>;
  if (doc.schema !== PROFILE_SCHEMA_VERSION) {
    const what = typeof doc.schema !== "number"
      ? `has no valid "schema" field (got ${JSON.stringify(doc.schema ?? null)})`
      : doc.schema < PROFILE_SCHEMA_VERSION
      ? `uses profile schema ${doc.schema}, older than this flexsp's ${PROFILE_SCHEMA_VERSION} (stale)`
      : `uses profile schema ${doc.schema}, newer than this flexsp's ${PROFILE_SCHEMA_VERSION}`;
    throw new UserError(`${file}: ${what}; ${rerun(file)}`);
  }
  try {
    need(doc, ["createdAt"], { kind: "string" }, file);
    const fp = doc.fingerprint as Record<string, unknown> | undefined;
    if (fp === null || typeof fp !== "object" || Array.isArray(fp)) {
      throw new SchemaError(
        `${file}: fingerprint: expected a mapping, got ${fp === undefined ? "nothing" : typeof fp}`,
      );
    }
    need(doc, ["fingerprint", "cluster"], clusterKeySpec, file);
    need(doc, ["fingerprint", "clusterHash"], { kind: "string" }, file);
    if (!Array.isArray(fp.nodes)) throw new SchemaError(`${file}: fingerprint.nodes: expected a list`);
    fp.nodes.forEach((n: unknown, i: number) => {
      if (n === null || typeof n !== "object" || Array.isArray(n)) {
        throw new SchemaError(`${file}: fingerprint.nodes[${i}]: expected a mapping`);
      }
      const r = n as Record<string, unknown>;
      // Only the fields the hardware check reads are checked (a projection: other keys may be added freely).
      validate(
        { index: r.index, host: r.host, hostname: r.hostname, executorKind: r.executorKind },
        nodeFingerprintSpec,
        ["fingerprint", "nodes", i],
        () => `${file}:`,
      );
    });
    need(doc, ["constants"], costConstantsSpec, file);
    for (const side of ["intra", "inter"] as const) {
      const t = (doc.constants as StoredConstants).bandwidth_gbps[side];
      for (const k of Object.keys(t)) {
        const d = Number(k);
        if (!Number.isInteger(d) || d < 2 || (d & (d - 1)) !== 0) {
          throw new SchemaError(
            `${file}: ${formatPath(["constants", "bandwidth_gbps", side, k])}: keys must be powers of two >= 2 ` +
              `(SP degrees), got "${k}"`,
          );
        }
      }
    }
    for (const section of ["compute", "memory", "network"]) {
      const v = doc[section];
      if (v === null || typeof v !== "object" || Array.isArray(v)) {
        throw new SchemaError(`${file}: ${section}: missing or not a mapping`);
      }
    }
  } catch (e) {
    if (e instanceof SchemaError) throw new UserError(`${e.message}; ${rerun(file)}`);
    throw e;
  }
  return doc as unknown as ProfileDoc;
}

/** Reads and validates a profile file. A missing file rethrows `Deno.errors.NotFound`. */
export async function readProfile(path: string): Promise<ProfileDoc> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) throw e;
    throw new UserError(`${path}: cannot read the profile (${(e as Error).message})`);
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (e) {
    throw new UserError(`${path}: not valid JSON (${(e as Error).message}); ${rerun(path)}`);
  }
  return checkProfileDoc(value, path);
}

/** Writes `doc` atomically: a temporary file in the same directory, fsync, rename. Creates the directory. */
export async function writeProfile(path: string, doc: ProfileDoc): Promise<void> {
  await writeAtomic(path, JSON.stringify(doc, null, 1) + "\n", userWrite(path));
}

/** Options for `writeAtomic` of a file the user named: creates the directory, fails with one UserError line. */
export function userWrite(path: string): WriteAtomicOptions {
  return { mkdir: true, error: (message) => new UserError(`cannot write ${path}: ${message}`) };
}

/** Options of {@link resolveProfile}. */
export interface ResolveOptions {
  /** Use a profile whose fingerprint does not match (with a warning). */
  force?: boolean;
  /** Where warnings go (default: stderr). */
  warn?: (line: string) => void;
}

/**
 * Neither a profile nor inline constants exist. The CLI may offer to profile now (cli/profile_offer.ts); library
 * code never asks.
 */
export class NoProfileError extends UserError {
  constructor(readonly config: Config, readonly path: string) {
    super(
      `${config.source}: no cost model: ${path} does not exist; run \`deno task profile ${config.source}\` ` +
        `to measure this cluster (or give profile.constants)`,
    );
  }
}

/** The chosen cost constants and where they came from. */
export interface ResolvedProfile {
  constants: CostConstants;
  source: "profile" | "inline";
  /** The profile file, when it was used. */
  path?: string;
  profile?: ProfileDoc;
}

/** Warnings about a profile that matches: edited constants, old age. */
function softWarnings(doc: ProfileDoc, path: string): string[] {
  const out: string[] = [];
  if (doc.constantsSha256 && doc.constantsSha256 !== hashOf(doc.constants)) {
    out.push(`${path}: the constants were edited by hand after profiling (they no longer match the measurements)`);
  }
  const age = (Date.now() - Date.parse(doc.createdAt)) / 86_400_000;
  if (age > 90) out.push(`${path}: measured ${Math.floor(age)} days ago; consider profiling again`);
  return out;
}

/**
 * The cost constants of a config: the profile at `profile.path` (or `profiles/<name>.json` beside the config) when
 * it exists, after checking that it was measured on this cluster and model; else the inline `profile.constants`;
 * else a NoProfileError naming `deno task profile` (never interactive: the CLI makes the offer).
 */
export async function resolveProfile(config: Config, opts: ResolveOptions = {}): Promise<ResolvedProfile> {
  const warn = opts.warn ?? ((l: string) => console.error(`warning: ${l}`));
  const path = profilePathOf(config);
  let doc: ProfileDoc | undefined;
  try {
    doc = await readProfile(path);
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
  if (doc) {
    const diffs = compareClusterKeys(doc.fingerprint.cluster, clusterKeyOf(config));
    if (diffs.length) {
      const msg = `${path} was measured on another cluster or model than ${config.source}:\n` +
        diffs.map((d) => `  ${d}`).join("\n");
      if (!opts.force) {
        throw new UserError(
          `${msg}\nre-run \`deno task profile ${config.source}\` to profile this cluster, or pass --force to use it anyway`,
        );
      }
      warn(`${msg}\n(used anyway because of --force)`);
    }
    for (const w of softWarnings(doc, path)) warn(w);
    return { constants: storedToConstants(doc.constants), source: "profile", path, profile: doc };
  }
  if (config.profile.constants) return { constants: config.profile.constants, source: "inline" };
  throw new NoProfileError(config, path);
}

/** The cost constants `plan` and `launch` use (see {@link resolveProfile}). */
export async function resolveCostConstants(config: Config, opts: ResolveOptions = {}): Promise<CostConstants> {
  return (await resolveProfile(config, opts)).constants;
}

/**
 * For `launch`, once the agents reported their inventories: refuses (UserError) a profile measured on other
 * hardware unless `force`; software differences are warnings. Returns the warnings.
 */
export function checkProfileHardware(
  resolved: ResolvedProfile,
  nodes: NodeFingerprint[],
  opts: { force?: boolean } = {},
): string[] {
  if (resolved.source !== "profile" || !resolved.profile) return [];
  const { problems, warnings } = compareNodes(resolved.profile.fingerprint.nodes, nodes);
  if (problems.length && !opts.force) {
    throw new UserError(
      `${resolved.path} was measured on other hardware:\n${problems.map((p) => `  ${p}`).join("\n")}\n` +
        `re-run \`deno task profile\` on this cluster, or pass --force to use it anyway`,
    );
  }
  return [...problems.map((p) => `${p} (used anyway because of --force)`), ...warnings];
}
