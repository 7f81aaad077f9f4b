// The training data of a config: its dataset (built on the spot for a built-in corpus), the sequence table after the
// long-sequence policy, and a sampler factory; or, with only `training.lengths`, synthetic lengths.

import { UserError } from "../errors.ts";
import type { Config } from "../config/types.ts";
import { buildBuiltinDataset } from "./builtin_corpus.ts";
import { datasetExists, type DatasetIndex, readDatasetIndex } from "./dataset_format.ts";
import type { PrepareProgress } from "./prepare.ts";
import { checkDatasetForModel, type ModelVocabulary } from "./model_match.ts";
import {
  type BatchSampler,
  buildSequenceTable,
  DatasetSampler,
  type SamplerState,
  type SequenceTable,
  SyntheticSampler,
} from "./sampler.ts";

/** What a run trains on. */
export interface TrainingData {
  kind: "dataset" | "synthetic";
  dataset?: DatasetIndex;
  table?: SequenceTable;
  /** Identity recorded in checkpoints: the dataset's content hash, or `synthetic:<distribution>`. */
  hash: string;
  /** One line for the log. */
  description: string;
  /** Facts worth a log line (long documents split or dropped). */
  notes: string[];
  /** A sampler at the start, or at a saved state. */
  sampler(state?: SamplerState): BatchSampler;
}

/** The model vocabulary of a config's preset or shape (no tokenizer of its own). */
export function presetVocabulary(config: Config): ModelVocabulary {
  const p = config.model.preset;
  return {
    vocab: config.model.vocab,
    source: p ? `model.preset ${p}, vocab ${config.model.vocab}` : `model.vocab ${config.model.vocab}`,
  };
}

/**
 * Opens (building if needed) the data of a config. `model` is what the model says about its vocabulary (a
 * checkpoint's config and tokenizer); default: the preset's or shape's `model.vocab`.
 */
export async function openTrainingData(
  config: Config,
  log: (line: string) => void = () => {},
  onProgress?: (p: PrepareProgress) => void,
  model?: ModelVocabulary,
): Promise<TrainingData> {
  const t = config.training;
  const seed = t.seed;
  const maxSeq = config.model.maxSeq;
  if (t.dataset) {
    if (!await datasetExists(t.dataset)) {
      if (!t.datasetBuiltin) {
        throw new UserError(
          `${config.source}: training.dataset ${t.dataset} holds no dataset; build it with ` +
            `\`deno task data prepare --input PATH --out ${t.dataset}\``,
        );
      }
      log(`building the ${t.datasetBuiltin} dataset in ${t.dataset} (once) ...`);
      const m = await buildBuiltinDataset(t.datasetBuiltin, t.dataset, onProgress);
      log(`built ${m.documents} documents, ${m.tokens} tokens (${m.source.input})`);
    }
    const dataset = await readDatasetIndex(t.dataset);
    const m = dataset.manifest;
    checkDatasetForModel(dataset.dir, m, model ?? presetVocabulary(config));
    const table = buildSequenceTable(dataset, maxSeq, t.longSequences);
    if (table.lengths.length === 0) {
      throw new UserError(`${t.dataset}: no usable sequence (every document is shorter than 2 tokens or dropped)`);
    }
    const notes: string[] = [];
    if (table.longDocs > 0) {
      notes.push(
        `${table.longDocs} of ${m.documents} documents are longer than model.max_seq ${maxSeq}: ` +
          (t.longSequences === "split"
            ? `split into pieces (training.long_sequences: split), ${table.lengths.length} sequences in all`
            : `dropped (training.long_sequences: drop), ${table.lengths.length} sequences left`),
      );
    }
    return {
      kind: "dataset",
      dataset,
      table,
      hash: m.contentHash,
      description: `${dataset.dir}: ${m.documents} documents, ${m.tokens} tokens, median ${m.lengths.p50}, ` +
        `p99 ${m.lengths.p99}, longest ${m.lengths.max} (${m.source.kind}: ${m.source.input})`,
      notes,
      sampler: (state) => new DatasetSampler(table, seed, state),
    };
  }
  if (t.lengths) {
    const name = t.lengths;
    return {
      kind: "synthetic",
      hash: `synthetic:${name}`,
      description: `no dataset: synthetic tokens with ${name} sequence lengths (training.lengths)`,
      notes: [],
      sampler: (state) => new SyntheticSampler(name, maxSeq, seed, state),
    };
  }
  throw new UserError(
    `${config.source}: nothing to train on: set training.dataset (a directory made by \`deno task data prepare\`) ` +
      `or training.lengths (wikipedia, github, commoncrawl: synthetic tokens)`,
  );
}
