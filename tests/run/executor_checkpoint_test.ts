// The executor side of checkpoints as launch uses it: `save` creates missing directories (parts on SSH nodes go to
// a fresh directory), and `load` with the manifest's sha256 refuses a damaged part without losing the executor.

import { isType, startRun, stopAll } from "../kernels/executor_harness.ts";
import { assert, assertEquals, assertIncludes } from "../assert.ts";

const TINY = { layers: 1, hidden: 16, heads: 2, vocab: 32, maxSeq: 16 };

Deno.test("executor checkpoints: save into a new directory; load checks the sha256 and refuses a damaged part", async () => {
  const dir = await Deno.makeTempDir();
  const procs = await startRun(1, TINY);
  const [x] = procs;
  try {
    const path = `${dir}/checkpoints/step-00000001/rank-0.ckpt`;
    await x.send({ type: "save", path });
    const saved = await x.next(isType("saved"), 30_000, "saved");
    assertEquals(saved.path, path);
    await x.send({ type: "load", path, sha256: saved.sha256 });
    await x.next(isType("loaded"), 30_000, "loaded");
    const bytes = await Deno.readFile(path);
    bytes[bytes.length - 1] ^= 1;
    await Deno.writeFile(path, bytes);
    await x.send({ type: "load", path, sha256: saved.sha256 });
    const err = await x.next(isType("error"), 30_000, "error");
    assertEquals(err.fatal, false);
    assertIncludes(err.message, `load: ${path}: sha256`);
    // Still usable: a good part loads.
    bytes[bytes.length - 1] ^= 1;
    await Deno.writeFile(path, bytes);
    await x.send({ type: "load", path, sha256: saved.sha256 });
    await x.next(isType("loaded"), 30_000, "loaded");
    assert(!x.exited, "the executor survived the refusal");
  } finally {
    await stopAll(procs);
    await Deno.remove(dir, { recursive: true });
  }
});
