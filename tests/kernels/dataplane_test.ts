// The TCP data plane on 127.0.0.1: authenticated mesh, all-to-all with variable chunk sizes, bit-identical
// fixed-order all-reduce, barrier; and the failure cases (wrong secret, peer disconnect mid-collective, abort,
// timeout, out-of-step tags), each a clear error well before any default timeout.

import { DataPlaneError, isPeerEcho, Mesh, waitedRank } from "../../kernels/dataplane/mesh.ts";
import { Prng } from "../../kernels/model.ts";
import { assert, assertArrayClose, assertBitEqual, assertEquals, assertThrows } from "../assert.ts";

async function mesh(n: number, opts: { secrets?: string[]; opTimeoutMs?: number; connectTimeoutMs?: number } = {}) {
  const meshes = await Promise.all(
    Array.from({ length: n }, (_, rank) =>
      Mesh.listen({
        rank,
        worldSize: n,
        secret: opts.secrets?.[rank] ?? "s3cret-run-1",
        bindHost: "127.0.0.1",
        opTimeoutMs: opts.opTimeoutMs ?? 10_000,
        connectTimeoutMs: opts.connectTimeoutMs ?? 10_000,
      })),
  );
  return meshes;
}

const closeAll = (ms: Mesh[]) => ms.forEach((m) => m.close());

Deno.test("data plane: 4-rank mesh, variable all-to-all in groups, bit-identical all-reduce, barrier", async () => {
  const ms = await mesh(4);
  try {
    const eps = ms.map((m) => m.endpoint);
    await Promise.all(ms.map((m) => m.connect(eps)));
    // all-to-all: chunk i->j has (i+1)*(j+2) elements valued 100i+j.
    const chunk = (i: number, j: number) => new Float32Array((i + 1) * (j + 2)).fill(100 * i + j);
    for (const groups of [[[0, 1, 2, 3]], [[0, 1], [2, 3]]]) {
      await Promise.all(groups.flatMap((g) =>
        g.map(async (r) => {
          const got = await ms[r].allToAll(g, g.map((j) => chunk(r, j)), "a2a");
          g.forEach((src, i) => {
            assertEquals(got[i].length, (src + 1) * (r + 2), "chunk size");
            assert(got[i].every((x) => x === 100 * src + r), "chunk content");
          });
        })
      ));
    }
    // all-reduce of 1001 values (uneven shards); reference sum in rank order in float64.
    const rng = new Prng(1);
    const inputs = ms.map(() => Float32Array.from({ length: 1001 }, () => rng.normal()));
    const want = new Float32Array(1001).map((_, i) => inputs.reduce((a, x) => a + x[i], 0));
    const outs = await Promise.all(ms.map((m, r) => m.allReduce(inputs[r].slice(), "ar")));
    for (const o of outs) assertBitEqual(o, outs[0], "all-reduce identical on every rank");
    assertArrayClose(outs[0], want, 1e-6, 1e-6, "all-reduce sum");
    await Promise.all(ms.map((m) => m.barrier("b")));
  } finally {
    closeAll(ms);
  }
});

Deno.test("data plane: wrong secret is refused on both sides with a clear error", async () => {
  const ms = await mesh(2, { secrets: ["right", "wrong"], connectTimeoutMs: 1500 });
  try {
    const eps = ms.map((m) => m.endpoint);
    const t0 = Date.now();
    const [e0, e1] = await Promise.all([
      assertThrows(() => ms[0].connect(eps), /rank\(s\) 1 did not connect.*wrong secret/),
      assertThrows(() => ms[1].connect(eps), /rank 0 rejected this rank: authentication failed/),
    ]);
    assert(e0 && e1 && Date.now() - t0 < 5000, "no hang");
  } finally {
    closeAll(ms);
  }
});

Deno.test("data plane: a peer disconnecting mid-collective fails the others fast (no hang)", async () => {
  const ms = await mesh(3, { opTimeoutMs: 60_000 });
  try {
    const eps = ms.map((m) => m.endpoint);
    await Promise.all(ms.map((m) => m.connect(eps)));
    const t0 = Date.now();
    const p0 = assertThrows(() => ms[0].allReduce(new Float32Array(1 << 16), "grads"), /rank 2 .*grads/);
    const p1 = assertThrows(() => ms[1].allReduce(new Float32Array(1 << 16), "grads"), /rank (0|2) /);
    await new Promise((r) => setTimeout(r, 100));
    ms[2].close(); // rank 2 dies without entering the collective
    await Promise.all([p0, p1]);
    assert(Date.now() - t0 < 5000, "failed fast");
    // A failed mesh stays failed: later collectives error at once.
    await assertThrows(() => ms[0].barrier("later"), /rank 2/);
  } finally {
    closeAll(ms);
  }
});

