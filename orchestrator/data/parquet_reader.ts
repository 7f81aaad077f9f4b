// Reading one text column of Parquet files (the Hugging Face Hub's format) with `hyparquet` and its compressors
// (snappy, gzip, zstd, brotli, lz4), row group by row group: memory holds one row group's column, not the file.
// A file or a directory of shards (every `*.parquet` below it, sorted by path).

import { parquetMetadataAsync, parquetReadObjects } from "hyparquet";
import { compressors } from "hyparquet-compressors";
import { UserError } from "../errors.ts";

/** hyparquet's view of a file: its size and byte ranges read on demand. */
interface AsyncBuffer {
  byteLength: number;
  slice(start: number, end?: number): Promise<ArrayBuffer>;
}

async function fileBuffer(file: Deno.FsFile, size: number): Promise<AsyncBuffer> {
  let queue: Promise<unknown> = Promise.resolve();
  const readRange = async (start: number, end: number): Promise<ArrayBuffer> => {
    const buf = new Uint8Array(end - start);
    await file.seek(start, Deno.SeekMode.Start);
    let got = 0;
    while (got < buf.length) {
      const n = await file.read(buf.subarray(got));
      if (n === null) throw new Error(`unexpected end of file at byte ${start + got}`);
      got += n;
    }
    return buf.buffer;
  };
  return await Promise.resolve({
    byteLength: size,
    slice(start: number, end?: number): Promise<ArrayBuffer> {
      const e = Math.min(end ?? size, size);
      const r = queue.then(() => readRange(start, Math.max(start, e)));
      queue = r.catch(() => {});
      return r;
    },
  });
}

/** Parquet files of a `--input`: the file itself, or every `*.parquet` under a directory (sorted). */
export async function parquetFiles(input: string, list: (dir: string) => Promise<string[]>): Promise<string[]> {
  const st = await Deno.stat(input);
  if (!st.isDirectory) return [input];
  const files = (await list(input)).filter((f) => /\.parquet$/i.test(f));
  if (files.length === 0) throw new UserError(`--input ${input}: no *.parquet file in the directory`);
  return files;
}

/**
 * Calls `onText` for each row's `column` value, row group by row group; `onRowGroup` after each with the compressed
 * bytes of that row group. A null value counts as an empty document. Stops early when `onText` returns false.
 */
export async function readParquetColumn(
  path: string,
  column: string,
  onText: (text: string) => boolean | void,
  onRowGroup: (bytes: number) => Promise<void> | void,
): Promise<void> {
  let file: Deno.FsFile;
  try {
    file = await Deno.open(path, { read: true });
  } catch (e) {
    throw new UserError(`${path}: cannot read (${(e as Error).message})`);
  }
  try {
    const size = (await file.stat()).size;
    const buffer = await fileBuffer(file, size);
    // deno-lint-ignore no-explicit-any
    let metadata: any;
    try {
      metadata = await parquetMetadataAsync(buffer);
    } catch (e) {
      throw new UserError(`${path}: not a readable Parquet file (${(e as Error).message})`);
    }
    // deno-lint-ignore no-explicit-any
    const names = (metadata.schema as any[]).slice(1).map((s) => s.name as string);
    if (!names.includes(column)) {
      throw new UserError(
        `${path}: no column "${column}"; it has ${names.map((n) => `"${n}"`).join(", ")}; pick one with --field`,
      );
    }
    let rowStart = 0;
    for (let g = 0; g < metadata.row_groups.length; g++) {
      const rg = metadata.row_groups[g];
      const rows = Number(rg.num_rows);
      // deno-lint-ignore no-explicit-any
      let objs: any[];
      try {
        objs = await parquetReadObjects({
          file: buffer,
          metadata,
          columns: [column],
          rowStart,
          rowEnd: rowStart + rows,
          compressors,
        });
      } catch (e) {
        throw new UserError(`${path}: row group ${g} cannot be read (${(e as Error).message}); the file is damaged`);
      }
      for (let r = 0; r < objs.length; r++) {
        const v = objs[r][column];
        if (v !== null && v !== undefined && typeof v !== "string") {
          throw new UserError(
            `${path}: row ${
              rowStart + r
            }: column "${column}" holds ${typeof v}, not text; pick a text column with --field`,
          );
        }
        if (onText(v ?? "") === false) return;
      }
      rowStart += rows;
      await onRowGroup(Number(rg.total_compressed_size ?? rg.total_byte_size ?? 0));
    }
  } finally {
    try {
      file.close();
    } catch { /* closed */ }
  }
}
