// Where each node reads `model.from` (a Hugging Face directory). Local nodes use the orchestrator's path. An SSH
// node uses the same path when the files there are the same (a shared filesystem, or a copy put in place); otherwise
// a model up to `MAX_MODEL_COPY_BYTES` is copied once into the node's cache (`~/.cache/flexsp/models/<id>/`, the
// weights first, config.json last, each file renamed into place when whole) and reused by later runs. "The same" is checked without
// reading whole files: each file's size plus the sha256 of its first and last MiB (a fine-tuned checkpoint has the
// size of its base model, but not its bytes).

import { UserError } from "../errors.ts";
import { canonicalJson } from "../../core/canonical_json.ts";
import { sha256Hex } from "../../core/hash.ts";
import { readAt } from "../../core/read_at.ts";
import type { ClusterSession, NodeLaunch } from "./cluster_session.ts";
import { shQuote } from "./ssh_transport.ts";

/** Largest model directory copied to nodes automatically. */
export const MAX_MODEL_COPY_BYTES = 8 * 1024 ** 3;
/** Bytes hashed at each end of a file. */
const SAMPLE_BYTES = 1 << 20;

/** One file the executors read, as the orchestrator has it. */
export interface ModelFile {
  name: string;
  bytes: number;
  /** sha256 of the first and of the last `SAMPLE_BYTES` (the whole file when smaller). */
  head: string;
  tail: string;
}

/** The files of a model directory the executors read, and their identity. */
export interface ModelIdentity {
  dir: string;
  files: ModelFile[];
  bytes: number;
  /** 16 hex digits naming this content (the cache folder). */
  id: string;
}

/** The names of the files the torch executor reads: config.json and the safetensors weights (hf.py's rules). */
export async function modelFileNames(dir: string): Promise<string[]> {
  const exists = (p: string) => Deno.stat(`${dir}/${p}`).then(() => true, () => false);
  if (!(await exists("config.json"))) throw new UserError(`model.from: ${dir} has no config.json`);
  if (await exists("model.safetensors.index.json")) {
    let map: Record<string, string>;
    try {
      map = JSON.parse(await Deno.readTextFile(`${dir}/model.safetensors.index.json`)).weight_map;
      if (!map || typeof map !== "object") throw new Error("no weight_map");
    } catch (e) {
      throw new UserError(`model.from: ${dir}/model.safetensors.index.json: cannot read its weight_map (${e})`);
    }
    const shards = [...new Set(Object.values(map))].sort();
    for (const s of shards) {
      if (!(await exists(s))) {
        throw new UserError(
          `model.from: ${dir}/model.safetensors.index.json names shard ${s}, which is missing from ${dir} ` +
            `(download every shard the index lists)`,
        );
      }
    }
    return [...shards, "model.safetensors.index.json", "config.json"];
  }
  if (await exists("model.safetensors")) return ["model.safetensors", "config.json"];
  throw new UserError(`model.from: ${dir}: no model.safetensors or model.safetensors.index.json`);
}

async function sampleHashes(path: string, bytes: number): Promise<{ head: string; tail: string }> {
  const f = await Deno.open(path);
  try {
    const n = Math.min(SAMPLE_BYTES, bytes);
    return { head: sha256Hex(await readAt(f, 0, n)), tail: sha256Hex(await readAt(f, bytes - n, n)) };
  } finally {
    f.close();
  }
}

/** The identity of a model directory (reads 2 MiB per file at most). */
export async function modelIdentity(dir: string): Promise<ModelIdentity> {
  const files: ModelFile[] = [];
  for (const name of await modelFileNames(dir)) {
    const bytes = (await Deno.stat(`${dir}/${name}`)).size;
    files.push({ name, bytes, ...(await sampleHashes(`${dir}/${name}`, bytes)) });
  }
  return {
    dir,
    files,
    bytes: files.reduce((s, f) => s + f.bytes, 0),
    id: sha256Hex(canonicalJson(files)).slice(0, 16),
  };
}

/**
 * A shell command that prints `name size head tail` for each file under `dir` ("- -" where a file is missing);
 * `sha256sum`, `head -c` and `tail -c` are coreutils.
 */
function remoteListing(dir: string, files: ModelFile[]): string {
  return files.map((f) => {
    const p = shQuote(`${dir}/${f.name}`);
    const n = Math.min(SAMPLE_BYTES, f.bytes);
    return `if [ -f ${p} ]; then echo ${shQuote(f.name)} $(stat -c %s ${p}) ` +
      `$(head -c ${n} ${p} | sha256sum | cut -d' ' -f1) $(tail -c ${n} ${p} | sha256sum | cut -d' ' -f1); ` +
      `else echo ${shQuote(f.name)} - - -; fi`;
  }).join("; ");
}

/** Whether `dir` on the node holds exactly the model's files. */
async function sameThere(node: NodeLaunch, dir: string, model: ModelIdentity): Promise<boolean> {
  const r = await node.conn!.exec(remoteListing(dir, model.files));
  if (r.code !== 0) return false;
  const seen = r.stdout.trim().split("\n");
  return model.files.every((f, i) => seen[i] === `${f.name} ${f.bytes} ${f.head} ${f.tail}`);
}

/** The model directory as every ready node sees it (copying it where needed). */
export async function stageModel(
  cluster: ClusterSession,
  dir: string,
  log: (line: string) => void,
): Promise<Map<NodeLaunch, string>> {
  const out = new Map<NodeLaunch, string>();
  const remote = cluster.ready.filter((n) => n.config.transport !== "local" && n.conn);
  for (const n of cluster.ready) if (!remote.includes(n)) out.set(n, dir);
  if (!remote.length) return out;
  const model = await modelIdentity(dir);
  await Promise.all(remote.map(async (node) => {
    if (await sameThere(node, dir, model)) {
      out.set(node, dir);
      return;
    }
    const cached = `${node.boot!.probe.cache}/models/${model.id}`;
    if (!(await sameThere(node, cached, model))) {
      if (model.bytes > MAX_MODEL_COPY_BYTES) {
        throw new UserError(
          `${node.name}: model.from ${dir} is not there and is too large to copy ` +
            `(${(model.bytes / 1024 ** 3).toFixed(1)} GiB, the limit is ${MAX_MODEL_COPY_BYTES / 1024 ** 3} GiB); ` +
            `put it on a shared filesystem or copy the directory to the same path on every node`,
        );
      }
      log(`${node.name}: copying model.from (${(model.bytes / 1024 ** 2).toFixed(1)} MiB) to ${cached}`);
      const mk = await node.conn!.exec(`mkdir -p ${shQuote(cached)}`);
      if (mk.code !== 0) throw new UserError(`${node.name}: cannot create ${cached}: ${mk.stderr.trim()}`);
      // Each upload lands under a temporary name and is renamed when whole, and config.json comes last: a copy cut
      // short lacks a file, so the listing above refuses it and the next run copies again.
      for (const f of model.files) await node.conn!.upload(`${dir}/${f.name}`, `${cached}/${f.name}`);
    }
    out.set(node, cached);
  }));
  return out;
}
