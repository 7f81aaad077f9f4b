// The `observe:` section of a config (see orchestrator/config/cluster_schema.ts), read from the validated document.

import type { Config } from "../../config/types.ts";

/** Settings of the dashboard, MFU peaks and straggler and hang reports. */
export interface ObserveConfig {
  dashboard: boolean;
  listen: string;
  port: number;
  peakTflops: Record<string, number>;
  stragglerFactor: number;
  stragglerSteps: number;
  stragglerMinMs: number;
  hangFactor: number;
  hangMinMs: number;
}

/** The observe settings of a config (defaults where the document has none). */
export function observeConfig(config: Config): ObserveConfig {
  // deno-lint-ignore no-explicit-any
  const o = (config.document.observe ?? {}) as Record<string, any>;
  return {
    dashboard: o.dashboard ?? true,
    listen: o.listen ?? "127.0.0.1",
    port: o.port ?? 0,
    peakTflops: o.peak_tflops ?? {},
    stragglerFactor: o.straggler_factor ?? 2,
    stragglerSteps: o.straggler_steps ?? 3,
    stragglerMinMs: o.straggler_min_ms ?? 50,
    hangFactor: o.hang_factor ?? 10,
    hangMinMs: 1000 * (o.hang_min_s ?? 30),
  };
}
