// The README's test command (`deno task test`): the Deno suite (`deno test -A`), then the Python unit tests of the
// PyTorch executor (`python3 -m unittest discover -s kernels/torch/tests`), skipped with the reason when python3 has
// no torch. With arguments (`deno task test tests/x_test.ts`) only those Deno tests run. Prints each suite's
// summary and a last line "== python: N passed, N failed"; exits non-zero if either suite failed.

const root = new URL("..", import.meta.url).pathname;

async function run(cmd: string, args: string[], tee: boolean): Promise<{ code: number; text: string }> {
  const child = new Deno.Command(cmd, { args, cwd: root, stdout: "piped", stderr: "piped", stdin: "null" }).spawn();
  let text = "";
  const dec = new TextDecoder();
  const pump = async (s: ReadableStream<Uint8Array>, out: typeof Deno.stdout) => {
    for await (const chunk of s) {
      text += dec.decode(chunk, { stream: true });
      if (tee) await out.write(chunk);
    }
  };
  await Promise.all([pump(child.stdout, Deno.stdout), pump(child.stderr, Deno.stderr)]);
  return { code: (await child.status).code, text };
}

/** Passed and failed counts from unittest's "Ran N tests" and "OK"/"FAILED (failures=a, errors=b, skipped=c)". */
export function unittestCounts(text: string): { passed: number; failed: number; skipped: number } | undefined {
  const ran = text.match(/^Ran (\d+) tests? in /m);
  if (!ran) return undefined;
  const n = Number(ran[1]);
  const field = (k: string) => Number(text.match(new RegExp(`${k}=(\\d+)`))?.[1] ?? 0);
  const failed = field("failures") + field("errors") + field("unexpected successes");
  const skipped = field("skipped") + field("expected failures");
  return { passed: n - failed - skipped, failed, skipped };
}

async function main(): Promise<number> {
  const deno = await run(Deno.execPath(), ["test", "-A", ...Deno.args], true);
  // deno test's own summary, e.g. "ok | 120 passed (9 steps) | 0 failed (3m)".
  const denoSummary = deno.text.split("\n").filter((l) => /\d+ passed.*\d+ failed/.test(l)).at(-1)?.trim();
  // Only the Deno suite when a subset of Deno tests was asked for.
  if (Deno.args.length > 0) return deno.code;
  let pyCode = 0;
  let pyLine: string;
  const probe = await run("python3", ["-c", "import torch"], false).catch((e) => ({ code: 1, text: String(e) }));
  if (probe.code !== 0) {
    const why = probe.text.trim().split("\n").at(-1);
    pyLine = `python: 0 passed, 0 failed (skipped: python3 -c "import torch" fails: ${why}; ` +
      "pip install -r tests/requirements.txt)";
  } else {
    console.log("\n== Python unit tests (kernels/torch/tests)");
    const py = await run("python3", [
      "-m",
      "unittest",
      "discover",
      "-s",
      "kernels/torch/tests",
      "-t",
      ".",
      "-v",
    ], true);
    const c = unittestCounts(py.text);
    pyCode = py.code;
    pyLine = c
      ? `python: ${c.passed} passed, ${c.failed} failed${c.skipped ? `, ${c.skipped} skipped` : ""}`
      : "python: 0 passed, 1 failed (unittest printed no summary)";
    if (!c && pyCode === 0) pyCode = 1;
  }
  console.log(`\n== deno: ${denoSummary ?? "no summary"}`);
  console.log(`== ${pyLine}`);
  return deno.code !== 0 ? deno.code : pyCode;
}

if (import.meta.main) Deno.exit(await main());
