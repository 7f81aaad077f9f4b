// Reads cluster.yaml (plus --set overrides), validates it with located errors, and resolves it into a Config.

import { isMap, isScalar, isSeq, LineCounter, parse as parseYaml, parseDocument } from "yaml";
import type { Node as YamlNode } from "yaml";
import { UserError } from "../errors.ts";
import { clusterConfigSpec } from "./cluster_schema.ts";
import { MODEL_PRESETS, type ModelShape } from "../../core/model_shape.ts";
import { parseCpuList } from "../../core/cpu_list.ts";
import { HfConfigError, readHfShape } from "../../core/hf_config.ts";
import { formatPath, SchemaError, validate } from "./schema_spec.ts";
import type { Config, CostConstants, ModelConfig, NodeConfig } from "./types.ts";
import { storedToConstants } from "./cost_constants.ts";
import { isTsKind } from "../../core/protocol.ts";

type Path = (string | number)[];

/** Parses `cluster.nodes[0].executor` into `["cluster", "nodes", 0, "executor"]`. */
export function parsePath(text: string): Path {
  const out: Path = [];
  const re = /([^.[\]]+)|\[(\d+)\]/g;
  let consumed = "";
  for (const m of text.matchAll(re)) {
    out.push(m[2] !== undefined ? Number(m[2]) : m[1]);
    consumed += m[0];
  }
  if (out.length === 0 || consumed.length !== text.replaceAll(".", "").length) {
    throw new UserError(`--set ${text}: cannot parse the path; write it like cluster.nodes[0].devices`);
  }
  return out;
}

interface Override {
  text: string;
  path: Path;
  value: unknown;
}

/** Parses one `PATH=VALUE` override; the value is read as YAML (so `8` is a number, `true` a boolean). */
export function parseOverride(text: string): Override {
  const eq = text.indexOf("=");
  if (eq <= 0) throw new UserError(`--set ${text}: expected PATH=VALUE, e.g. --set model.preset=gpt-13b`);
  const path = parsePath(text.slice(0, eq));
  let value: unknown;
  try {
    value = parseYaml(text.slice(eq + 1));
  } catch {
    value = text.slice(eq + 1);
  }
  return { text, path, value };
}

function applyOverride(doc: Record<string, unknown>, o: Override): void {
  let cur: unknown = doc;
  for (let i = 0; i < o.path.length - 1; i++) {
    const key = o.path[i];
    const container = cur as Record<string | number, unknown>;
    if (typeof key === "number") {
      if (!Array.isArray(container) || key > container.length) {
        throw new UserError(`--set ${o.text}: ${formatPath(o.path.slice(0, i + 1))} does not exist`);
      }
    }
    if (container[key] === undefined || container[key] === null) {
      container[key] = typeof o.path[i + 1] === "number" ? [] : {};
    }
    cur = container[key];
    if (typeof cur !== "object") {
      throw new UserError(`--set ${o.text}: ${formatPath(o.path.slice(0, i + 1))} is not a mapping or list`);
    }
  }
  (cur as Record<string | number, unknown>)[o.path[o.path.length - 1]] = o.value;
}

/** Walks the YAML AST and records the line:column of every key path. */
function positions(node: YamlNode | null | undefined, path: Path, lc: LineCounter, out: Map<string, string>) {
  if (!node) return;
  const at = (offset: number | undefined) => {
    if (offset === undefined) return undefined;
    const p = lc.linePos(offset);
    return `${p.line}:${p.col}`;
  };
  if (node.range) out.set(formatPath(path), at(node.range[0])!);
  if (isMap(node)) {
    for (const pair of node.items) {
      const key = isScalar(pair.key) ? String(pair.key.value) : String(pair.key);
      const keyNode = pair.key as YamlNode | undefined;
      const childPath = [...path, key];
      positions(pair.value as YamlNode, childPath, lc, out);
      // Unknown-key errors point at the key itself; value errors at the value.
      if (keyNode?.range) out.set(formatPath(childPath) + "#key", at(keyNode.range[0])!);
      if (!pair.value && keyNode?.range) out.set(formatPath(childPath), at(keyNode.range[0])!);
    }
  } else if (isSeq(node)) {
    node.items.forEach((item, i) => positions(item as YamlNode, [...path, i], lc, out));
  }
}

