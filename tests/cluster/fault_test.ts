// The root-cause policy of the executor pool (cluster/fault.ts): which fault launch, profile and nodes blame when
// several arrive for one failure, whatever order they arrive in. An echo is what the executor said (the `echo` field
// of its `error` event, carried on the fault), never what its message reads like.

import { causePending, type Fault, isEcho, rootCause } from "../../orchestrator/cluster/fault.ts";
import type { NodeLaunch } from "../../orchestrator/cluster/cluster_session.ts";
import { assertEquals, assertThrows } from "../assert.ts";

const node = (i: number) => ({ name: `node ${i} (h${i})` }) as unknown as NodeLaunch;
const n0 = node(0);
const n1 = node(1);

function fault(kind: Fault["kind"], n: NodeLaunch, rank: number | undefined, detail: string, echo?: boolean): Fault {
  return { kind, node: n, rank, reason: detail, detail, atMs: 0, ...(echo !== undefined ? { echo } : {}) };
}

const echo0 = fault("executor_error", n0, 0, "data plane: rank 1 disconnected", true);
const echo2 = fault("executor_error", n1, 2, "step 4: aborted by rank 1: rank 1 failed: boom", true);
const crash1 = fault("executor_exit", n0, 1, "was killed by signal SIGKILL");
const error1 = fault("executor_error", n0, 1, "injected fault (FLEXSP_PROFILE_FAULT) at 2x64 tokens", false);
/** An executor's own error whose text reads like an echo: the field decides, not the words. */
const ownAborted = fault("executor_error", n1, 3, "all-reduce aborted: data plane buffer disconnected", false);
/** An error from an executor that predates the `echo` field: not an echo. */
const older = fault("executor_error", n0, 2, "step 4: rank 2 disconnected");
const exitAfterError1 = fault("executor_exit", n0, 1, "exited with code 0");
const lost1 = fault("node_lost", n1, undefined, "the agent was killed by signal KILL");
const timeout3 = fault("timeout", n1, 3, "within 5 s");

function everyOrder<T>(xs: T[]): T[][] {
  if (xs.length <= 1) return [xs];
  return xs.flatMap((x, i) => everyOrder([...xs.slice(0, i), ...xs.slice(i + 1)]).map((rest) => [x, ...rest]));
}

Deno.test("root cause: a crashed executor, not the peers that noticed it first, in any order of arrival", () => {
  for (const order of everyOrder([echo0, echo2, crash1])) assertEquals(rootCause(order), crash1);
});

Deno.test("root cause: an executor's own error, not its exit after it nor the peers' echoes", () => {
  for (const order of everyOrder([echo0, error1, exitAfterError1, echo2])) assertEquals(rootCause(order), error1);
});

Deno.test("root cause: a lost node before everything its loss caused", () => {
  for (const order of everyOrder([echo0, crash1, lost1, timeout3])) assertEquals(rootCause(order), lost1);
});

Deno.test("root cause: a timeout before echoes; only echoes: the first; no faults: an error", async () => {
  for (const order of everyOrder([echo0, timeout3, echo2])) assertEquals(rootCause(order), timeout3);
  assertEquals(rootCause([echo2, echo0]), echo2);
  await assertThrows(() => rootCause([]), "no faults");
});

Deno.test("echoes: the executor's echo field decides; an executor error without it, or any other fault, is not one", () => {
  assertEquals(
    [echo0, echo2, error1, ownAborted, older, crash1, lost1, timeout3].map(isEcho),
    [true, true, false, false, false, false, false, false],
  );
});

Deno.test("root cause: an error whose message says aborted but with echo false is the cause, not an echo", () => {
  for (const order of everyOrder([echo0, ownAborted, echo2])) assertEquals(rootCause(order), ownAborted);
  for (const order of everyOrder([echo0, older, timeout3])) assertEquals(rootCause(order), older);
  assertEquals([[ownAborted], [older], [echo0, ownAborted]].map(causePending), [false, false, false]);
});

Deno.test("cause pending: only echoes wait for the node loss behind them; a loss, crash or own error does not", () => {
  assertEquals(
    [[echo0], [echo2, echo0], [echo0, lost1], [echo0, crash1], [echo0, error1], [timeout3], []].map(causePending),
    [true, true, false, false, false, false, false],
  );
});
