// Shared helpers of the WebGPU tests: one adapter probe per module (tests are registered as ignored, with the reason
// printed once, when there is no adapter), a backend factory that always disposes, random data and comparisons.

import { assertArrayClose } from "../assert.ts";
import { createWebGpuBackend, type WebGpuBackend, type WebGpuBackendOptions } from "../../kernels/webgpu/backend.ts";
import { requestGpuAdapter } from "../../kernels/webgpu/device.ts";

const adapter = await requestGpuAdapter();

/** Why WebGPU tests are skipped on this machine, or null when an adapter exists. */
export const SKIP_REASON: string | null = adapter
  ? null
  : "no WebGPU adapter (navigator.gpu.requestAdapter() returned null); " +
    "install mesa-vulkan-drivers libvulkan1 (or libegl-mesa0 libgl1-mesa-dri) to run them";

let warned = false;

/** Registers a test that needs a WebGPU backend; it is ignored (with the reason printed once) without an adapter. */
export function gpuTest(
  name: string,
  fn: (b: WebGpuBackend) => Promise<void>,
  options: WebGpuBackendOptions = {},
): void {
  if (SKIP_REASON && !warned) {
    warned = true;
    console.warn(`WebGPU tests skipped: ${SKIP_REASON}`);
  }
  Deno.test({
    name: SKIP_REASON ? `${name} (skipped: no WebGPU adapter)` : name,
    ignore: SKIP_REASON !== null,
    fn: async () => {
      const b = await createWebGpuBackend(options);
      try {
        await fn(b);
      } finally {
        b.dispose();
      }
    },
  });
}

/** A deterministic PRNG stream of uniform floats in [lo, hi). */
export function randomFloats(n: number, seed: number, lo = -1, hi = 1): Float32Array {
  let s = (seed * 2654435761) >>> 0 || 1;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    out[i] = lo + (hi - lo) * (s / 4294967296);
  }
  return out;
}

/** Random ints in [0, n). */
export function randomInts(count: number, n: number, seed: number): Int32Array {
  const f = randomFloats(count, seed, 0, 1);
  return Int32Array.from(f, (x) => Math.min(n - 1, Math.floor(x * n)));
}

/** `|got - want| <= atol + rtol·|want|` elementwise; returns the largest absolute error. */
export function assertClose(
  got: ArrayLike<number>,
  want: ArrayLike<number>,
  what: string,
  rtol = 1e-4,
  atol = 1e-5,
): number {
  return assertArrayClose(got, want, atol, rtol, what);
}

export { assert, assertBitEqual as assertIdentical } from "../assert.ts";
