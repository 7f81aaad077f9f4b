// WebGPU adapter and device setup for the WebGPU executor: one place that asks `navigator.gpu` for an adapter,
// requests a device with the adapter's full compute limits, and fails with one clear message when there is none.

/** Thrown when no WebGPU adapter (or device) is available on this machine. */
export class WebGpuUnavailableError extends Error {
  override name = "WebGpuUnavailableError";
}

/** What the executor reports about the adapter it runs on (matches the agent protocol's inventory fields). */
export interface WebGpuAdapterSummary {
  description: string;
  vendor: string;
  isFallbackAdapter: boolean;
  limits: Record<string, number>;
}

/** An opened device plus a summary of the adapter behind it. */
export interface OpenedGpuDevice {
  device: GPUDevice;
  adapter: WebGpuAdapterSummary;
}

const HINT = "install a Vulkan driver (Debian: `apt-get install -y mesa-vulkan-drivers libvulkan1`, " +
  "or the GL fallback `libegl-mesa0 libgl1-mesa-dri`), or pick it with DENO_WEBGPU_BACKEND=vulkan|gl; " +
  "otherwise use the cpu executor";

/** Limits the kernels depend on; the device is requested with the adapter's own (maximal) values for these. */
const COMPUTE_LIMITS = [
  "maxStorageBufferBindingSize",
  "maxBufferSize",
  "maxComputeWorkgroupsPerDimension",
  "maxComputeInvocationsPerWorkgroup",
  "maxComputeWorkgroupSizeX",
  "maxComputeWorkgroupSizeY",
  "maxComputeWorkgroupStorageSize",
  "maxStorageBuffersPerShaderStage",
] as const;

/** Makes sure XDG_RUNTIME_DIR is set (Mesa's lavapipe complains on stderr otherwise); child processes inherit it. */
export function ensureXdgRuntimeDir(): void {
  if (Deno.env.get("XDG_RUNTIME_DIR") || Deno.build.os === "windows") return;
  const dir = `${Deno.env.get("TMPDIR") ?? "/tmp"}/flexsp-xdg-${Deno.uid() ?? "user"}`;
  try {
    Deno.mkdirSync(dir, { recursive: true, mode: 0o700 });
    Deno.chmodSync(dir, 0o700);
    Deno.env.set("XDG_RUNTIME_DIR", dir);
  } catch { /* leave it unset */ }
}

/** Requests an adapter; returns null (never throws) when WebGPU is missing or no adapter exists. */
export async function requestGpuAdapter(): Promise<GPUAdapter | null> {
  const gpu = (globalThis.navigator as Navigator | undefined)?.gpu;
  if (!gpu) return null;
  ensureXdgRuntimeDir();
  try {
    return await gpu.requestAdapter({ powerPreference: "high-performance" });
  } catch {
    return null;
  }
}

/** Summarises an adapter's identity and compute limits. */
export function summarizeAdapter(adapter: GPUAdapter): WebGpuAdapterSummary {
  const limits: Record<string, number> = {};
  for (const k of COMPUTE_LIMITS) limits[k] = Number(adapter.limits[k]);
  return {
    description: adapter.info.description || adapter.info.device || "unknown",
    vendor: adapter.info.vendor,
    isFallbackAdapter: adapter.info.isFallbackAdapter ?? false,
    limits,
  };
}

/**
 * Opens a device with the adapter's maximal compute limits (and, with `timestamps`, the "timestamp-query"
 * feature when the adapter has it, for profiling).
 * Throws {@link WebGpuUnavailableError} with an actionable message when there is no adapter.
 */
export async function openGpuDevice(options: { timestamps?: boolean } = {}): Promise<OpenedGpuDevice> {
  if (!(globalThis.navigator as Navigator | undefined)?.gpu) {
    throw new WebGpuUnavailableError(`WebGPU is not available in this runtime (navigator.gpu is undefined); ${HINT}`);
  }
  const adapter = await requestGpuAdapter();
  if (!adapter) throw new WebGpuUnavailableError(`no WebGPU adapter found; ${HINT}`);
  const requiredLimits: Record<string, number> = {};
  for (const k of COMPUTE_LIMITS) requiredLimits[k] = Number(adapter.limits[k]);
  let device: GPUDevice;
  try {
    const requiredFeatures: GPUFeatureName[] = [];
    if (options.timestamps && adapter.features.has("timestamp-query")) requiredFeatures.push("timestamp-query");
    device = await adapter.requestDevice({ requiredLimits, requiredFeatures });
  } catch (e) {
    throw new WebGpuUnavailableError(`the WebGPU adapter refused a device: ${(e as Error).message}; ${HINT}`, {
      cause: e,
    });
  }
  return { device, adapter: summarizeAdapter(adapter) };
}
