// The agent's replies to a node step, collected per node: the `step_done`s of the node's ranks go up as one
// `from_executors` line once all have arrived (the orchestrator reads one line per node, not one per rank), and
// `step_progress` events are coalesced into one line at most every `progressMs`. An executor that exits or
// reports an error while the batch waits for it ends the batch at once: what was collected goes up first, then
// the failure, so the orchestrator sees every answer that was given before it.

import type { AgentEvent, ExecutorEvent } from "../core/protocol.ts";

type Item = { rank: number; msg: ExecutorEvent };

/** Collects one node step's replies (see the header). */
export class StepBatch {
  #step = -1;
  #pending = new Set<number>();
  #done: Item[] = [];
  #progress: Item[] = [];
  #timer: ReturnType<typeof setTimeout> | undefined;

  constructor(readonly send: (ev: AgentEvent) => void, readonly progressMs = 50) {}

  /** A node step begins: the `step_done`s of `ranks` for `step` are held until all have come. */
  start(step: number, ranks: number[]): void {
    this.#flush();
    this.#step = step;
    this.#pending = new Set(ranks);
  }

  /** Passes an agent event on, holding or coalescing what belongs to a batch. */
  offer(ev: AgentEvent): void {
    if (ev.type === "from_executor") {
      const m = ev.msg;
      if (m.type === "step_progress") {
        this.#progress.push({ rank: ev.rank, msg: m });
        this.#timer ??= setTimeout(() => this.#send(this.#take(this.#progress)), this.progressMs);
        return;
      }
      if (m.type === "step_done" && m.step === this.#step && this.#pending.delete(ev.rank)) {
        this.#done.push({ rank: ev.rank, msg: m });
        if (this.#pending.size === 0) this.#flush();
        return;
      }
      if (m.type === "error" && this.#pending.has(ev.rank)) this.#end();
    } else if (ev.type === "executor_exit" && this.#pending.has(ev.rank)) {
      this.#end();
    }
    this.send(ev);
  }

  /** Sends what was collected and stops holding anything for the current step. */
  #end(): void {
    this.#pending.clear();
    this.#step = -1;
    this.#flush();
  }

  #flush(): void {
    this.#send([...this.#take(this.#progress), ...this.#take(this.#done)]);
  }

  #take(items: Item[]): Item[] {
    if (items === this.#progress) {
      clearTimeout(this.#timer);
      this.#timer = undefined;
    }
    return items.splice(0);
  }

  #send(msgs: Item[]): void {
    if (msgs.length === 1) this.send({ type: "from_executor", ...msgs[0] });
    else if (msgs.length) this.send({ type: "from_executors", msgs });
  }

  /** Sends anything held (at shutdown). */
  close(): void {
    this.#end();
  }
}
