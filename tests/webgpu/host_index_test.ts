// The host-built index tables of the WebGPU kernels (no GPU needed): CSR grouping of rows by id, and per-token
// sequence bounds from cuSeqlens with their validation errors.

import { buildCsrIndex, buildSeqBounds } from "../../kernels/webgpu/host_index.ts";
import { assert } from "./gpu_test_util.ts";

function throws(fn: () => unknown, pattern: RegExp, what: string): void {
  try {
    fn();
  } catch (e) {
    assert(pattern.test((e as Error).message), `${what}: wrong message: ${(e as Error).message}`);
    return;
  }
  throw new Error(`${what}: did not throw`);
}

Deno.test("CSR index groups rows by id, ids ascending, rows ascending, over a prefix", () => {
  const ids = new Int32Array([5, 2, 5, 0, 2, 5, 9]);
  const { unique, packed } = buildCsrIndex(ids, 6, 10, "tokens");
  assert(unique === 3, `unique ${unique}`);
  // ids | start(4) | rows(6)
  const want = [0, 2, 5, 0, 1, 3, 6, 3, 1, 4, 0, 2, 5];
  assert(packed.join(",") === want.join(","), `packed ${packed.join(",")}`);
});

Deno.test("CSR index rejects ids outside the table", () => {
  throws(() => buildCsrIndex(new Int32Array([1, 4]), 2, 4, "tokens"), /tokens\[1\] = 4 is outside \[0, 4\)/, "oob");
  throws(() => buildCsrIndex(new Int32Array([-1]), 1, 4, "positions"), /positions\[0\] = -1/, "negative");
});

Deno.test("sequence bounds per token, and cuSeqlens validation", () => {
  const b = buildSeqBounds(new Int32Array([0, 2, 3, 6]), 6);
  assert(b.join(",") === "0,2,0,2,2,3,3,6,3,6,3,6", `bounds ${b.join(",")}`);
  throws(() => buildSeqBounds(new Int32Array([0, 2, 5]), 6), /from 0 to seqLen 6/, "wrong end");
  throws(() => buildSeqBounds(new Int32Array([1, 6]), 6), /from 0 to seqLen 6/, "wrong start");
  throws(() => buildSeqBounds(new Int32Array([0, 3, 3, 6]), 6), /not strictly increasing at index 2/, "empty seq");
});
