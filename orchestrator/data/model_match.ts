// Whether a dataset can train a model: its token ids must lie in the model's vocabulary, and when the model comes
// with its own tokenizer (a Hugging Face checkpoint: `model.from`), the dataset must have been tokenised with that
// tokenizer. `launch` refuses a mismatch before it creates a run directory.

import { UserError } from "../errors.ts";
import type { DatasetManifest } from "./dataset_format.ts";
import { tokenizerIdentity } from "./tokenizer.ts";

/** What a model says about its vocabulary: from a preset or shape (`vocab` only), or from a checkpoint directory. */
export interface ModelVocabulary {
  /** Embedding rows: every token id must be below it. */
  vocab: number;
  /** Where `vocab` comes from, for messages (e.g. `model.preset gpt-tiny`, `model.from ./llama/config.json`). */
  source: string;
  /** The identity hash of the model's tokenizer (`tokenizerIdentity` of its directory), when it has one. */
  tokenizerHash?: string;
  /** The model's tokenizer.json, for messages. */
  tokenizerPath?: string;
}

/** The vocabulary of a model checkpoint directory holding tokenizer.json (for `model.from`). */
export async function modelVocabularyOf(dir: string, vocab: number, source: string): Promise<ModelVocabulary> {
  return { vocab, source, tokenizerHash: await tokenizerIdentity(dir), tokenizerPath: `${dir}/tokenizer.json` };
}

/** One-line description of a dataset's tokenizer. */
function describe(m: DatasetManifest): string {
  if (m.tokenizer === "bytes") return "the byte tokenizer (vocabulary 256)";
  const t = m.tokenizerInfo;
  return `${t?.path ?? "a Hugging Face tokenizer"} (vocabulary ${m.vocab}, hash ${t?.hash.slice(0, 12) ?? "?"})`;
}

/** Throws a UserError naming both sides and the fix when `m` cannot train a model of `model`'s vocabulary. */
export function checkDatasetForModel(datasetDir: string, m: DatasetManifest, model: ModelVocabulary): void {
  const prepareHint = (tk: string) =>
    `prepare the dataset again with \`deno task data prepare --input ... --tokenizer ${tk} --out ${datasetDir}\``;
  if (model.tokenizerHash !== undefined) {
    const hash = m.tokenizer === "bytes" ? "bytes" : m.tokenizerInfo?.hash;
    if (hash !== model.tokenizerHash) {
      throw new UserError(
        `${datasetDir}: tokenised with ${describe(m)}, but the model (${model.source}) uses ` +
          `${model.tokenizerPath ?? "another tokenizer"} (hash ${model.tokenizerHash.slice(0, 12)}); ` +
          prepareHint(model.tokenizerPath ?? "MODEL_DIR"),
      );
    }
  }
  if (m.vocab > model.vocab) {
    throw new UserError(
      `${datasetDir}: tokenised with ${describe(m)}, whose ${m.vocab} token ids do not fit the model's vocabulary ` +
        `of ${model.vocab} (${model.source}); use a model with vocab >= ${m.vocab} (e.g. --set model.vocab=${m.vocab}) ` +
        `or ${prepareHint("PATH")} for a tokenizer of at most ${model.vocab} ids`,
    );
  }
}
