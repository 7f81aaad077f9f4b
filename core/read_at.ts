// Reading `n` bytes at a position of an open file (positioned reads for safetensors, checkpoints, file samples).

/** The `n` bytes of `f` starting at byte `pos` (throws at an early end of file). */
export async function readAt(f: Deno.FsFile, pos: number, n: number): Promise<Uint8Array> {
  const buf = new Uint8Array(n);
  await f.seek(pos, Deno.SeekMode.Start);
  let got = 0;
  while (got < n) {
    const k = await f.read(buf.subarray(got));
    if (k === null) throw new Error("unexpected end of file");
    got += k;
  }
  return buf;
}
