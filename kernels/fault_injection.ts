// Fault injection for tests: an environment variable `RANK:MODE` (e.g. FLEXSP_STEP_FAULT="2:exit") makes that one
// rank fail at a known point, so tests provoke a failure mid-operation without sleeping and killing from outside.
// FLEXSP_PROFILE_FAULT (kernels/profiling.ts) and FLEXSP_STEP_FAULT (kernels/executor.ts) use it.

/** The fault mode `variable` asks of `rank` (`error` unless it says `exit`), or undefined when none. */
export function injectedFault(variable: string, rank: number): "error" | "exit" | undefined {
  const spec = Deno.env.get(variable);
  if (!spec) return undefined;
  const [r, mode] = spec.split(":");
  if (Number(r) !== rank) return undefined;
  return mode === "exit" ? "exit" : "error";
}
