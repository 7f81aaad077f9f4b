// `deno task profile --check RUN_DIR` on ledgers this test writes in launch's format: the error distribution, a
// drifting rank and node named, a rank slower than its peers, and damaged ledgers named by line and field.

import { assert, assertClose, assertEquals, assertIncludes } from "../assert.ts";
import { checkLedger } from "../../orchestrator/profile/ledger_check.ts";
import { type LedgerEntry, readLedger } from "../../orchestrator/ledger/ledger.ts";
import { cli, noStackTrace, writeLocalConfig } from "./fixtures.ts";

/** A ledger of `steps` steps on 4 ranks (one node): 4 degree-1 groups per step, or one degree-2 pair and two singles. */
function ledger(steps: number, slowdown: (step: number, rank: number) => number, err = 0.05): LedgerEntry[] {
  return Array.from({ length: steps }, (_, step) => {
    const mixed = step % 2 === 1;
    const groups = (mixed ? [[0, 1], [2], [3]] : [[0], [1], [2], [3]]).map((ranks, i) => {
      const predictedMs = 100 + 10 * i;
      const measuredMs = predictedMs * (1 + err * (i % 2 ? 1 : -1)) * Math.max(...ranks.map((r) => slowdown(step, r)));
      return { degree: ranks.length, ranks, sequences: [i], predictedMs, measuredMs };
    });
    const predictedMs = Math.max(...groups.map((g) => g.predictedMs));
    const measuredMs = Math.max(...groups.map((g) => g.measuredMs)) + 3;
    return {
      step,
      loss: 5 - step * 0.01,
      tokens: 1000,
      predictedMs,
      measuredMs,
      plan: { microBatches: [{ predictedMs, groups }] },
    };
  });
}

async function writeRun(entries: LedgerEntry[], extra = ""): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "fxledger-" });
  await Deno.writeTextFile(`${dir}/ledger.jsonl`, entries.map((e) => JSON.stringify(e)).join("\n") + "\n" + extra);
  return dir;
}

Deno.test("ledger check: error distribution per step, group and degree", () => {
  const c = checkLedger(ledger(12, () => 1));
  assertEquals(c.steps, 12);
  assertEquals(c.groups, 12 * 4 - 6);
  assertClose(c.group.medianAbs, 0.05 / 1.05, 0.02);
  assertEquals(c.byDegree.map((d) => d.degree), [1, 2]);
  assert(c.step.maxAbs < 0.1, `step max ${c.step.maxAbs}`);
  assertEquals(c.histogram.reduce((s, h) => s + h.count, 0), 12);
  assertEquals(c.flags, []);
});

Deno.test("ledger check: a rank that gets slower is flagged as drift, with its node", () => {
  const nodeOf = [0, 0, 1, 1].map((node) => ({ node, host: `h${node}` }));
  const c = checkLedger(ledger(12, (step, rank) => (rank === 3 && step >= 6 ? 1.6 : 1)), { nodeOf });
  const text = c.flags.join("\n");
  assertIncludes(text, "drift: rank 3 (node 1, h1) got slower");
  assert(!/rank [012] /.test(text), text);
  // A whole node slowing down.
  const c2 = checkLedger(ledger(12, (step, rank) => (rank >= 2 && step >= 8 ? 1.5 : 1)), { nodeOf });
  assertIncludes(c2.flags.join("\n"), "every rank of node 1 (h1) got slower");
  // A rank slow from the start: not drift, but slower than its peers.
  const c3 = checkLedger(ledger(12, (_, rank) => (rank === 2 ? 1.5 : 1)));
  assertIncludes(c3.flags.join("\n"), "slow: rank 2 runs +");
});

Deno.test("profile --check RUN_DIR: the CLI report, drift named; damaged ledgers named by line", async () => {
  const dir = await writeRun(ledger(12, (step, rank) => (rank === 1 && step >= 6 ? 1.8 : 1)), '{"step": 12, "pred');
  const cfgDir = await Deno.makeTempDir({ prefix: "fxledger-cfg-" });
  try {
    const cfg = await writeLocalConfig(cfgDir, { nodes: [2, 2] });
    const r = await cli("profile", ["--check", dir, cfg]);
    assertEquals(r.code, 0, r.err);
    assertIncludes(
      r.out,
      "12 step(s)",
      "step time:  median |error|",
      "degree 2:",
      "step error histogram",
      "drift: rank 1 (node 0, localhost) got slower",
    );
    // The torn last line (a killed run) is skipped; the entries before it are read.
    assertEquals((await readLedger(`${dir}/ledger.jsonl`)).length, 12);

    await Deno.writeTextFile(
      `${dir}/ledger.jsonl`,
      JSON.stringify(ledger(1, () => 1)[0]) + "\n" + '{"step": 1, "predictedMs": "soon", "measuredMs": 3}\n{}\n',
    );
    const bad = await cli("profile", ["--check", dir]);
    assertEquals(bad.code, 1);
    assertIncludes(bad.err, `${dir}/ledger.jsonl:2: predictedMs: expected a number, got "soon"`);
    noStackTrace(bad.err);
    const missing = await cli("profile", ["--check", `${dir}/nope`]);
    assertEquals(missing.code, 1);
    assertIncludes(missing.err, "no ledger here");
  } finally {
    await Deno.remove(dir, { recursive: true });
    await Deno.remove(cfgDir, { recursive: true });
  }
});

Deno.test("ledger check: the micro-batch error compares the plans' micro-batches, without the step's fixed cost", () => {
  // Plans that predict 40 ms per step outside the micro-batches (step_ms): the whole step and its micro-batches
  // are each predicted exactly.
  const entries = ledger(6, () => 1, 0).map((e) => {
    const mbs = e.plan.microBatches.reduce((t, mb) => t + mb.predictedMs, 0);
    return { ...e, predictedMs: mbs + 40, measuredMs: mbs + 40, microBatchMs: mbs };
  });
  const c = checkLedger(entries);
  assertEquals(c.step.maxAbs, 0);
  assertEquals(c.microBatches!.maxAbs, 0);
});

Deno.test("ledger check: a machine 30% slower than profiled shows as the run's speed, not as error between plans", () => {
  const c = checkLedger(ledger(8, () => 1.3, 0).map((e) => ({ ...e, measuredMs: 1.3 * e.predictedMs })));
  assertClose(c.step.medianAbs, 1 - 1 / 1.3, 1e-6);
  assertClose(c.relative.speed, 1.3, 0.01);
  assert(c.relative.step.maxAbs < 0.01 && c.relative.group.maxAbs < 0.01, `relative ${JSON.stringify(c.relative)}`);
});
