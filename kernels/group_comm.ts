// The communicator an SP-group rank of the Ulysses model talks through: an all-to-all inside the group.
// Implemented by the TCP data plane (dataplane/mesh.ts), in-process for tests (local_comm.ts), and trivially
// for degree 1.

/** All-to-all inside one SP group of `size` ranks; this rank is `rank` (its SP rank, 0-based). */
export interface GroupComm {
  /** Group size (SP degree). */
  readonly size: number;
  /** This rank's position in the group. */
  readonly rank: number;
  /**
   * Sends `chunks[j]` to group member j and resolves with `received[i]` from member i (`received[rank]` is
   * `chunks[rank]`). Chunk sizes may differ per pair. Every member must call it with the same `tag`, in the
   * same order; a mismatch, a timeout or a lost peer rejects with a clear error.
   */
  allToAll(chunks: Float32Array[], tag: string): Promise<Float32Array[]>;
}

/** The communicator of a degree-1 group: the all-to-all is the identity. */
export const SOLO_GROUP: GroupComm = {
  size: 1,
  rank: 0,
  allToAll(chunks: Float32Array[]): Promise<Float32Array[]> {
    if (chunks.length !== 1) return Promise.reject(new Error("allToAll: degree-1 group needs exactly 1 chunk"));
    return Promise.resolve(chunks);
  },
};
