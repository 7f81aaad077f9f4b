// Dataset preparation: directories, JSONL and text files become token file + index + manifest; streaming with
// progress; damaged datasets are refused; concurrent reads of the token file (as executors do) return the right
// tokens; the `deno task data` command.

import { prepareDataset } from "../../orchestrator/data/prepare.ts";
import { DATASET_FILES, readDatasetIndex, readManifest } from "../../orchestrator/data/dataset_format.ts";
import { buildBuiltinDataset } from "../../orchestrator/data/builtin_corpus.ts";
import { fileSource } from "../../kernels/token_source.ts";
import { assert, assertEquals, assertIncludes, assertThrows } from "../assert.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();
const REPO = new URL("../../", import.meta.url).pathname;

/** The documents of a dataset, as strings. */
async function documents(dir: string): Promise<string[]> {
  const ds = await readDatasetIndex(dir);
  const bytes = await Deno.readFile(ds.tokensPath);
  const dv = new DataView(bytes.buffer);
  const out: string[] = [];
  for (let d = 0; d < ds.lengths.length; d++) {
    const b = new Uint8Array(ds.lengths[d]);
    for (let i = 0; i < b.length; i++) b[i] = dv.getUint16(2 * (ds.offsets[d] + i), true);
    out.push(dec.decode(b));
  }
  return out;
}

async function withTemp(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "flexsp-data-test-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("prepare: a directory becomes one document per file (sorted, recursive; hidden, binary, empty skipped)", () =>
  withTemp(async (tmp) => {
    const src = `${tmp}/src`;
    await Deno.mkdir(`${src}/sub`, { recursive: true });
    await Deno.mkdir(`${src}/.git`);
    await Deno.writeTextFile(`${src}/b.txt`, "second file\n");
    await Deno.writeTextFile(`${src}/a.md`, "# first\n\nwith ünïcode ✓\n");
    await Deno.writeTextFile(`${src}/sub/c.ts`, "export const c = 3;\n");
    await Deno.writeTextFile(`${src}/.git/HEAD`, "hidden");
    await Deno.writeTextFile(`${src}/empty.txt`, "");
    await Deno.writeFile(`${src}/bin.dat`, Uint8Array.of(1, 2, 0, 3));
    const { manifest: m } = await prepareDataset({ input: src, out: `${tmp}/ds` });
    assertEquals(await documents(`${tmp}/ds`), [
      "# first\n\nwith ünïcode ✓\n",
      "second file\n",
      "export const c = 3;\n",
    ]);
    assertEquals(m.skipped, { empty: 1, short: 0, binaryFiles: 1 });
    assertEquals([m.documents, m.vocab, m.tokenBytes, m.tokenizer], [3, 256, 2, "bytes"]);
    assertEquals(m.tokens, enc.encode("# first\n\nwith ünïcode ✓\nsecond file\nexport const c = 3;\n").length);
    // Same input, same content hash; another input, another hash.
    const again = await prepareDataset({ input: src, out: `${tmp}/ds2` });
    assertEquals(again.manifest.contentHash, m.contentHash);
    await Deno.writeTextFile(`${src}/b.txt`, "second file!\n");
    const changed = await prepareDataset({ input: src, out: `${tmp}/ds3` });
    assert(changed.manifest.contentHash !== m.contentHash, "a changed input changes the hash");
    // An existing dataset is not replaced by accident.
    await assertThrows(() => prepareDataset({ input: src, out: `${tmp}/ds` }), "already holds a dataset");
    await prepareDataset({ input: src, out: `${tmp}/ds`, overwrite: true });
  }));

