// Public API of the WebGPU executor backend: the backend factory (what kernels/executor_main.ts loads), the device
// helpers and their error type.

export { createWebGpuBackend, WebGpuBackend, type WebGpuBackendOptions } from "./backend.ts";
export {
  type OpenedGpuDevice,
  openGpuDevice,
  requestGpuAdapter,
  summarizeAdapter,
  type WebGpuAdapterSummary,
  WebGpuUnavailableError,
} from "./device.ts";
export type { KernelTime } from "./profiler.ts";
