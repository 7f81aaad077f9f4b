// Sequence Blaster's linear partition against brute force, and the placement allocator's rules.

import { assert, assertEquals } from "../assert.ts";
import { bottleneck, chunk, linearPartition } from "../../orchestrator/planner/blaster.ts";
import { Rng } from "../../orchestrator/data/rng.ts";
import { BlockAllocator, BlockTable } from "../../orchestrator/planner/placement.ts";
import { uniformTopology } from "../../orchestrator/planner/topology.ts";

function bruteForce(w: number[], m: number): number {
  let best = Infinity;
  const rec = (start: number, left: number, worst: number) => {
    if (left === 1) {
      let s = 0;
      for (let i = start; i < w.length; i++) s += w[i];
      best = Math.min(best, Math.max(worst, s));
      return;
    }
    let s = 0;
    for (let end = start + 1; end <= w.length - (left - 1); end++) {
      s += w[end - 1];
      rec(end, left - 1, Math.max(worst, s));
    }
  };
  rec(0, m, 0);
  return best;
}

Deno.test("linear partition is optimal (brute force on small inputs) and gives exactly m non-empty runs", () => {
  const rng = new Rng(4);
  for (let trial = 0; trial < 300; trial++) {
    const k = 1 + rng.int(9);
    const m = 1 + rng.int(k);
    const w = Array.from({ length: k }, () => 1 + rng.int(50));
    const runs = linearPartition(w, m);
    assert(runs.length === m, "run count");
    assert(runs.every(([s, e]) => e > s), "non-empty runs");
    assertEquals(runs[0][0], 0);
    assertEquals(runs[m - 1][1], k);
    for (let i = 1; i < m; i++) assertEquals(runs[i][0], runs[i - 1][1]);
    assertEquals(bottleneck(w, runs), bruteForce(w, m), `w=${w} m=${m}`);
  }
});

Deno.test("chunk sorts by length before partitioning (paper takeaway: low variance per micro-batch)", () => {
  const lengths = [100, 9000, 300, 8000, 200, 50];
  const chunks = chunk(lengths, lengths.map((_, i) => i), 2);
  // Sorted: 9000, 8000, 300, 200, 100, 50; the lightest heaviest run is [9000] | [8000, 300, 200, 100, 50].
  assertEquals(chunks, [[1], [3, 2, 4, 0, 5]]);
});

Deno.test("the block allocator hands out aligned blocks inside nodes and keeps large blocks whole", () => {
  const topo = uniformTopology([4, 4]);
  const alloc = new BlockAllocator(new BlockTable(topo, () => 100));
  const a = alloc.peek(1)!;
  alloc.take(a);
  const b = alloc.peek(4)!;
  assert(b.start === 4 && !b.spans, `a degree-4 block should use the untouched node, got ${b.start}`);
  alloc.take(b);
  const c = alloc.peek(2)!;
  assert(c.start % 2 === 0 && c.start < 4, "degree-2 block aligned in the first node");
  alloc.take(c);
  assert(alloc.peek(4) === undefined, "no degree-4 block left");
  const rest = alloc.remainder();
  assertEquals(rest.reduce((s, x) => s + x.degree, 0), 1);
  const spanning = new BlockTable(uniformTopology([2, 2]), () => 1).get(0, 4);
  assert(spanning.spans, "a block over two nodes spans");
});