/** Loads and validates a config file; `overrides` are `PATH=VALUE` strings from `--set`. */
export async function loadConfig(path: string, overrides: string[] = []): Promise<Config> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      throw new UserError(`${path}: no such file; pass a cluster config, e.g. configs/local.yaml`);
    }
    throw new UserError(`${path}: cannot read (${(e as Error).message})`);
  }
  return parseConfig(text, path, overrides);
}

/** Validates config text (as if read from `source`). */
export function parseConfig(text: string, source: string, overrides: string[] = []): Config {
  const lc = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lc, prettyErrors: false, uniqueKeys: true });
  if (doc.errors.length > 0) {
    const e = doc.errors[0];
    const p = lc.linePos(e.pos[0]);
    const msg = e.message.split("\n")[0].replace(/ at line \d+, column \d+:?$/, "");
    throw new UserError(`${source}:${p.line}:${p.col} YAML syntax error: ${msg}`);
  }
  const raw = doc.toJS() ?? {};
  if (typeof raw !== "object" || Array.isArray(raw)) {
    throw new UserError(`${source}: expected a mapping at the top level (cluster:, model:, ...)`);
  }
  const pos = new Map<string, string>();
  positions(doc.contents as YamlNode, [], lc, pos);
  const parsed = overrides.map(parseOverride);
  for (const o of parsed) applyOverride(raw, o);

  const locate = (p: Path, atKey = false): string => {
    for (const o of parsed) {
      const op = formatPath(o.path);
      const fp = formatPath(p);
      if (fp === op || fp.startsWith(op + ".") || fp.startsWith(op + "[")) return `--set ${o.text}:`;
      // A key the file does not have, which the --set created on its way (a misspelt section).
      const created = !pos.has(fp) && (op.startsWith(fp + ".") || op.startsWith(fp + "["));
      if (created) return `--set ${o.text}:`;
    }
    for (let n = p.length; n >= 0; n--) {
      const key = formatPath(p.slice(0, n));
      const hit = (atKey && n === p.length ? pos.get(key + "#key") : undefined) ?? pos.get(key);
      if (hit) return `${source}:${hit}`;
    }
    return `${source}:`;
  };
  try {
    validate(raw, clusterConfigSpec, [], locate);
  } catch (e) {
    if (e instanceof SchemaError) throw new UserError(e.message);
    throw e;
  }
  return resolve(raw as Record<string, unknown>, source, locate);
}

// deno-lint-ignore no-explicit-any
type Raw = any;

/**
 * Parameter count at context `maxSeq` from a table keyed by context length, linear between the two nearest
 * keys (learned position embeddings make the count grow with the context), exact at a key.
 */
export function interpolateParams(
  table: Record<string, number>,
  maxSeq: number,
  path: Path = [],
  fail: (path: Path, msg: string) => never = (_p, msg) => {
    throw new UserError(msg);
  },
): number {
  const points: [number, number][] = [];
  for (const [k, v] of Object.entries(table)) {
    const ctx = Number(k);
    if (!Number.isInteger(ctx) || ctx < 1) {
      fail([...path, k], `keys must be context lengths (positive integers), got "${k}"`);
    }
    points.push([ctx, v]);
  }
  points.sort((a, b) => a[0] - b[0]);
  if (points.length === 0) fail(path, "give at least one context length: parameter count");
  const exact = points.find(([k]) => k === maxSeq);
  if (exact) return exact[1];
  const lo = points.filter(([k]) => k < maxSeq).pop();
  const hi = points.find(([k]) => k > maxSeq);
  if (!lo || !hi) {
    return fail(
      path,
      `model.max_seq ${maxSeq} is outside the table's contexts (${points.map(([k]) => k).join(", ")}); add ` +
        `an entry for it or set model.params`,
    );
  }
  return lo[1] + (hi[1] - lo[1]) * (maxSeq - lo[0]) / (hi[0] - lo[0]);
}

