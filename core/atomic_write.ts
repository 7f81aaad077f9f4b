// Durable file writes: a temporary file beside the target, fsync, rename. Nothing is ever left half-written.

/** Options of {@link writeAtomic}. */
export interface WriteAtomicOptions {
  /** Create the directory first. */
  mkdir?: boolean;
  /** Turns a failure's message into the error to throw (e.g. a UserError naming what was written). */
  error?: (message: string) => Error;
}

/** Writes `data` to `path` atomically; `mkdir` creates the directory first. Removes the temporary file on failure. */
export async function writeAtomic(
  path: string,
  data: Uint8Array | string,
  opts: WriteAtomicOptions = {},
): Promise<void> {
  try {
    await write(path, data, opts);
  } catch (e) {
    throw opts.error ? opts.error((e as Error).message) : e;
  }
}

async function write(path: string, data: Uint8Array | string, opts: WriteAtomicOptions): Promise<void> {
  if (opts.mkdir) {
    const dir = path.includes("/") ? path.slice(0, path.lastIndexOf("/")) : "";
    if (dir) await Deno.mkdir(dir, { recursive: true });
  }
  const bytes = typeof data === "string" ? new TextEncoder().encode(data) : data;
  const tmp = `${path}.tmp-${Deno.pid}-${crypto.randomUUID().slice(0, 8)}`;
  try {
    const f = await Deno.open(tmp, { write: true, create: true, truncate: true });
    try {
      let o = 0;
      while (o < bytes.length) o += await f.write(bytes.subarray(o));
      await f.sync();
    } finally {
      f.close();
    }
    await Deno.rename(tmp, path);
  } catch (e) {
    await Deno.remove(tmp).catch(() => {});
    throw e;
  }
}

/** fsyncs a directory so a rename inside it is durable (best effort where the OS refuses). */
export async function fsyncDir(dir: string): Promise<void> {
  try {
    const d = await Deno.open(dir, { read: true });
    try {
      await d.sync();
    } finally {
      d.close();
    }
  } catch { /* not supported here */ }
}
