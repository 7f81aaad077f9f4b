// The agent's per-node replies (agents/step_batch.ts): a node step's `step_done`s go up in one line once all have
// come, progress is coalesced, and a rank that exits (or errors) while awaited flushes what was collected first.

import { StepBatch } from "../../agents/step_batch.ts";
import type { AgentEvent, ExecutorEvent } from "../../core/protocol.ts";
import { assertEquals } from "../assert.ts";

const done = (rank: number, step: number): AgentEvent => ({
  type: "from_executor",
  rank,
  msg: { type: "step_done", rank, step, microBatches: [], ms: 1 },
});
const progress = (rank: number, step: number): AgentEvent => ({
  type: "from_executor",
  rank,
  msg: { type: "step_progress", rank, step, microBatch: 0, ms: 1 },
});
/** What went up, as [type, ranks of the line's executor events]. */
const shape = (sent: AgentEvent[]) =>
  sent.map((e) =>
    e.type === "from_executors"
      ? [e.type, e.msgs.map((m) => `${(m.msg as ExecutorEvent).type}:${m.rank}`)]
      : e.type === "from_executor"
      ? [e.type, [`${e.msg.type}:${e.rank}`]]
      : [e.type, []]
  );

Deno.test("step batch: one line once every rank is done, progress first; another step's answer passes", () => {
  const sent: AgentEvent[] = [];
  const b = new StepBatch((e) => sent.push(e), 10_000);
  b.start(5, [1, 2, 3]);
  b.offer(progress(1, 5));
  b.offer(done(1, 5));
  b.offer(done(2, 5));
  b.offer(done(0, 4));
  assertEquals(shape(sent), [["from_executor", ["step_done:0"]]]);
  b.offer(done(3, 5));
  assertEquals(shape(sent).slice(1), [["from_executors", [
    "step_progress:1",
    "step_done:1",
    "step_done:2",
    "step_done:3",
  ]]]);
  b.close();
});

Deno.test("step batch: a rank that exits while awaited flushes what was collected, then its exit", () => {
  const sent: AgentEvent[] = [];
  const b = new StepBatch((e) => sent.push(e), 10_000);
  b.start(7, [4, 5]);
  b.offer(done(4, 7));
  b.offer({ type: "executor_exit", rank: 5, code: 3, signal: null, logTail: "" });
  assertEquals(shape(sent), [["from_executor", ["step_done:4"]], ["executor_exit", []]]);
  b.offer(done(5, 7));
  assertEquals(shape(sent).length, 3, "after the batch ended, answers pass at once");
  b.close();
});