Deno.test("data plane: abort message, timeout and out-of-step tags are clear errors", async () => {
  const ms = await mesh(2, { opTimeoutMs: 400 });
  try {
    const eps = ms.map((m) => m.endpoint);
    await Promise.all(ms.map((m) => m.connect(eps)));
    // timeout: rank 1 never joins
    await assertThrows(() => ms[0].barrier("lonely"), /timed out after 400 ms waiting for rank 1 \(lonely\)/);
    // ... and says whom it waited for as a field, through a wrapping error too (the pool blames a stopped rank by it)
    const timedOut = await ms[0].barrier("lonely again").then(() => undefined, (e) => e);
    assertEquals(waitedRank(timedOut), 1);
    assertEquals(waitedRank(new Error("step 3 failed", { cause: timedOut })), 1);
    assertEquals(waitedRank(new DataPlaneError("peer 1 disconnected")), undefined);
  } finally {
    closeAll(ms);
  }
  const ms2 = await mesh(2);
  try {
    const eps = ms2.map((m) => m.endpoint);
    await Promise.all(ms2.map((m) => m.connect(eps)));
    await Promise.all([
      assertThrows(
        () => ms2[0].allToAll([0, 1], [new Float32Array(1), new Float32Array(1)], "L0.fwd"),
        /out of step/,
      ),
      assertThrows(() => ms2[1].allToAll([0, 1], [new Float32Array(1), new Float32Array(1)], "L1.fwd"), /./),
    ]);
  } finally {
    closeAll(ms2);
  }
  const ms3 = await mesh(2);
  try {
    const eps = ms3.map((m) => m.endpoint);
    await Promise.all(ms3.map((m) => m.connect(eps)));
    const p = assertThrows(() => ms3[0].barrier("x"), /rank 1 aborted: out of memory/);
    await ms3[1].abort("out of memory");
    await p;
  } finally {
    closeAll(ms3);
  }
});

Deno.test("data plane: bad endpoint lists are rejected", async () => {
  const ms = await mesh(2);
  try {
    await assertThrows(() => ms[0].connect([ms[0].endpoint]), /no endpoint for rank 1/);
  } finally {
    closeAll(ms);
  }
});

/** The rejection of `p` as [class name, echo]. */
async function echoOf(p: Promise<unknown>): Promise<[string, boolean]> {
  const e = await p.then(() => undefined, (e) => e);
  assert(e instanceof DataPlaneError, `a DataPlaneError, not ${e}`);
  return [e.name, e.echo];
}

Deno.test("data plane: an error says by its class whether it repeats a peer's failure (echo), whatever its words", async () => {
  // This rank's own misuse: not an echo.
  assertEquals(
    await echoOf(
      Promise.resolve().then(() => Mesh.listen({ rank: 0, worldSize: 0, secret: "s", bindHost: "127.0.0.1" })),
    ),
    [
      "DataPlaneError",
      false,
    ],
  );
  const ms = await mesh(3, { opTimeoutMs: 300 });
  try {
    assertEquals(await echoOf(ms[0].connect([ms[0].endpoint])), ["DataPlaneError", false]);
  } finally {
    closeAll(ms);
  }
  // A peer's abort, seen by a barrier and by an all-to-all with it: echoes.
  const ms2 = await mesh(3, { opTimeoutMs: 300 });
  try {
    const eps = ms2.map((m) => m.endpoint);
    await Promise.all(ms2.map((m) => m.connect(eps)));
    const aborted = echoOf(ms2[0].barrier("x"));
    const inGroup = echoOf(ms2[2].allToAll([1, 2], [new Float32Array(1), new Float32Array(1)], "a2a"));
    await ms2[1].abort("out of memory");
    assertEquals(await aborted, ["DataPlaneError", true]);
    assertEquals(await inGroup, ["DataPlaneError", true]);
  } finally {
    closeAll(ms2);
  }
  // Through a wrapper (the executor's FatalError keeps it as its cause), and never from the text.
  const peer = new DataPlaneError("data plane: rank 1 disconnected");
  assertEquals([isPeerEcho(peer), isPeerEcho(new Error("step failed", { cause: peer }))], [true, true]);
  assertEquals(
    [new Error("data plane: rank 1 aborted"), new DataPlaneError("rank 1 disconnected", { echo: false })].map(
      isPeerEcho,
    ),
    [false, false],
  );
});
