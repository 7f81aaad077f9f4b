// Fault injection for tests: an environment variable `RANK:MODE` (e.g. FLEXSP_STEP_FAULT="2:exit") makes that one
// rank fail at a known point, so tests provoke a failure mid-operation without sleeping and killing from outside.
// FLEXSP_PROFILE_FAULT (kernels/profiling.ts) and FLEXSP_STEP_FAULT (kernels/executor.ts) use it.

/**
 * The fault mode `variable` asks of `rank` (`error` unless it says `exit`), or undefined when none. `env` reads the
 * variable (default: the process environment; an in-process simulated executor reads its own spawn environment).
 */
export function injectedFault(
  variable: string,
  rank: number,
  env: (name: string) => string | undefined = (name) => Deno.env.get(name),
): "error" | "exit" | undefined {
  const spec = env(variable);
  if (!spec) return undefined;
  // RANK is a whole number; MODE all after the first colon (as kernels/torch/fault_injection.py reads it).
  const colon = spec.indexOf(":");
  const r = (colon < 0 ? spec : spec.slice(0, colon)).trim();
  const mode = colon < 0 ? "" : spec.slice(colon + 1);
  if (!/^-?\d+$/.test(r) || Number(r) !== rank) return undefined;
  return mode === "exit" ? "exit" : "error";
}
