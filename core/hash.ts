// sha256 in hex: of bytes or text, of a file (streamed), and an incremental hasher; the one place the digest is made.

import { createHash, type Hash } from "node:crypto";

/** Hex sha256 of bytes or of a string's UTF-8. */
export function sha256Hex(data: Uint8Array | string): string {
  return createHash("sha256").update(data).digest("hex");
}

/** An incremental sha256 (`update` chunk by chunk, then `digest("hex")`). */
export function sha256Hasher(): Hash {
  return createHash("sha256");
}

/** Hex sha256 of a file, streamed (any size). */
export async function fileSha256(path: string): Promise<string> {
  const h = sha256Hasher();
  using f = await Deno.open(path, { read: true });
  for await (const chunk of f.readable) h.update(chunk);
  return h.digest("hex");
}
