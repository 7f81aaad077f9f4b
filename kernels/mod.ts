// Public API of the TypeScript executors' side of kernels/: the backend interface, the CPU reference backend,
// the model definition, the Ulysses SP model, packing, the data plane and the executor logic. (The WebGPU
// backend lives in kernels/webgpu/ and is loaded on demand by the executor process.)

export type {
  AdamWOptions,
  AttentionArgs,
  AttentionBackwardArgs,
  AttentionForwardArgs,
  Backend,
  CrossEntropyArgs,
  EmbeddingArgs,
  HeadLayoutArgs,
  IntTensor,
  LayerNormBackwardArgs,
  LayerNormForwardArgs,
  MatmulOptions,
  Tensor,
} from "./backend.ts";
export { VIEW_ALIGN } from "./backend.ts";
export { CpuBackend, type CpuBackendOptions, createCpuBackend } from "./cpu/backend.ts";
export {
  INIT_STD,
  initParams,
  type LayerSlices,
  LN_EPS,
  type ModelShape,
  type ParamLayout,
  paramLayout,
  type ParamSlice,
  Prng,
  validateShape,
} from "./model.ts";
export { type PackedGroup, packGroup, type RankSlice, rankSlice } from "./packing.ts";
export { type GroupComm, SOLO_GROUP } from "./group_comm.ts";
export { localGroup } from "./local_comm.ts";
export { type RunOptions, type RunResult, UlyssesGpt } from "./ulysses_model.ts";
export { DataPlaneError, Mesh, type MeshOptions } from "./dataplane/mesh.ts";
export { checkPlan, type MyGroup } from "./step_plan.ts";
export { fileSource, syntheticSource, type TokenSource } from "./token_source.ts";
export { decodeState, encodeState, type ExecutorState, sha256Hex, writeAtomic } from "./checkpoint.ts";
export { Executor, type ExecutorOptions, type HandleResult } from "./executor.ts";