/** A path written in the config file `source`: relative to the file's directory; `~/` is the user's home. */
export function configRelativePath(source: string, p: string): string {
  if (p.startsWith("/")) return p;
  if (p === "~" || p.startsWith("~/")) return (Deno.env.get("HOME") ?? "") + p.slice(1);
  return (source.includes("/") ? source.slice(0, source.lastIndexOf("/") + 1) : "") + p;
}

/** What every section resolver shares: how to fail at a path, and how to resolve a config-relative path. */
interface ResolveContext {
  fail: (path: Path, msg: string) => never;
  rel: (p: string | undefined) => string | undefined;
}

/** The validated document (defaults filled in) as a Config: one resolver per section, checks across sections. */
function resolve(raw: Raw, source: string, locate: (p: Path) => string): Config {
  const ctx: ResolveContext = {
    fail: (path: Path, msg: string): never => {
      throw new UserError(`${locate(path)} ${formatPath(path)}: ${msg}`);
    },
    rel: (p: string | undefined) => p === undefined ? p : configRelativePath(source, p),
  };
  const model = resolveModel(raw.model, ctx);
  const cluster = resolveCluster(raw, model, ctx);
  const planner = resolvePlanner(raw.planner, ctx);
  const constants = resolveConstants(raw.profile, model, ctx);
  return {
    name: raw.name,
    source,
    cluster,
    model,
    training: resolveTraining(raw.training, ctx),
    planner,
    profile: { path: ctx.rel(raw.profile.path), constants },
    document: raw,
  };
}

/**
 * The model: a Hugging Face directory (model.from, which overrides model.preset) or a preset, with any explicit
 * field overriding it.
 */
function resolveModel(m: Raw, { fail, rel }: ResolveContext): ModelConfig {
  const fromDir = m.from === undefined ? undefined : rel(String(m.from));
  let base: ModelShape | undefined = m.preset ? MODEL_PRESETS[m.preset] : undefined;
  if (fromDir !== undefined) {
    try {
      base = readHfShape(fromDir);
    } catch (e) {
      if (e instanceof HfConfigError) fail(["model", "from"], e.message);
      throw e;
    }
  }
  const pick = (key: string, yamlKey: string) => {
    const v = m[yamlKey] ?? (base as Raw)?.[key];
    if (v === undefined) fail(["model", yamlKey], `missing; set model.preset, model.from or model.${yamlKey}`);
    return v as number;
  };
  const model: ModelConfig = {
    ...base,
    preset: fromDir === undefined ? m.preset as string | undefined : undefined,
    layers: pick("layers", "layers"),
    hidden: pick("hidden", "hidden"),
    heads: pick("heads", "heads"),
    vocab: pick("vocab", "vocab"),
    maxSeq: pick("maxSeq", "max_seq"),
    checkpointing: m.checkpointing,
    ...(m.params !== undefined ? { params: m.params as number } : {}),
  };
  if (fromDir !== undefined) {
    model.from = fromDir;
    // The checkpoint fixes the shape; max_seq may only cap training below its context.
    for (const key of ["layers", "hidden", "heads", "vocab"] as const) {
      if (m[key] !== undefined && m[key] !== base![key]) {
        fail(
          ["model", key],
          `${m[key]} differs from the ${base![key]} of ${fromDir}/config.json; a model.from checkpoint fixes the ` +
            `shape: remove model.${key}`,
        );
      }
    }
    if (model.maxSeq > base!.maxSeq) {
      fail(
        ["model", "max_seq"],
        `${model.maxSeq} is above the ${base!.maxSeq} tokens of ${fromDir}/config.json; set at most ${base!.maxSeq}`,
      );
    }
  }
  if (model.family !== "llama" && model.hidden % model.heads !== 0) {
    fail(["model", "heads"], `${model.heads} heads do not divide hidden size ${model.hidden}`);
  }
  if (model.family === "llama" && model.heads % (model.kvHeads ?? model.heads) !== 0) {
    fail(["model", "heads"], `${model.heads} query heads are not a multiple of the ${model.kvHeads} K/V heads`);
  }
  return model;
}

