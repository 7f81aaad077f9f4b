// Test helpers for the PyTorch executors: whether this machine's `python3` has torch (tests skip with the reason when
// it has not), the absolute path of that Python, and a real Python without torch (a venv made without pip).

/** `python3`'s `sys.executable` when it imports torch, else why not. */
export async function torchPython(): Promise<{ ok: true; python: string } | { ok: false; reason: string }> {
  try {
    const out = await new Deno.Command("python3", {
      args: ["-c", "import sys, torch; print(sys.executable)"],
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).output();
    if (out.success) return { ok: true, python: new TextDecoder().decode(out.stdout).trim() };
    const err = new TextDecoder().decode(out.stderr).trim().split("\n").at(-1);
    return { ok: false, reason: `python3 -c "import torch" fails (${err}); pip install torch==2.13.0` };
  } catch (e) {
    return { ok: false, reason: `python3 does not run (${(e as Error).message})` };
  }
}

/** Makes a venv without pip (so without torch) under `dir`; returns its Python. */
export async function pythonWithoutTorch(dir: string): Promise<string> {
  const out = await new Deno.Command("python3", {
    args: ["-m", "venv", "--without-pip", `${dir}/venv-no-torch`],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (!out.success) throw new Error(`python3 -m venv failed: ${new TextDecoder().decode(out.stderr)}`);
  return `${dir}/venv-no-torch/bin/python`;
}
