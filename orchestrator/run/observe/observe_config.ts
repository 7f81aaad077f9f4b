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

/** The observe settings of a config (the schema has filled in every default: see cluster_schema.ts). */
export function observeConfig(config: Config): ObserveConfig {
  // deno-lint-ignore no-explicit-any
  const o = config.document.observe as Record<string, any>;
  return {
    dashboard: o.dashboard,
    listen: o.listen,
    port: o.port,
    peakTflops: o.peak_tflops,
    stragglerFactor: o.straggler_factor,
    stragglerSteps: o.straggler_steps,
    stragglerMinMs: o.straggler_min_ms,
    hangFactor: o.hang_factor,
    hangMinMs: 1000 * o.hang_min_s,
  };
}
