// What a node has: NVIDIA GPUs (nvidia-smi, model and memory), a WebGPU adapter (description and limits), CPU cores,
// CPU model and memory. Every probe is bounded in time and a failing probe is a warning, never a crash.

import type { Inventory } from "../core/protocol.ts";
import { ensureXdgRuntimeDir } from "../kernels/webgpu/device.ts";

/** The WebGPU part of an inventory. */
export type WebGpuInfo = NonNullable<Inventory["webgpu"]>;

/** Parses `nvidia-smi --query-gpu=index,name,memory.total --format=csv,noheader,nounits` output. */
export function parseNvidiaSmi(text: string): Inventory["gpus"] {
  const gpus: Inventory["gpus"] = [];
  for (const line of text.split("\n")) {
    if (!line.trim()) continue;
    const parts = line.split(",").map((p) => p.trim());
    if (parts.length < 3) continue;
    const index = Number(parts[0]);
    const memoryMb = Number(parts[parts.length - 1]);
    const name = parts.slice(1, -1).join(",");
    if (Number.isInteger(index) && Number.isFinite(memoryMb)) gpus.push({ index, name, memoryMb });
  }
  return gpus;
}

async function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([
      p,
      new Promise<never>((_, reject) => timer = setTimeout(() => reject(new Error(`${what} took over ${ms} ms`)), ms)),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** GPUs as nvidia-smi lists them; none when nvidia-smi is not installed. */
export async function probeNvidia(warnings: string[], timeoutMs = 10000): Promise<Inventory["gpus"]> {
  let child: Deno.ChildProcess;
  try {
    child = new Deno.Command("nvidia-smi", {
      args: ["--query-gpu=index,name,memory.total", "--format=csv,noheader,nounits"],
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) warnings.push(`nvidia-smi could not start: ${(e as Error).message}`);
    return [];
  }
  try {
    const out = await withTimeout(child.output(), timeoutMs, "nvidia-smi");
    if (!out.success) {
      const err = new TextDecoder().decode(out.stderr).trim() || new TextDecoder().decode(out.stdout).trim();
      warnings.push(`nvidia-smi failed (exit ${out.code}): ${err.slice(0, 300)}`);
      return [];
    }
    return parseNvidiaSmi(new TextDecoder().decode(out.stdout));
  } catch (e) {
    try {
      child.kill("SIGKILL");
    } catch { /* gone */ }
    warnings.push((e as Error).message);
    return [];
  }
}

/** The WebGPU adapter Deno finds, or undefined. */
export async function probeWebGpu(warnings: string[], timeoutMs = 8000): Promise<WebGpuInfo | undefined> {
  const gpu = (navigator as { gpu?: GPU }).gpu;
  if (!gpu) return undefined;
  ensureXdgRuntimeDir();
  try {
    const adapter = await withTimeout(gpu.requestAdapter(), timeoutMs, "WebGPU adapter request");
    if (!adapter) return undefined;
    const info = adapter.info as GPUAdapterInfo & { isFallbackAdapter?: boolean };
    const limits: Record<string, number> = {};
    for (const key in adapter.limits) {
      const v = (adapter.limits as unknown as Record<string, unknown>)[key];
      if (typeof v === "number") limits[key] = v;
    }
    return {
      description: info.description || info.device || "unknown adapter",
      vendor: info.vendor,
      isFallbackAdapter: Boolean(
        info.isFallbackAdapter ?? (adapter as { isFallbackAdapter?: boolean }).isFallbackAdapter,
      ),
      limits,
    };
  } catch (e) {
    warnings.push(`WebGPU probe failed: ${(e as Error).message}`);
    return undefined;
  }
}

function cpuModel(): string | undefined {
  try {
    const text = Deno.readTextFileSync("/proc/cpuinfo");
    return text.match(/^model name\s*:\s*(.+)$/m)?.[1]?.trim();
  } catch {
    return undefined;
  }
}

/** Collects the whole inventory; probes run in parallel. */
export async function collectInventory(
  opts: { webgpu: boolean },
): Promise<{ inventory: Inventory; warnings: string[] }> {
  const warnings: string[] = [];
  const [gpus, webgpu] = await Promise.all([
    probeNvidia(warnings),
    opts.webgpu ? probeWebGpu(warnings) : Promise.resolve(undefined),
  ]);
  let memoryGb = 0;
  try {
    memoryGb = Deno.systemMemoryInfo().total / 2 ** 30;
  } catch (e) {
    warnings.push(`memory size unknown: ${(e as Error).message}`);
  }
  const inventory: Inventory = {
    hostname: Deno.hostname(),
    os: Deno.build.os,
    arch: Deno.build.arch,
    cpus: navigator.hardwareConcurrency,
    cpuModel: cpuModel(),
    memoryGb: Math.round(memoryGb * 100) / 100,
    deno: Deno.version.deno,
    gpus,
  };
  if (webgpu) inventory.webgpu = webgpu;
  return { inventory, warnings };
}
