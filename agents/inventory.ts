// What a node has: NVIDIA GPUs (nvidia-smi, model and memory), a WebGPU adapter (description and limits), CPU cores,
// CPU model and memory, and the node's Python with its torch, CUDA and NCCL versions (kernels/torch/probe.py). Every
// probe is bounded in time and a failing probe is a warning, never a crash.

import type { Inventory, PythonInfo } from "../core/protocol.ts";
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

/** Parses the probe's JSON line into a `PythonInfo`; a malformed answer becomes one with `error` set. */
export function parsePythonProbe(command: string, stdout: string, stderr = ""): PythonInfo {
  const info: PythonInfo = {
    command,
    python: null,
    executable: null,
    torch: null,
    cuda: null,
    cudaAvailable: false,
    nccl: null,
    gpus: [],
    error: null,
  };
  const line = stdout.split("\n").map((l) => l.trim()).filter((l) => l.startsWith("{")).at(-1);
  let v: Record<string, unknown> | undefined;
  try {
    v = line ? JSON.parse(line) : undefined;
  } catch { /* reported below */ }
  if (!v || typeof v !== "object") {
    const why = (stderr.trim() || stdout.trim()).split("\n").slice(-3).join(" | ").slice(0, 400);
    return { ...info, error: `the torch probe printed no JSON${why ? `: ${why}` : ""}` };
  }
  const str = (x: unknown) => typeof x === "string" ? x : null;
  return {
    command,
    python: str(v.python),
    executable: str(v.executable),
    torch: str(v.torch),
    ...("transformers" in v ? { transformers: str(v.transformers) } : {}),
    cuda: str(v.cuda),
    cudaAvailable: v.cudaAvailable === true,
    nccl: str(v.nccl),
    gpus: Array.isArray(v.gpus)
      ? v.gpus.filter((g) => g && typeof g === "object").map((g) => ({
        name: String((g as Record<string, unknown>).name ?? "?"),
        memoryMb: Number((g as Record<string, unknown>).memoryMb ?? 0),
      }))
      : [],
    error: str(v.error),
  };
}

/**
 * Runs `<python> <torchPackage>/probe.py` (importing torch takes a second or two). A Python that cannot be started
 * or a probe that fails is reported in the result's `error`, never thrown.
 */
export async function probePython(python: string, torchPackage: string, timeoutMs = 60000): Promise<PythonInfo> {
  let child: Deno.ChildProcess;
  try {
    child = new Deno.Command(python, {
      args: [`${torchPackage}/probe.py`],
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
      env: { PYTHONDONTWRITEBYTECODE: "1" },
    }).spawn();
  } catch (e) {
    const why = e instanceof Deno.errors.NotFound ? "not found" : (e as Error).message;
    return { ...parsePythonProbe(python, ""), error: `cannot run ${python}: ${why}` };
  }
  try {
    const out = await withTimeout(child.output(), timeoutMs, `${python} ${torchPackage}/probe.py`);
    const dec = new TextDecoder();
    const info = parsePythonProbe(python, dec.decode(out.stdout), dec.decode(out.stderr));
    if (!out.success && !info.error) info.error = `the torch probe exited with code ${out.code}`;
    return info;
  } catch (e) {
    try {
      child.kill("SIGKILL");
    } catch { /* gone */ }
    return { ...parsePythonProbe(python, ""), error: (e as Error).message };
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
  opts: { webgpu: boolean; python?: { command: string; torchPackage: string; when: "always" | "never" | "gpus" } },
): Promise<{ inventory: Inventory; warnings: string[] }> {
  const warnings: string[] = [];
  const py = opts.python;
  const [gpus, webgpu, early] = await Promise.all([
    probeNvidia(warnings),
    opts.webgpu ? probeWebGpu(warnings) : Promise.resolve(undefined),
    py?.when === "always" ? probePython(py.command, py.torchPackage) : Promise.resolve(undefined),
  ]);
  // `auto` needs torch's view only where there are NVIDIA GPUs to use.
  const python = early ??
    (py?.when === "gpus" && gpus.length ? await probePython(py.command, py.torchPackage) : undefined);
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
  if (python) inventory.python = python;
  return { inventory, warnings };
}
