// The test helpers' own tests: `assertEquals` is a structural deep equality (Maps, Sets, undefined, NaN, typed
// arrays compare by content, not by their JSON text).

import { assertEquals, assertThrows, difference } from "./assert.ts";

Deno.test("assertEquals: Maps and Sets compare by content", async () => {
  assertEquals(new Map([[1, "a"], [2, "b"]]), new Map([[2, "b"], [1, "a"]]));
  await assertThrows(() => assertEquals(new Map([[1, "a"]]), new Map([[1, "b"]])), "first difference at .get(1)");
  await assertThrows(() => assertEquals(new Set([1, 2]), new Set([1, 3])), "Set member 2");
  assertEquals(new Set([[1], [2]]), new Set([[2], [1]]));
});

Deno.test("assertEquals: NaN equals NaN but not null; undefined is not null inside arrays", async () => {
  assertEquals([NaN], [NaN]);
  await assertThrows(() => assertEquals<unknown>([NaN], [null]), "[0]");
  await assertThrows(() => assertEquals<unknown>([undefined], [null]), "[0]");
  assertEquals<unknown>({ a: 1, b: undefined }, { a: 1 });
});

Deno.test("assertEquals: nested paths, typed arrays, dates, arrays vs objects", () => {
  assertEquals(difference({ a: [{ b: 1 }] }, { a: [{ b: 2 }] }), "a[0].b");
  assertEquals(difference(new Float32Array([1, 2]), new Float32Array([1, 3])), "[1]");
  assertEquals(difference(new Float32Array([1]), new Float64Array([1])), "(top)");
  assertEquals(difference(new Date(5), new Date(5)), undefined);
  assertEquals(difference([1], { 0: 1 }), "(top)");
  assertEquals(difference({ x: 1 }, { x: 1 }), undefined);
});
