// The CPU-side parts of the GPU check (bench/cuda_check.sh, bench/cuda_slice.ts), which CI cannot run on a GPU: its
// argument handling, the configs it generates (validated by `deno task plan`), the FLOP and peak arithmetic behind
// MFU, the slice driver's real `profile_compute` path on torch-cpu, and the llama slice's kernel requirement.

import { bf16PeakTflops, sliceConfig, stepFlops } from "../../bench/cuda_slice.ts";
import { MODEL_PRESETS } from "../../core/model_shape.ts";
import { assert, assertClose, assertEquals, assertIncludes } from "../assert.ts";
import { REPO_ROOT } from "./launch_harness.ts";
import { torchPython } from "../agents/torch_fixtures.ts";

const torch = await torchPython();
if (!torch.ok) console.log(`skipping the torch-cpu slice run: ${torch.reason}`);

async function run(cmd: string, args: string[]) {
  const r = await new Deno.Command(cmd, { args, cwd: REPO_ROOT, stdin: "null", env: { NO_COLOR: "1" } }).output();
  const d = new TextDecoder();
  return { code: r.code, out: d.decode(r.stdout), err: d.decode(r.stderr) };
}

Deno.test("cuda slice arithmetic: FLOPs of a gpt-7b layer step and the dense bf16 peaks of known GPUs", () => {
  const m = { ...MODEL_PRESETS["gpt-7b"], layers: 1 };
  const s = 32768;
  // 6 FLOPs per parameter and token (12 h^2 per layer + the tied head), plus causal attention 6 h s^2 per layer.
  const expected = 6 * s * (12 * 4096 * 4096 + 50257 * 4096) + 6 * 4096 * s * s;
  assertClose(stepFlops(m, s), expected, 1);
  assertEquals(bf16PeakTflops("NVIDIA H200"), 989);
  assertEquals(bf16PeakTflops("NVIDIA H100 PCIe"), 756);
  assertEquals(bf16PeakTflops("NVIDIA A100-SXM4-80GB"), 312);
  assertEquals(bf16PeakTflops("Intel Xeon"), undefined);
  assertIncludes(sliceConfig({ kind: "cuda", model: m }), "executor: cuda", "hidden: 4096", "max_seq: 196608");
});

Deno.test({
  name: "cuda_check.sh --dry-run: configs generated and planned, the slice requests printed; bad arguments refused",
  sanitizeResources: false,
  fn: async () => {
    const r = await run("bash", ["bench/cuda_check.sh", "--dry-run", "--steps", "20", "--lengths", "4096,32768"]);
    assertEquals(r.code, 0, r.out + r.err);
    assertIncludes(r.out, "executor: cuda", "steps: 20", "checkpoint_interval: 10", "flexsp");
    assertIncludes(
      r.out,
      "dry run: would run launch (20 steps, killed after step 12, then --resume), profile --quick and the llama " +
        "slice at 4096,32768",
      "--tokens 4096,32768 --policy selective --device cuda --require-kernel 'flash varlen' --torch-profile",
      "then at 32768 tokens under full checkpointing, and as 512 sequences of 64 tokens",
    );
    assertIncludes(r.err, '"deno": "deno ');
    for (const bad of [["--steps", "0"], ["--lengths", "4096,,8"], ["--frobnicate"]]) {
      const b = await run("bash", ["bench/cuda_check.sh", ...bad]);
      assertEquals(b.code, 2, `${bad.join(" ")}: ${b.err}`);
      assert(b.err.startsWith("error: "), b.err);
    }
    const s = await run(Deno.execPath(), ["run", "-A", "bench/cuda_slice.ts", "--dry-run", "--kind", "rocm"]);
    assertEquals(s.code, 1);
    assertIncludes(s.err, "--kind rocm: expected cuda or torch-cpu");
  },
});

Deno.test({
  name: "cuda_slice.ts on torch-cpu: a gpt-tiny slice measured through profile_compute, table and JSON",
  ignore: !torch.ok,
  sanitizeResources: false,
  fn: async () => {
    const out = await Deno.makeTempFile({ suffix: ".json" });
    try {
      const r = await run(Deno.execPath(), [
        "run",
        "-A",
        "bench/cuda_slice.ts",
        "--kind",
        "torch-cpu",
        "--preset",
        "gpt-tiny",
        "--lengths",
        "64,256",
        "--repeats",
        "2",
        "--out",
        out,
      ]);
      assertEquals(r.code, 0, r.out + r.err);
      assertIncludes(r.out, "tokens/s", "MB/token");
      const json = JSON.parse(await Deno.readTextFile(out));
      assertEquals(json.kind, "torch-cpu");
      assertEquals(json.rows.map((x: { tokens: number }) => x.tokens), [64, 256]);
      for (const row of json.rows) {
        assert(row.ms > 0 && row.tokensPerS > 0 && row.tflops > 0, JSON.stringify(row));
        assertEquals(row.mfu, undefined, "no MFU without a known peak");
      }
    } finally {
      await Deno.remove(out);
    }
  },
});

Deno.test({
  name:
    "kernels.torch.llama_slice --require-kernel: rows printed, exit 3 when the kernel or its inputs are not as required",
  ignore: !torch.ok,
  sanitizeResources: false,
  fn: async () => {
    const shape = JSON.stringify({
      family: "llama",
      layers: 1,
      hidden: 32,
      heads: 4,
      kvHeads: 2,
      intermediate: 64,
      vocab: 64,
      maxSeq: 256,
      ropeTheta: 10000,
      normEps: 1e-5,
    });
    const args = ["-m", "kernels.torch.llama_slice", "--shape", shape, "--tokens", "128,256", "--sequences", "4"];
    const ok = await run(torch.ok ? torch.python : "python3", [...args, "--require-kernel", "sdpa"]);
    assertEquals(ok.code, 0, ok.err);
    const rows = ok.out.trim().split("\n").map((l) => JSON.parse(l));
    assertEquals(rows.map((r) => [r.tokens, r.sequences, r.kernelInputs]), [
      [128, 4, ["float32 4-D"]],
      [256, 4, ["float32 4-D"]],
    ]);
    const bad = await run(torch.ok ? torch.python : "python3", [...args, "--require-kernel", "flash varlen"]);
    assertEquals(bad.code, 3, bad.err);
    assertIncludes(bad.out, "wanted flash varlen called with float32 4-D, got sdpa (float32)");
  },
});