/** The cluster section: the nodes (none under Slurm, where the allocation supplies them) and the timeouts. */
function resolveCluster(raw: Raw, model: ModelConfig, ctx: ResolveContext): Config["cluster"] {
  const { fail } = ctx;
  if (raw.cluster.scheduler === "slurm" && raw.cluster.nodes) {
    fail(["cluster", "nodes"], "not used with cluster.scheduler: slurm (the nodes are the allocation's); remove it");
  }
  if (raw.cluster.scheduler !== "slurm" && !raw.cluster.nodes) {
    fail(["cluster", "nodes"], "missing; list the nodes, or set cluster.scheduler: slurm inside a Slurm allocation");
  }
  const simulate = raw.training.simulate as boolean | undefined;
  return {
    nodes: (raw.cluster.nodes ?? []).map((n: Raw, index: number) => resolveNode(n, index, simulate, model, ctx)),
    connectTimeoutS: raw.cluster.connect_timeout_s,
    heartbeatTimeoutS: raw.cluster.heartbeat_timeout_s,
    scheduler: raw.cluster.scheduler,
  };
}

/** One entry of cluster.nodes, checked against training.simulate and the model family. */
function resolveNode(
  n: Raw,
  index: number,
  simulate: boolean | undefined,
  model: ModelConfig,
  { fail, rel }: ResolveContext,
): NodeConfig {
  const at = (key: string) => ["cluster", "nodes", index, key];
  if (n.executor === "sim" && !simulate) {
    fail(
      at("executor"),
      "sim is the simulated executor, a test and benchmark tool that trains nothing; set training.simulate: true " +
        "to measure the control plane with it, or pick cpu, webgpu, cuda, torch-cpu or auto to train",
    );
  }
  if (simulate && n.executor !== "sim") {
    fail(
      at("executor"),
      `${n.executor} trains for real, but training.simulate is true; set executor: sim on every node to simulate, ` +
        "or remove training.simulate to train",
    );
  }
  if (n.memory_budget_gb !== undefined && n.device_memory_gb !== undefined && n.memory_budget_gb > n.device_memory_gb) {
    fail(
      at("memory_budget_gb"),
      `${n.memory_budget_gb} GB is above this node's device_memory_gb (${n.device_memory_gb} GB); lower ` +
        `memory_budget_gb to at most ${n.device_memory_gb} (leave headroom, e.g. ${
          Math.floor(0.9 * n.device_memory_gb)
        }) or correct device_memory_gb`,
    );
  }
  if (model.family === "llama" && isTsKind(n.executor)) {
    fail(
      at("executor"),
      `${n.executor} is a TypeScript executor, which runs GPT presets only; the llama-family model${
        model.from === undefined ? "" : ` of model.from ${model.from}`
      } needs executor: torch-cpu or cuda`,
    );
  }
  if (Array.isArray(n.cpu_pinning)) {
    if (n.cpu_pinning.length !== n.devices) {
      fail(
        at("cpu_pinning"),
        `${n.cpu_pinning.length} CPU list(s) for ${n.devices} device(s); list one per device, or use auto`,
      );
    }
    for (const [k, text] of (n.cpu_pinning as string[]).entries()) {
      try {
        parseCpuList(text);
      } catch (e) {
        fail([...at("cpu_pinning"), k], `"${text}": ${(e as Error).message}; write CPU lists like 0-3 or 0,2`);
      }
    }
  }
  return {
    index,
    host: n.host,
    transport: n.transport,
    user: n.user,
    port: n.port,
    identity: rel(n.identity),
    knownHosts: rel(n.known_hosts),
    hostKeyPolicy: n.host_key_policy,
    devices: n.devices,
    executor: n.executor,
    deviceMemoryGb: n.device_memory_gb,
    memoryBudgetGb: n.memory_budget_gb,
    speed: n.speed,
    deno: n.deno,
    python: n.python,
    workdir: n.workdir,
    jump: n.jump === undefined ? undefined : [n.jump].flat(),
    sshConfig: rel(n.ssh_config),
    ...(n.cpu_pinning !== undefined ? { cpuPinning: n.cpu_pinning } : {}),
  };
}