Deno.test("prepare: JSONL records, and a bad line is named by file and line", () =>
  withTemp(async (tmp) => {
    const file = `${tmp}/c.jsonl`;
    await Deno.writeTextFile(file, `{"text":"one"}\n\n{"text":"two\\nlines","id":7}\n{"text":""}\n{"text":"x"}\n`);
    const { manifest: m } = await prepareDataset({ input: file, out: `${tmp}/ds` });
    assertEquals(await documents(`${tmp}/ds`), ["one", "two\nlines"]);
    assertEquals(m.skipped, { empty: 1, short: 1, binaryFiles: 0 });
    await Deno.writeTextFile(file, `{"text":"ok"}\n{"body":"no text"}\n`);
    await assertThrows(() => prepareDataset({ input: file, out: `${tmp}/bad` }), `${file}:2: no "text" string field`);
    await Deno.writeTextFile(file, `{"text":"ok"}\nnot json\n`);
    await assertThrows(() => prepareDataset({ input: file, out: `${tmp}/bad` }), `${file}:2: not valid JSON`);
    assertEquals(await Deno.stat(`${tmp}/bad/${DATASET_FILES.manifest}`).then(() => true, () => false), false);
  }));

Deno.test("prepare: text files split by paragraph, line or code declaration", () =>
  withTemp(async (tmp) => {
    const file = `${tmp}/t.txt`;
    await Deno.writeTextFile(
      file,
      "p1 a\r\np1 b\n\n\n  \np2\n\n/** doc */\nexport function f() {\n\n  return 1;\n}\n\n// note\nconst x = 1;\n",
    );
    await prepareDataset({ input: file, out: `${tmp}/p` });
    assertEquals(await documents(`${tmp}/p`), [
      "p1 a\np1 b",
      "p2",
      "/** doc */\nexport function f() {",
      "  return 1;\n}",
      "// note\nconst x = 1;",
    ]);
    await prepareDataset({ input: file, out: `${tmp}/l`, split: "line" });
    assertEquals((await documents(`${tmp}/l`)).length, 8); // 9 lines, "}" is shorter than min_length 2
    await prepareDataset({ input: file, out: `${tmp}/c`, split: "code" });
    assertEquals(await documents(`${tmp}/c`), [
      "p1 a\np1 b\n\n\n\np2",
      "/** doc */\nexport function f() {\n\n  return 1;\n}\n\n// note\nconst x = 1;",
    ]);
    await Deno.writeTextFile(file, "const a = 1;\n\nconst b = 2;\ninterface I {}\n\n# Heading\ntext\n");
    await prepareDataset({ input: file, out: `${tmp}/c2`, split: "code" });
    assertEquals(await documents(`${tmp}/c2`), ["const a = 1;", "const b = 2;\ninterface I {}", "# Heading\ntext"]);
  }));

Deno.test("prepare: streams a large input with progress; the index and tokens round-trip", () =>
  withTemp(async (tmp) => {
    const file = `${tmp}/big.txt`;
    const f = await Deno.open(file, { write: true, create: true });
    let expectedDocs = 0, expectedTokens = 0;
    for (let chunk = 0; chunk < 40; chunk++) {
      let text = "";
      for (let i = 0; i < 2000; i++) {
        const n = 1 + ((chunk * 2000 + i) * 7919) % 97;
        const para = `paragraph ${chunk}.${i} ` + "x".repeat(n);
        text += para + "\n\n";
        expectedDocs++;
        expectedTokens += para.length;
      }
      await f.write(enc.encode(text));
    }
    f.close();
    const size = (await Deno.stat(file)).size;
    const seen: number[] = [];
    const { manifest: m } = await prepareDataset({
      input: file,
      out: `${tmp}/ds`,
      progressMs: 0,
      onProgress: (p) => seen.push(p.bytesRead),
    });
    assertEquals([m.documents, m.tokens], [expectedDocs, expectedTokens]);
    assert(seen.length > 10, `progress reported ${seen.length} times`);
    assertEquals(seen[seen.length - 1], size);
    assert(seen.every((v, i) => i === 0 || v >= seen[i - 1]), "progress only grows");
    const ds = await readDatasetIndex(`${tmp}/ds`);
    assertEquals(ds.offsets[0], 0);
    for (let d = 1; d < ds.lengths.length; d++) assertEquals(ds.offsets[d], ds.offsets[d - 1] + ds.lengths[d - 1]);
    // Executors read a group's sequences concurrently from one file handle: every read returns its own tokens.
    const src = await fileSource(ds.tokensPath, 2);
    try {
      const docs = Array.from({ length: 200 }, (_, k) => (k * 397) % ds.lengths.length);
      const got = await Promise.all(
        docs.map((d) => src.read({ id: d, offset: ds.offsets[d], length: ds.lengths[d] })),
      );
      const all = await Deno.readFile(ds.tokensPath);
      const dv = new DataView(all.buffer);
      docs.forEach((d, k) => {
        for (let i = 0; i < got[k].length; i++) {
          if (got[k][i] !== dv.getUint16(2 * (ds.offsets[d] + i), true)) {
            throw new Error(`document ${d}: token ${i} differs (concurrent reads mixed up)`);
          }
        }
      });
    } finally {
      src.close();
    }
  }));

