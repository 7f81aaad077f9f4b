// Whether this machine's `python3` imports some modules: the tests that need Python packages (torch, the oracles)
// skip with the reason when it does not.

/** Why `python3 -c "import MODULES"` fails here (its last stderr line, or that python3 does not run), else undefined. */
export async function pythonImportFailure(modules: string): Promise<string | undefined> {
  try {
    const out = await new Deno.Command("python3", {
      args: ["-c", `import ${modules}`],
      stdin: "null",
      stdout: "null",
      stderr: "piped",
    }).output();
    if (out.success) return undefined;
    return new TextDecoder().decode(out.stderr).trim().split("\n").pop() ?? `exit code ${out.code}`;
  } catch (e) {
    return `python3 does not run (${(e as Error).message})`;
  }
}
