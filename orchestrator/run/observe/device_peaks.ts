// Peak dense bf16 tensor throughput of common accelerators (vendor data sheets, without sparsity), looked up by a
// device's name, with config overrides (`observe.peak_tflops`, by a substring of the name). No peak is assumed for
// CPUs or software adapters: their MFU is "n/a" unless the config gives one.

/** Built-in peaks in TFLOP/s, most specific pattern first (matched case-insensitively against the device name). */
export const DEVICE_PEAKS_TFLOPS: readonly { pattern: RegExp; name: string; tflops: number }[] = [
  { pattern: /\bB200\b/i, name: "NVIDIA B200", tflops: 2250 },
  { pattern: /\bGB200\b/i, name: "NVIDIA GB200", tflops: 2500 },
  { pattern: /\bH200\b/i, name: "NVIDIA H200", tflops: 989 },
  { pattern: /\bGH200\b/i, name: "NVIDIA GH200", tflops: 989 },
  { pattern: /\bH100\b.*\bPCIe\b/i, name: "NVIDIA H100 PCIe", tflops: 756 },
  { pattern: /\bH100\b.*\bNVL\b/i, name: "NVIDIA H100 NVL", tflops: 835 },
  { pattern: /\bH100\b/i, name: "NVIDIA H100 SXM", tflops: 989 },
  { pattern: /\bH800\b/i, name: "NVIDIA H800", tflops: 989 },
  { pattern: /\bH20\b/i, name: "NVIDIA H20", tflops: 148 },
  { pattern: /\bA100\b/i, name: "NVIDIA A100", tflops: 312 },
  { pattern: /\bA800\b/i, name: "NVIDIA A800", tflops: 312 },
  { pattern: /\bA30\b/i, name: "NVIDIA A30", tflops: 165 },
  { pattern: /\bA10G?\b/i, name: "NVIDIA A10", tflops: 125 },
  { pattern: /\bL40S\b/i, name: "NVIDIA L40S", tflops: 362 },
  { pattern: /\bL40\b/i, name: "NVIDIA L40", tflops: 181 },
  { pattern: /\bL4\b/i, name: "NVIDIA L4", tflops: 121 },
  { pattern: /RTX 4090/i, name: "NVIDIA GeForce RTX 4090", tflops: 165 },
  { pattern: /RTX 3090/i, name: "NVIDIA GeForce RTX 3090", tflops: 71 },
  { pattern: /MI300X/i, name: "AMD Instinct MI300X", tflops: 1307 },
  { pattern: /MI250X?/i, name: "AMD Instinct MI250X", tflops: 383 },
];

/** The peak of a device (TFLOP/s), or null when neither the overrides nor the table know it. */
export function devicePeakTflops(deviceName: string, overrides: Record<string, number> = {}): number | null {
  const lower = deviceName.toLowerCase();
  // The longest matching override wins (`cpu` vs `cpu:2`).
  const keys = Object.keys(overrides).filter((k) => lower.includes(k.toLowerCase())).sort((a, b) =>
    b.length - a.length
  );
  if (keys.length) return overrides[keys[0]];
  for (const p of DEVICE_PEAKS_TFLOPS) if (p.pattern.test(deviceName)) return p.tflops;
  return null;
}