/** The planner section; SP degrees must be powers of two. */
function resolvePlanner(p: Raw, { fail }: ResolveContext): Config["planner"] {
  if (p.static_degree !== undefined && (p.static_degree & (p.static_degree - 1)) !== 0) {
    fail(["planner", "static_degree"], `expected a power of two, got ${p.static_degree}`);
  }
  if ((p.min_degree & (p.min_degree - 1)) !== 0) {
    fail(["planner", "min_degree"], `expected a power of two, got ${p.min_degree}`);
  }
  return {
    strategy: p.strategy,
    staticDegree: p.static_degree,
    memoryBudgetGb: p.memory_budget_gb,
    zeroStage: p.zero_stage,
    buckets: p.buckets,
    microBatchTrials: p.micro_batch_trials,
    timeLimitMs: p.time_limit_ms,
    milp: p.milp,
    deterministic: p.deterministic,
    minDegree: p.min_degree,
    overflow: p.overflow,
  };
}

/** Cost constants: inline, or per model preset, checked for usable bandwidth tables; undefined when neither. */
function resolveConstants(prof: Raw, model: ModelConfig, { fail }: ResolveContext): CostConstants | undefined {
  let constPath: Path = ["profile", "constants"];
  let c: Raw = prof.constants;
  if (!c && prof.models) {
    const key = model.preset ?? "";
    c = prof.models[key];
    constPath = ["profile", "models", key];
    if (!c) {
      fail(
        ["profile", "models"],
        `no constants for model "${model.preset ?? "(custom)"}"; known: ${Object.keys(prof.models).join(", ")}`,
      );
    }
  }
  if (!c) return undefined;
  for (const side of ["intra", "inter"]) {
    for (const k of Object.keys(c.bandwidth_gbps[side] as Record<string, number>)) {
      const d = Number(k);
      if (!Number.isInteger(d) || d < 2 || (d & (d - 1)) !== 0) {
        fail([...constPath, "bandwidth_gbps", side, k], `keys must be powers of two >= 2 (SP degrees), got "${k}"`);
      }
    }
  }
  if (Object.keys(c.bandwidth_gbps.intra).length + Object.keys(c.bandwidth_gbps.inter).length === 0) {
    fail([...constPath, "bandwidth_gbps"], "give at least one bandwidth (GB/s per device) by degree");
  }
  const constants = storedToConstants(c);
  if (c.params === undefined && c.params_by_max_seq !== undefined) {
    constants.params = interpolateParams(c.params_by_max_seq, model.maxSeq, [...constPath, "params_by_max_seq"], fail);
  }
  return constants;
}

/** The training section. */
function resolveTraining(t: Raw, { rel }: ResolveContext): Config["training"] {
  return {
    dataset: rel(t.dataset),
    datasetBuiltin: t.dataset_builtin,
    lengths: t.lengths,
    globalBatch: t.global_batch,
    steps: t.steps,
    lr: t.lr,
    weightDecay: t.weight_decay,
    gradClip: t.grad_clip,
    warmupSteps: t.warmup_steps,
    seed: t.seed,
    longSequences: t.long_sequences,
    checkpointDir: rel(t.checkpoint_dir),
    checkpointInterval: t.checkpoint_interval,
    checkpointAsync: t.checkpoint_async,
    onFailure: t.on_failure,
    keepCheckpoints: t.keep_checkpoints,
    precision: t.precision,
    allowQuadraticAttention: t.allow_quadratic_attention,
    maxRestarts: t.max_restarts,
    resume: t.resume,
    stepTimeoutS: t.step_timeout,
    simulate: t.simulate,
  };
}
