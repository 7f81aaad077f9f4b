// Shared command-line handling: `node:util` parseArgs with the flags every command takes (--set, --help).

import { parseArgs } from "node:util";
import { UserError } from "../errors.ts";

type OptionSpec = { type: "string" | "boolean"; multiple?: boolean; short?: string; default?: string | boolean };

/** Parses argv with `options` plus the common `--set PATH=VALUE` (repeatable) and `--help`. */
export function parseCommand<T extends Record<string, OptionSpec>>(
  argv: string[],
  usage: string,
  options: T,
): { values: Record<string, string | boolean | string[] | undefined>; positionals: string[]; sets: string[] } {
  // A negative number after a flag that takes a value is that value (`--limit -3`), so the flag's own check can say
  // what is wrong with it; parseArgs would call it an ambiguous argument.
  const takesValue = new Set([
    "set",
    ...Object.entries(options).filter(([, o]) => o.type === "string").map(([k]) => k),
  ]);
  const args: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i], next = argv[i + 1];
    if (a.startsWith("--") && takesValue.has(a.slice(2)) && next !== undefined && /^-\d/.test(next)) {
      args.push(`${a}=${next}`);
      i++;
    } else args.push(a);
  }
  let parsed;
  try {
    parsed = parseArgs({
      args,
      options: { ...options, set: { type: "string", multiple: true }, help: { type: "boolean", short: "h" } },
      allowPositionals: true,
      strict: true,
    });
  } catch (e) {
    throw new UserError(`${(e as Error).message.split("\n")[0]}\n\n${usage}`);
  }
  const values = parsed.values as Record<string, string | boolean | string[] | undefined>;
  if (values.help) {
    console.log(usage);
    Deno.exit(0);
  }
  return {
    values,
    positionals: parsed.positionals,
    sets: (values.set as string[] | undefined) ?? [],
  };
}

/** Parses a positive integer flag value with a clear error. */
export function positiveInt(name: string, value: string | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new UserError(`--${name}: expected a positive integer, got "${value}"`);
  return n;
}
