// Write failures end a run with one message naming the path and the OS error, the last checkpoint and the resume
// command, never a stack trace: a ledger append cut short (a file-size limit), the TensorBoard directory unwritable, and a
// checkpoint on a full disk (a 8 MiB tmpfs in a private mount namespace, where the test may mount one). A ledger
// with a torn last line (a write cut short) is cut back to its whole lines when reopened, so the next record starts
// on a line of its own.

import { assert, assertEquals, assertIncludes } from "../assert.ts";
import { Ledger, type LedgerRecord, readLedger } from "../../orchestrator/ledger/ledger.ts";
import { launchCli, REPO_ROOT, shortRun } from "./launch_harness.ts";

Deno.test("a ledger with a torn last line is cut back to its whole lines when reopened", async () => {
  const dir = await Deno.makeTempDir({ prefix: "flexsp-ledger-torn-" });
  try {
    const whole = JSON.stringify({ step: 1, loss: 2 }) + "\n";
    await Deno.writeTextFile(`${dir}/ledger.jsonl`, whole + '{"step": 2, "lo');
    const ledger = await Ledger.open(dir);
    await ledger.append({ step: 2, loss: 1.5 } as unknown as LedgerRecord);
    ledger.close();
    const text = await Deno.readTextFile(`${dir}/ledger.jsonl`);
    assertEquals(text, whole + JSON.stringify({ step: 2, loss: 1.5 }) + "\n");
    assertEquals((await readLedger(`${dir}/ledger.jsonl`)).map((r) => r.step), [1, 2]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

function noStackTrace(err: string): void {
  assert(!/^\s+at /m.test(err) && !err.includes("Uncaught"), err);
}

/** Runs launch under a file-size limit of `kib` KiB (writes beyond it fail with EFBIG; SIGXFSZ ignored). */
async function launchWithFileLimit(args: string[], kib: number) {
  const o = await new Deno.Command("sh", {
    args: [
      "-c",
      `trap '' XFSZ; ulimit -f ${kib}; exec "$@"`,
      "sh",
      Deno.execPath(),
      "run",
      "-A",
      "orchestrator/cli/launch.ts",
      ...args,
    ],
    cwd: REPO_ROOT,
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).output();
  return { code: o.code, err: new TextDecoder().decode(o.stderr) };
}

Deno.test({
  name: "a ledger append that fails midway (file too large) and an unwritable TensorBoard directory: one message, " +
    "no torn line, the resume command, exit 2",
  sanitizeResources: false,
  fn: async () => {
    const tmp = await Deno.makeTempDir({ prefix: "flexsp-writefail-" });
    try {
      const run = `${tmp}/ledger`;
      const a = await launchWithFileLimit(["configs/local.yaml", ...shortRun(tmp, 12, 0), "--run-dir", run], 20);
      assertEquals(a.code, 2, a.err);
      assertIncludes(
        a.err,
        `error: cannot write ${run}/ledger.jsonl: EFBIG, File too large\n`,
        "there is no checkpoint yet. Resume with:",
        `--resume ${run}`,
      );
      noStackTrace(a.err);
      const text = await Deno.readTextFile(`${run}/ledger.jsonl`);
      assert(text.endsWith("\n"), "no torn last line");
      const steps = text.trim().split("\n").map((l) => JSON.parse(l).step);
      assertEquals(steps, steps.map((_, i) => i + 1));

      const tb = `${tmp}/tb`;
      await Deno.mkdir(tb);
      await Deno.writeTextFile(`${tb}/tensorboard`, "not a directory");
      const b = await launchCli(["configs/local.yaml", ...shortRun(tmp, 4, 2), "--run-dir", tb]);
      assertEquals(b.code, 2, b.err);
      assertIncludes(b.err, `error: cannot write ${tb}/tensorboard`, "Resume with:");
      noStackTrace(b.err);
    } finally {
      await Deno.remove(tmp, { recursive: true });
    }
  },
});

/** Whether this process may mount a tmpfs in a private mount namespace (root, or user namespaces). */
async function canMountTmpfs(): Promise<boolean> {
  const dir = await Deno.makeTempDir();
  try {
    const o = await new Deno.Command("unshare", {
      args: ["-m", "sh", "-c", `mount -t tmpfs -o size=1m tmpfs ${dir}`],
      stdout: "null",
      stderr: "null",
    }).output().catch(() => ({ success: false }));
    return o.success;
  } finally {
    await Deno.remove(dir);
  }
}

Deno.test({
  name: "a checkpoint on a full disk: the part's path and ENOSPC named, the last checkpoint kept, exit 2",
  ignore: !(await canMountTmpfs()),
  sanitizeResources: false,
  fn: async () => {
    const tmp = await Deno.makeTempDir({ prefix: "flexsp-diskfull-" });
    try {
      await Deno.mkdir(`${tmp}/disk`);
      const run = `${tmp}/disk/run`;
      // One checkpoint of the default is ~6 MiB: the second one does not fit in 8 MiB.
      const launch = [Deno.execPath(), "run", "-A", "orchestrator/cli/launch.ts", "configs/local.yaml"]
        .concat(shortRun(tmp, 8, 2), ["--run-dir", run]);
      const script = `mount -t tmpfs -o size=8m tmpfs "${tmp}/disk" && "$@"; code=$?; ` +
        `tail -c 1 "${run}/ledger.jsonl" | od -An -c > "${tmp}/ledger-end"; exit $code`;
      const o = await new Deno.Command("unshare", {
        args: ["-m", "sh", "-c", script, "sh", ...launch],
        cwd: REPO_ROOT,
        stdout: "piped",
        stderr: "piped",
        env: { NO_COLOR: "1" },
      }).output();
      const err = new TextDecoder().decode(o.stderr);
      assertEquals(o.code, 2, err);
      assertIncludes(
        err,
        `error: cannot write ${run}/checkpoints/step-00000004/rank-`,
        ".ckpt: ENOSPC, No space left on device\n",
        "the last checkpoint is step 2. Resume with:",
      );
      noStackTrace(err);
      assertEquals((await Deno.readTextFile(`${tmp}/ledger-end`)).trim(), "\\n", "the ledger ends with a whole line");
    } finally {
      await Deno.remove(tmp, { recursive: true });
    }
  },
});
