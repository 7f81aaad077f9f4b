// What the PyTorch executors (`executor: cuda | torch-cpu`) need from a node's Python, checked against the agent's
// inventory before any executor starts: one clear message naming the host, the Python, what is missing and the fix.

import { type Inventory, isTorchKind } from "../../core/protocol.ts";
import type { NodeConfig } from "../config/types.ts";

/** The torch version our CPU test machines install (`pip install torch==2.13.0` takes a local CPU wheel). */
export const TORCH_CPU_PIN = "2.13.0";

/** The transformers version the tests run (tests/requirements.txt). */
export const TRANSFORMERS_PIN = "5.23.0";
/** Where CUDA builds of torch come from. */
export const TORCH_CUDA_INDEX = "https://download.pytorch.org/whl/cu128";

/** The part of a launched node this check reads. */
export interface TorchNode {
  /** `node 0 (gpu0)`. */
  name: string;
  config: NodeConfig;
  inventory?: Inventory;
  executorKind?: string;
}

/**
 * Why the node's Python cannot run its PyTorch executors, or undefined when it can (or the node's kind is not a
 * PyTorch one). The message names the host, the Python (as configured and as resolved), what is missing and how to
 * fix it.
 */
export function torchProblem(n: TorchNode): string | undefined {
  const kind = n.executorKind;
  if (!kind || !isTorchKind(kind)) return undefined;
  const field = `cluster.nodes[${n.config.index}].python`;
  const py = n.inventory?.python;
  const configured = n.config.python;
  const setIt = `or set ${field} to a Python that has it`;
  if (!py) {
    return `${n.name}: executor ${kind} needs PyTorch, but the agent did not report the node's Python ` +
      `(${configured}) (this checkout has no kernels/torch/executor_main.py, or the agent there is older)`;
  }
  if (!py.python) {
    return `${n.name}: executor ${kind} needs Python with PyTorch, but ${configured} (${field}) does not run there: ` +
      `${py.error ?? "no answer"}; install Python 3.10+ on ${n.config.host} or set ${field} to its path`;
  }
  const which = `${py.executable ?? configured} (Python ${py.python}, ${field}: ${configured})`;
  const pip = `${py.executable ?? configured} -m pip install`;
  if (!py.torch) {
    const why = py.error ? ` (${py.error.split("\n")[0].slice(0, 200)})` : "";
    return `${n.name}: executor ${kind} needs PyTorch, but ${which} on ${n.config.host} has no torch${why}; ` +
      (kind === "cuda"
        ? `install a CUDA build there: \`${pip} torch --index-url ${TORCH_CUDA_INDEX}\` (see pytorch.org for ` +
          `other CUDA versions), `
        : `install it there: \`${pip} torch==${TORCH_CPU_PIN}\` (a CPU wheel), `) +
      setIt;
  }
  if (py.transformers === null) {
    return `${n.name}: executor ${kind} runs transformers' model code, but ${which} on ${n.config.host} has no ` +
      `transformers; install it there: \`${pip} transformers==${TRANSFORMERS_PIN}\` (the version CI tests), ${setIt}`;
  }
  if (kind === "cuda" && (!py.cuda || !py.cudaAvailable)) {
    const what = !py.cuda
      ? `has torch ${py.torch}, a CPU-only build`
      : `has torch ${py.torch} built for CUDA ${py.cuda}, but it sees no GPU` +
        (py.error ? ` (${py.error.split("\n")[0].slice(0, 200)})` : " (torch.cuda.is_available() is false)");
    return `${n.name}: executor cuda needs torch with CUDA, but ${which} on ${n.config.host} ${what}; install a ` +
      `CUDA build there: \`${pip} torch --index-url ${TORCH_CUDA_INDEX}\` (and a driver that nvidia-smi shows), ` +
      `${setIt}, or set cluster.nodes[${n.config.index}].executor: torch-cpu`;
  }
  if (kind === "cuda" && py.gpus.length < n.config.devices) {
    return `${n.name}: devices: ${n.config.devices} with executor: cuda, but torch on ${n.config.host} sees ` +
      `${py.gpus.length} GPU(s); set devices: ${py.gpus.length} or fix CUDA_VISIBLE_DEVICES there`;
  }
  return undefined;
}
