// The PyTorch executor package passes ruff (kernels/torch/ruff.toml: pycodestyle errors and warnings, pyflakes)
// and mypy, strict (kernels/torch/mypy.ini), so an undefined name, an unused import or a wrong type in a file only
// some nodes run is caught here, not on a GPU.

import { assertEquals } from "./assert.ts";
import { pythonImportFailure } from "./python_probe.ts";

const missing = await pythonImportFailure("ruff");
if (missing) console.log(`skipping the Python lint: ${missing} (pip install -r tests/requirements.txt)`);
const noMypy = await pythonImportFailure("mypy");
if (noMypy) console.log(`skipping the Python type check: ${noMypy} (pip install -r tests/requirements.txt)`);

/** Runs `python3 ARGS` at the repository's root and asserts it exits 0 (its output is the failure message). */
async function assertPasses(args: string[]): Promise<void> {
  const root = new URL("..", import.meta.url).pathname;
  const out = await new Deno.Command("python3", { args, cwd: root, stdin: "null" }).output();
  const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
  assertEquals(out.code, 0, text);
}

Deno.test({
  name: "kernels/torch passes ruff",
  ignore: missing !== undefined,
  fn: () => assertPasses(["-m", "ruff", "check", "--no-cache", "kernels/torch"]),
});

Deno.test({
  name: "kernels/torch passes mypy --strict (kernels/torch/mypy.ini)",
  ignore: noMypy !== undefined,
  fn: () => assertPasses(["-m", "mypy", "--config-file", "kernels/torch/mypy.ini", "-p", "kernels.torch"]),
});
