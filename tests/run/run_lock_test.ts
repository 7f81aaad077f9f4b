// The run directory's lock (orchestrator/run/run_lock.ts): a live holder refuses a second taker with its PID and
// host; the lock of a dead process, or of a reused PID (same number, later start), is taken over with a message;
// and the case as real processes: while a run trains, `launch --resume RUN_DIR --force` on the same
// directory is refused naming the training orchestrator's PID, and the first run ends with its ledger intact.

import { assert, assertEquals, assertIncludes, assertThrows } from "../assert.ts";
import { acquireRunLock, LOCK_FILE, processStartTicks } from "../../orchestrator/run/run_lock.ts";
import { launchCli, ledger, shortRun, startLaunch } from "./launch_harness.ts";

Deno.test("run lock: refused while held (PID and host named), released, stale locks taken over", async () => {
  const dir = await Deno.makeTempDir({ prefix: "flexsp-lock-" });
  try {
    const logs: string[] = [];
    const lock = acquireRunLock(dir, (l) => logs.push(l));
    const msg = await assertThrows(() => acquireRunLock(dir, () => {}));
    assertIncludes(msg, `${dir} is in use by process ${Deno.pid} on host ${Deno.hostname()}`, `kill -INT ${Deno.pid}`);
    lock.release();
    assertEquals(await Deno.stat(`${dir}/${LOCK_FILE}`).then(() => true, () => false), false);

    // A dead process's lock.
    const child = new Deno.Command("true").spawn();
    await child.status;
    const dead = { pid: child.pid, host: Deno.hostname(), since: "2026-01-01T00:00:00.000Z" };
    await Deno.writeTextFile(`${dir}/${LOCK_FILE}`, JSON.stringify(dead));
    using taken = acquireRunLock(dir, (l) => logs.push(l));
    assertEquals(logs, [
      `taking over the stale lock of ${dir}: process ${child.pid} on ${Deno.hostname()} ` +
      `(since 2026-01-01T00:00:00.000Z) is gone`,
    ]);
    assertEquals(JSON.parse(await Deno.readTextFile(taken.path)).pid, Deno.pid);
    taken.release();

    // A reused PID: this process's number, another start time.
    const reused = { pid: Deno.pid, host: Deno.hostname(), startTicks: processStartTicks(Deno.pid)! - 1, since: "x" };
    await Deno.writeTextFile(`${dir}/${LOCK_FILE}`, JSON.stringify(reused));
    acquireRunLock(dir, (l) => logs.push(l)).release();
    assertIncludes(logs[1], `process ${Deno.pid} on ${Deno.hostname()} (since x) is gone`);

    // Another host: refused (it cannot be checked from here), unless it is this Slurm job before its requeue.
    const remote = { pid: 4242, host: "node-b", since: "y", job: "77" };
    await Deno.writeTextFile(`${dir}/${LOCK_FILE}`, JSON.stringify(remote));
    assertIncludes(await assertThrows(() => acquireRunLock(dir, () => {})), "in use by process 4242 on host node-b");
    Deno.env.set("SLURM_JOB_ID", "77");
    try {
      acquireRunLock(dir, (l) => logs.push(l)).release();
    } finally {
      Deno.env.delete("SLURM_JOB_ID");
    }
    assertEquals(logs[2], "taking over the lock of Slurm job 77 before its requeue (process 4242 on node-b)");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test({
  name: "launch --resume --force of a directory a run trains in is refused with the holder's PID; the run completes",
  sanitizeResources: false,
  fn: async () => {
    const tmp = await Deno.makeTempDir({ prefix: "flexsp-lock-launch-" });
    try {
      const dir = `${tmp}/run`;
      const args = ["configs/local.yaml", ...shortRun(tmp, 8, 4)];
      const first = startLaunch([...args, "--run-dir", dir]);
      await first.waitFor("step 2/8", 90_000);
      const second = await launchCli([...args, "--resume", dir, "--force"]);
      assertEquals(second.code, 1, second.err);
      assertIncludes(second.err, `is in use by process ${first.child.pid} on host ${Deno.hostname()}`);
      const fresh = await launchCli([...args, "--run-dir", dir]);
      assertEquals(fresh.code, 1, fresh.err);
      assertIncludes(fresh.err, `is in use by process ${first.child.pid}`);
      const r = await first.finish();
      assertEquals(r.code, 0, r.err);
      assertEquals((await ledger(dir)).map((x) => x.step), [1, 2, 3, 4, 5, 6, 7, 8]);
      assert(!(await Deno.stat(`${dir}/${LOCK_FILE}`).then(() => true, () => false)), "lock released at the end");
    } finally {
      await Deno.remove(tmp, { recursive: true });
    }
  },
});
