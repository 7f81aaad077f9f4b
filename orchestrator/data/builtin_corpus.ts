// Built-in corpora that need no download. `deno-corpus`: the TypeScript declarations and JSDoc of the Deno runtime
// this process runs on (`deno types`, about 0.7 MB of real English prose and code), cut into one document per
// top-level declaration with its doc comment. It exists wherever Deno does, and its document lengths are long-tailed
// like web text (with Deno 2.9.6: 1,310 documents, median 339 bytes, 90th percentile 1,159, longest 15,353).

import { UserError } from "../errors.ts";
import type { DatasetManifest } from "./dataset_format.ts";
import { prepareDataset, type PrepareProgress } from "./prepare.ts";

/** Names of the built-in corpora. */
export const BUILTIN_DATASETS = ["deno-corpus"] as const;
/** A built-in corpus name. */
export type BuiltinDataset = typeof BUILTIN_DATASETS[number];

/** The text of `deno types` from this process's Deno binary. */
export async function denoTypesText(): Promise<string> {
  let out: Deno.CommandOutput;
  try {
    out = await new Deno.Command(Deno.execPath(), { args: ["types"], stdout: "piped", stderr: "piped" }).output();
  } catch (e) {
    throw new UserError(`cannot run \`${Deno.execPath()} types\` to build the deno-corpus: ${(e as Error).message}`);
  }
  if (!out.success) {
    throw new UserError(`\`deno types\` failed: ${new TextDecoder().decode(out.stderr).trim().split("\n")[0]}`);
  }
  return new TextDecoder().decode(out.stdout);
}

/** Builds a built-in corpus into `out` (a dataset directory). */
export async function buildBuiltinDataset(
  name: BuiltinDataset,
  out: string,
  onProgress?: (p: PrepareProgress) => void,
): Promise<DatasetManifest> {
  if (name !== "deno-corpus") throw new UserError(`unknown built-in dataset "${name}"; known: ${BUILTIN_DATASETS}`);
  const text = await denoTypesText();
  const tmp = await Deno.makeTempFile({ prefix: "flexsp-deno-types-", suffix: ".d.ts" });
  try {
    await Deno.writeTextFile(tmp, text);
    const bytes = new TextEncoder().encode(text).length;
    const { manifest } = await prepareDataset({
      input: tmp,
      out,
      format: "text",
      split: "code",
      overwrite: true,
      onProgress,
      source: {
        kind: "builtin",
        input: `deno-corpus: deno types of Deno ${Deno.version.deno}`,
        split: "code",
        inputBytes: bytes,
      },
    });
    return manifest;
  } finally {
    await Deno.remove(tmp).catch(() => {});
  }
}
