// The deterministic sampler: long documents split or dropped, every epoch a permutation of all sequences, and a
// saved state that continues exactly where it left off (also across epoch boundaries).

import { buildSequenceTable, DatasetSampler, SyntheticSampler } from "../../orchestrator/data/sampler.ts";
import { assert, assertEquals, assertThrows } from "../assert.ts";

const index = (lengths: number[]) => {
  const offsets = new Float64Array(lengths.length);
  for (let i = 1; i < lengths.length; i++) offsets[i] = offsets[i - 1] + lengths[i - 1];
  return { offsets, lengths: Uint32Array.from(lengths) };
};

Deno.test("sequence table: documents longer than max_seq are split into pieces (or dropped); 1-token pieces go", () => {
  const idx = index([5, 10, 23, 1, 21]);
  const split = buildSequenceTable(idx, 10, "split");
  assertEquals([...split.lengths], [5, 10, 10, 10, 3, 10, 10]);
  assertEquals([...split.offsets], [0, 5, 15, 25, 35, 39, 49]);
  assertEquals([...split.docs], [0, 1, 2, 2, 2, 4, 4]);
  assertEquals(split.longDocs, 2);
  const drop = buildSequenceTable(idx, 10, "drop");
  assertEquals([...drop.lengths], [5, 10]);
  assertEquals(drop.longDocs, 2);
});

Deno.test("sampler: each epoch visits every sequence once, in a seed-dependent order", () => {
  const table = buildSequenceTable(index(Array.from({ length: 50 }, (_, i) => 2 + i)), 1000, "split");
  const s = new DatasetSampler(table, 7);
  const epoch0 = [...s.next(20).ids, ...s.next(20).ids, ...s.next(10).ids];
  assertEquals([...epoch0].sort((a, b) => a - b), Array.from({ length: 50 }, (_, i) => i));
  const b = s.next(5);
  assertEquals(b.epoch, 1);
  assert(JSON.stringify(b.ids) !== JSON.stringify(epoch0.slice(0, 5)), "epoch 1 has another order");
  const same = new DatasetSampler(table, 7);
  assertEquals(same.next(50).ids, epoch0);
  const other = new DatasetSampler(table, 8);
  assert(JSON.stringify(other.next(50).ids) !== JSON.stringify(epoch0), "another seed, another order");
  const batch = new DatasetSampler(table, 7).next(3);
  assertEquals(batch.lengths, batch.ids.map((i) => table.lengths[i]));
  assertEquals(batch.offsets, batch.ids.map((i) => table.offsets[i]));
});

Deno.test("sampler: a saved state continues exactly, across epoch boundaries too", async () => {
  const table = buildSequenceTable(index(Array.from({ length: 37 }, (_, i) => 3 + (i * 13) % 40)), 20, "split");
  const a = new DatasetSampler(table, 3);
  const b = new DatasetSampler(table, 3);
  for (let k = 0; k < 9; k++) a.next(16);
  for (let k = 0; k < 5; k++) b.next(16);
  const saved = JSON.parse(JSON.stringify(b.state()));
  const resumed = new DatasetSampler(table, 3, saved);
  for (let k = 5; k < 9; k++) resumed.next(16);
  assertEquals(resumed.state(), a.state());
  assertEquals(resumed.next(40), a.next(40));
  await assertThrows(() => new DatasetSampler(table, 4, saved), "seed 3");
  const other = buildSequenceTable(index([5, 6, 7]), 20, "split");
  await assertThrows(() => new DatasetSampler(other, 3, saved), "this dataset has 3");
});

Deno.test("synthetic sampler: lengths from a named distribution, RNG state restored exactly", () => {
  const a = new SyntheticSampler("wikipedia", 4096, 5);
  a.next(16);
  const saved = a.state();
  const expected = a.next(16);
  const b = new SyntheticSampler("wikipedia", 4096, 5, saved);
  assertEquals(b.next(16), expected);
  assertEquals(expected.ids, Array.from({ length: 16 }, (_, i) => 16 + i));
  assert(expected.lengths.every((l) => l >= 2 && l <= 4096));
});
