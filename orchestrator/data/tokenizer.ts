// Tokenizers of `data prepare`: the byte-level default (one token per UTF-8 byte, vocabulary 256) and Hugging Face
// `tokenizer.json` files, loaded locally with `@huggingface/tokenizers` (pure TypeScript, no network).
//
// A Hugging Face tokenizer encodes with its post-processor (`add_special_tokens`, e.g. Llama's BOS template); then
// `tokenizer_config.json`'s `add_bos_token` / `add_eos_token` add BOS / EOS where the template did not already.
// The identity of a tokenizer (`hash`) is sha256 over its tokenizer.json and tokenizer_config.json, so a model
// directory holding the same two files has the same identity (see `tokenizerIdentity`).

import { Tokenizer as HfTokenizer } from "@huggingface/tokenizers";
import { UserError } from "../errors.ts";
import { sha256Hex } from "../../core/hash.ts";

/** A special token as the manifest records it. */
export interface SpecialToken {
  token: string;
  id: number;
}

/** What a dataset's manifest records about its tokenizer. */
export interface TokenizerInfo {
  /** `bytes`: UTF-8 bytes; `huggingface`: a tokenizer.json. */
  kind: "bytes" | "huggingface";
  /** sha256 identity (see the file header); `bytes` for the byte tokenizer. */
  hash: string;
  /** Number of token ids (the largest id plus one). */
  vocab: number;
  /** Where it was loaded from (absolute path of tokenizer.json), for humans. */
  path?: string;
  /** The BOS / EOS tokens, and whether each document gets them. */
  special: {
    bos?: SpecialToken;
    eos?: SpecialToken;
    pad?: SpecialToken;
    unk?: SpecialToken;
    addBos: boolean;
    addEos: boolean;
  };
}

/** A tokenizer `prepare` can use. */
export interface DocumentTokenizer {
  info: TokenizerInfo;
  /** Token ids of one document, BOS/EOS included per `info.special`. */
  encode(text: string): number[];
  /** Text of token ids (for previews). */
  decode(ids: ArrayLike<number>): string;
}

/** Bytes per token in the token file for a vocabulary: uint16 below 65,536 ids, else uint32. */
export function tokenBytesFor(vocab: number): 2 | 4 {
  return vocab <= 65536 ? 2 : 4;
}

/** The byte-level tokenizer (the default). */
export function bytesTokenizer(): DocumentTokenizer {
  const enc = new TextEncoder(), dec = new TextDecoder();
  return {
    info: { kind: "bytes", hash: "bytes", vocab: 256, special: { addBos: false, addEos: false } },
    encode: (text) => Array.from(enc.encode(text)),
    decode: (ids) => dec.decode(Uint8Array.from(ids as ArrayLike<number>)),
  };
}

/** The tokenizer.json and tokenizer_config.json of a `--tokenizer` argument (a file or a model directory). */
async function tokenizerFiles(path: string): Promise<{ json: string; config?: string }> {
  let st: Deno.FileInfo;
  try {
    st = await Deno.stat(path);
  } catch {
    throw new UserError(`--tokenizer ${path}: no such file or directory; pass a tokenizer.json or a model directory`);
  }
  const json = st.isDirectory ? `${path.replace(/\/+$/, "")}/tokenizer.json` : path;
  if (st.isDirectory && !await Deno.stat(json).then((s) => s.isFile, () => false)) {
    throw new UserError(`--tokenizer ${path}: the directory holds no tokenizer.json`);
  }
  const dir = json.includes("/") ? json.slice(0, json.lastIndexOf("/")) : ".";
  const config = `${dir}/tokenizer_config.json`;
  return {
    json: await Deno.realPath(json),
    config: await Deno.stat(config).then((s) => (s.isFile ? config : undefined), () => undefined),
  };
}

async function readJson(path: string, what: string): Promise<{ bytes: Uint8Array; value: Record<string, unknown> }> {
  const bytes = await Deno.readFile(path);
  try {
    const value = JSON.parse(new TextDecoder().decode(bytes));
    if (value === null || typeof value !== "object" || Array.isArray(value)) throw new Error("not a JSON object");
    return { bytes, value };
  } catch (e) {
    throw new UserError(`${path}: not a valid ${what} (${(e as Error).message})`);
  }
}

/** The identity hash of a tokenizer: sha256 over the sha256s of tokenizer.json and tokenizer_config.json. */
export async function tokenizerIdentity(path: string): Promise<string> {
  const f = await tokenizerFiles(path);
  const a = sha256Hex(await Deno.readFile(f.json));
  const b = f.config ? sha256Hex(await Deno.readFile(f.config)) : "none";
  return sha256Hex(`hf-tokenizer/${a}/${b}`);
}

/** A token name from tokenizer_config (a string, or an AddedToken object `{content: ...}`). */
function tokenName(v: unknown): string | undefined {
  if (typeof v === "string") return v;
  if (v && typeof v === "object" && typeof (v as { content?: unknown }).content === "string") {
    return (v as { content: string }).content;
  }
  return undefined;
}

/** Loads a Hugging Face tokenizer (see the file header); errors name the file. */
export async function loadTokenizer(path: string): Promise<DocumentTokenizer> {
  const files = await tokenizerFiles(path);
  const json = await readJson(files.json, "tokenizer.json");
  const config = files.config ? (await readJson(files.config, "tokenizer_config.json")).value : {};
  let tk: HfTokenizer;
  try {
    tk = new HfTokenizer(json.value, config);
  } catch (e) {
    throw new UserError(`${files.json}: cannot load the tokenizer (${(e as Error).message})`);
  }
  let vocab = 0;
  for (const id of tk.get_vocab(true).values()) if (id + 1 > vocab) vocab = id + 1;
  if (vocab === 0) throw new UserError(`${files.json}: the tokenizer has an empty vocabulary`);
  const special = (key: string): SpecialToken | undefined => {
    const name = tokenName(config[key]);
    if (name === undefined) return undefined;
    const id = tk.token_to_id(name);
    if (id === undefined) {
      throw new UserError(`${files.config}: ${key} "${name}" is not a token of ${files.json}`);
    }
    return { token: name, id };
  };
  const bos = special("bos_token"), eos = special("eos_token");
  const addBos = config.add_bos_token === true, addEos = config.add_eos_token === true;
  if (addBos && !bos) throw new UserError(`${files.config}: add_bos_token is true but bos_token is not set`);
  if (addEos && !eos) throw new UserError(`${files.config}: add_eos_token is true but eos_token is not set`);
  const info: TokenizerInfo = {
    kind: "huggingface",
    hash: await tokenizerIdentity(files.json),
    vocab,
    path: files.json,
    special: { bos, eos, pad: special("pad_token"), unk: special("unk_token"), addBos, addEos },
  };
  return {
    info,
    encode(text: string): number[] {
      const ids = tk.encode(text, { add_special_tokens: true }).ids;
      if (addBos && ids[0] !== bos!.id) ids.unshift(bos!.id);
      if (addEos && ids[ids.length - 1] !== eos!.id) ids.push(eos!.id);
      return ids;
    },
    decode: (ids) => tk.decode(Array.from(ids as ArrayLike<number>)),
  };
}
