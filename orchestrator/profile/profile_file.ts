// Reading the profile a config points to (written by `deno task profile`): the fitted cost constants.

import { UserError } from "../errors.ts";
import type { Config, CostConstants } from "../config/types.ts";
import { costConstantsSpec } from "../config/cluster_schema.ts";
import { SchemaError, validate } from "../config/schema_spec.ts";

/** Current profile schema version. */
export const PROFILE_SCHEMA_VERSION = 1;

/** Reads a profile file's fitted constants (keys as in the YAML `profile.constants`); errors name the field. */
export async function readProfileConstants(path: string): Promise<CostConstants> {
  let doc: Record<string, unknown>;
  try {
    doc = JSON.parse(await Deno.readTextFile(path));
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) throw e;
    throw new UserError(`${path}: not a valid profile (${(e as Error).message}); re-run deno task profile`);
  }
  if (doc.schema !== PROFILE_SCHEMA_VERSION) {
    throw new UserError(
      `${path}: profile schema ${doc.schema ?? "(none)"} is not ${PROFILE_SCHEMA_VERSION}; re-run deno task profile`,
    );
  }
  try {
    validate(doc.constants, costConstantsSpec, ["constants"], () => `${path}:`);
  } catch (e) {
    if (e instanceof SchemaError) throw new UserError(e.message);
    throw e;
  }
  const c = doc.constants as Record<string, never>;
  const table = (t: Record<string, number>) => Object.fromEntries(Object.entries(t).map(([k, v]) => [Number(k), v]));
  const bw = c.bandwidth_gbps as { intra: Record<string, number>; inter: Record<string, number> };
  return {
    alpha1: c.alpha1,
    alpha2: c.alpha2,
    beta1: c.beta1,
    actMbPerToken: c.act_mb_per_token,
    actMbPerTokenFull: c.act_mb_per_token_full,
    params: c.params,
    bandwidth: { intra: table(bw.intra), inter: table(bw.inter) },
    deviceSpeed: c.device_speed,
  };
}

/** The cost constants of a config: inline constants win; else the profile file; else a clear error. */
export async function resolveCostConstants(config: Config): Promise<CostConstants> {
  if (config.profile.constants) return config.profile.constants;
  if (config.profile.path) {
    try {
      return await readProfileConstants(config.profile.path);
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
    }
  }
  throw new UserError(
    `${config.source}: no cost model: ${config.profile.path ? `${config.profile.path} does not exist; ` : ""}` +
      `run \`deno task profile ${config.source}\` or give profile.constants`,
  );
}
