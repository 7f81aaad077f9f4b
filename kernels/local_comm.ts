// An in-process implementation of `GroupComm`: d SP ranks running as concurrent async calls in one process
// exchange their all-to-all chunks through shared mailboxes. For tests and single-process runs.

import type { GroupComm } from "./group_comm.ts";

/** Creates the `GroupComm`s of one in-process group of `size` ranks (index = SP rank). */
export function localGroup(size: number, timeoutMs = 30_000): GroupComm[] {
  // inbox[dst][src]: queue of chunks sent from src to dst, with their tags.
  const inbox: { tag: string; data: Float32Array }[][][] = Array.from(
    { length: size },
    () => Array.from({ length: size }, () => []),
  );
  const waiters: (() => void)[][] = Array.from({ length: size }, () => []);
  const wake = (r: number) => {
    const w = waiters[r];
    waiters[r] = [];
    for (const f of w) f();
  };
  return Array.from({ length: size }, (_, me): GroupComm => ({
    size,
    rank: me,
    async allToAll(chunks: Float32Array[], tag: string): Promise<Float32Array[]> {
      if (chunks.length !== size) throw new Error(`allToAll ${tag}: ${chunks.length} chunks for ${size} ranks`);
      for (let dst = 0; dst < size; dst++) {
        if (dst === me) continue;
        inbox[dst][me].push({ tag, data: chunks[dst].slice() });
        wake(dst);
      }
      const out: Float32Array[] = new Array(size);
      out[me] = chunks[me];
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        let missing = 0;
        for (let src = 0; src < size; src++) {
          if (src === me || out[src]) continue;
          const q = inbox[me][src];
          if (q.length === 0) {
            missing++;
            continue;
          }
          const m = q.shift()!;
          if (m.tag !== tag) throw new Error(`allToAll: rank ${me} expected "${tag}" from ${src}, got "${m.tag}"`);
          out[src] = m.data;
        }
        if (missing === 0) return out;
        const left = deadline - Date.now();
        if (left <= 0) throw new Error(`allToAll ${tag}: rank ${me} timed out after ${timeoutMs} ms`);
        await new Promise<void>((resolve) => {
          const t = setTimeout(resolve, left);
          waiters[me].push(() => {
            clearTimeout(t);
            resolve();
          });
        });
      }
    },
  }));
}
