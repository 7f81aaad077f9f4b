// Cost constants in their stored form (the YAML / profile keys) and conversions to the planner's form.

import type { CostConstants } from "./types.ts";

/** Cost constants as stored in `profile.constants` and in profile files (YAML keys). */
export interface StoredConstants {
  alpha1: number;
  alpha2: number;
  beta1: number;
  act_mb_per_token: number;
  act_mb_per_token_full?: number;
  params?: number;
  /** Parameter counts by context length, interpolated at the config's `model.max_seq` (configs only). */
  params_by_max_seq?: Record<string, number>;
  bandwidth_gbps: { intra: Record<string, number>; inter: Record<string, number> };
  device_speed?: Record<string, number>;
  /** Fixed ms per micro-batch (every rank), per group by degree (on top of beta1) and per step; absent: 0. */
  micro_batch_ms?: number;
  group_ms?: Record<string, number>;
  step_ms?: number;
}

/** Cost constants (planner form) from their stored form. */
export function storedToConstants(c: StoredConstants): CostConstants {
  const table = (t: Record<string, number>) => Object.fromEntries(Object.entries(t).map(([k, v]) => [Number(k), v]));
  return {
    alpha1: c.alpha1,
    alpha2: c.alpha2,
    beta1: c.beta1,
    actMbPerToken: c.act_mb_per_token,
    actMbPerTokenFull: c.act_mb_per_token_full,
    params: c.params,
    bandwidth: { intra: table(c.bandwidth_gbps.intra), inter: table(c.bandwidth_gbps.inter) },
    deviceSpeed: c.device_speed,
    ...(c.micro_batch_ms ? { microBatchMs: c.micro_batch_ms } : {}),
    ...(c.group_ms && Object.keys(c.group_ms).length ? { groupMs: table(c.group_ms) } : {}),
    ...(c.step_ms ? { stepMs: c.step_ms } : {}),
  };
}

/** Stored form of cost constants. */
export function constantsToStored(c: CostConstants): StoredConstants {
  const table = (t: Record<number, number>) => Object.fromEntries(Object.entries(t).map(([k, v]) => [String(k), v]));
  const out: StoredConstants = {
    alpha1: c.alpha1,
    alpha2: c.alpha2,
    beta1: c.beta1,
    act_mb_per_token: c.actMbPerToken,
    bandwidth_gbps: { intra: table(c.bandwidth.intra), inter: table(c.bandwidth.inter) },
  };
  if (c.actMbPerTokenFull !== undefined) out.act_mb_per_token_full = c.actMbPerTokenFull;
  if (c.params !== undefined) out.params = c.params;
  if (c.deviceSpeed) out.device_speed = c.deviceSpeed;
  if (c.microBatchMs) out.micro_batch_ms = c.microBatchMs;
  if (c.groupMs && Object.keys(c.groupMs).length) out.group_ms = table(c.groupMs);
  if (c.stepMs) out.step_ms = c.stepMs;
  return out;
}
