// `data prepare --overwrite` builds the new dataset beside the old one and swaps it in only when whole: a new input
// that fails (a bad line 3,001 of a JSONL) leaves the old dataset as it was, manifest and all; a prepare that
// succeeds replaces it; a failed prepare into a new directory removes the directories it created.

import { prepareDataset } from "../../orchestrator/data/prepare.ts";
import { DATASET_FILES, readDatasetIndex, readManifest } from "../../orchestrator/data/dataset_format.ts";
import { assertEquals, assertThrows } from "../assert.ts";

Deno.test("prepare --overwrite: a failing input keeps the old dataset; a good one replaces it; no leftovers", async () => {
  const tmp = await Deno.makeTempDir({ prefix: "flexsp-overwrite-" });
  try {
    const ds = `${tmp}/ds`;
    const file = `${tmp}/in.jsonl`;
    await Deno.writeTextFile(file, `{"text":"old one"}\n{"text":"old two"}\n`);
    const old = (await prepareDataset({ input: file, out: ds })).manifest;
    const before = new Map<string, Uint8Array>();
    for await (const e of Deno.readDir(ds)) before.set(e.name, await Deno.readFile(`${ds}/${e.name}`));

    const good = Array.from({ length: 3000 }, (_, i) => JSON.stringify({ text: `document ${i}` })).join("\n");
    await Deno.writeTextFile(file, `${good}\nnot json\n`);
    await assertThrows(() => prepareDataset({ input: file, out: ds, overwrite: true }), `${file}:3001: not valid JSON`);
    const after = new Map<string, Uint8Array>();
    for await (const e of Deno.readDir(ds)) after.set(e.name, await Deno.readFile(`${ds}/${e.name}`));
    assertEquals([...after.keys()].sort(), [...before.keys()].sort(), "no temporary file left");
    for (const [name, bytes] of before) assertEquals(after.get(name), bytes, name);
    assertEquals((await readManifest(ds)).contentHash, old.contentHash);
    assertEquals((await readDatasetIndex(ds)).lengths.length, 2);

    await Deno.writeTextFile(file, `${good}\n`);
    const next = (await prepareDataset({ input: file, out: ds, overwrite: true })).manifest;
    assertEquals(next.documents, 3000);
    assertEquals((await readManifest(ds)).contentHash, next.contentHash);

    await Deno.writeTextFile(file, `not json\n`);
    await assertThrows(() => prepareDataset({ input: file, out: `${tmp}/new/deep/ds` }), "not valid JSON");
    assertEquals(await Deno.stat(`${tmp}/new`).then(() => true, () => false), false, "created directories removed");
    assertEquals(await Deno.stat(`${ds}/${DATASET_FILES.manifest}`).then(() => true, () => false), true);
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});