Deno.test("a damaged dataset is refused with a clear message; a directory without a manifest is not a dataset", () =>
  withTemp(async (tmp) => {
    await Deno.writeTextFile(`${tmp}/t.txt`, "alpha beta\n\ngamma delta\n");
    await prepareDataset({ input: `${tmp}/t.txt`, out: `${tmp}/ds` });
    const idx = `${tmp}/ds/${DATASET_FILES.index}`;
    const bytes = await Deno.readFile(idx);
    bytes[8] ^= 1;
    await Deno.writeFile(idx, bytes);
    await assertThrows(() => readDatasetIndex(`${tmp}/ds`), "sha256 differs from the manifest");
    bytes[8] ^= 1;
    await Deno.writeFile(idx, bytes);
    await Deno.truncate(`${tmp}/ds/${DATASET_FILES.tokens}`, 6);
    await assertThrows(() => readDatasetIndex(`${tmp}/ds`), "the dataset is damaged");
    await Deno.remove(`${tmp}/ds/${DATASET_FILES.manifest}`);
    await assertThrows(() => readManifest(`${tmp}/ds`), "not a dataset (no manifest.json)");
  }));

Deno.test("the built-in deno-corpus: real text from `deno types`, long-tailed lengths", () =>
  withTemp(async (tmp) => {
    const m = await buildBuiltinDataset("deno-corpus", `${tmp}/deno`);
    assert(m.documents > 500, `${m.documents} documents`);
    assert(m.lengths.p50 < m.lengths.mean, "mean above median (a long tail)");
    assert(m.lengths.p99 > 5 * m.lengths.p50 && m.lengths.max > 20 * m.lengths.p50, JSON.stringify(m.lengths));
    const docs = await documents(`${tmp}/deno`);
    assert(docs.some((d) => d.includes("Deno.")), "holds Deno's declarations");
    assertEquals(m.source.kind, "builtin");
  }));

Deno.test("deno task data prepare / info --verify", () =>
  withTemp(async (tmp) => {
    await Deno.writeTextFile(`${tmp}/in.jsonl`, `{"text":"hello world"}\n{"text":"second record"}\n`);
    const run = (...args: string[]) =>
      new Deno.Command(Deno.execPath(), {
        args: ["run", "-A", `${REPO}orchestrator/cli/data.ts`, ...args],
        stdout: "piped",
        stderr: "piped",
      }).output();
    const p = await run("prepare", "--input", `${tmp}/in.jsonl`, "--out", `${tmp}/ds`);
    assertEquals(p.code, 0, dec.decode(p.stderr));
    assertIncludes(dec.decode(p.stdout), "2 documents, 24 tokens", "content hash");
    const i = await run("info", `${tmp}/ds`, "--verify");
    assertEquals(i.code, 0, dec.decode(i.stderr));
    assertIncludes(dec.decode(i.stdout), "documents  2", "verify: tokens.bin and index.bin match the manifest");
    const tok = await Deno.readFile(`${tmp}/ds/${DATASET_FILES.tokens}`);
    tok[0] ^= 1;
    await Deno.writeFile(`${tmp}/ds/${DATASET_FILES.tokens}`, tok);
    const bad = await run("info", `${tmp}/ds`, "--verify");
    assertEquals(bad.code, 1);
    assertIncludes(dec.decode(bad.stdout), "verify: FAILED");
    const missing = await run("prepare", "--input", `${tmp}/nope`, "--out", `${tmp}/x`);
    assertEquals(missing.code, 1);
    assertEquals(dec.decode(missing.stderr).trim(), `error: --input ${tmp}/nope: no such file or directory`);
  }));
