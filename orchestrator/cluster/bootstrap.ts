// Bootstrap of a node over SSH: finds a usable Deno there (or uploads this orchestrator's own binary (SFTP or exec) into
// a per-user cache), and uploads the agent (and executor) as single bundled files (`deno bundle`) and the PyTorch
// executor package as a directory, each named by content hash, so that a second launch uploads nothing.

import { sha256Hasher, sha256Hex } from "../../core/hash.ts";
import { flexspCacheDir } from "../../core/xdg.ts";
import { UserError } from "../errors.ts";
import { shQuote, type SshConnection } from "./ssh_transport.ts";

/** Oldest Deno on a node that may run the agent and executors. */
export const MIN_DENO = "2.0.0";

/** This checkout's root (agents/, kernels/ and deno.json live there). */
export const REPO_ROOT = new URL("../../", import.meta.url).pathname.replace(/\/$/, "");

/** A bundled entry point, ready to upload. */
export interface Bundle {
  /** Short name (`agent`, `executor`). */
  name: string;
  /** Local path of the bundled file. */
  path: string;
  /** Remote file name: `<name>-<sha256 prefix of the bundle>.js` (a directory bundle: `<name>-<hash>/.complete`). */
  fileName: string;
  bytes: number;
  /** A directory bundle's files (relative path, local path); its marker `fileName` is uploaded after them. */
  files?: { rel: string; path: string }[];
}

/**
 * A directory (the `kernels/torch` Python package) as one bundle named by the hash of its files' paths and contents;
 * `__pycache__`, `tests` and compiled files stay behind. With `within` (`kernels/torch`), only that folder of `dir`
 * and the `__init__.py` of each folder above it are bundled, at the same relative paths (so the package imports as
 * `kernels.torch` from the bundle's root).
 */
export async function dirBundle(name: string, dir: string, within = ""): Promise<Bundle> {
  const files: { rel: string; path: string }[] = [];
  const parts = within ? within.split("/") : [];
  for (let i = 1; i < parts.length; i++) {
    const rel = `${parts.slice(0, i).join("/")}/__init__.py`;
    const isFile = await Deno.stat(`${dir}/${rel}`).then((s) => s.isFile, () => false);
    if (isFile) files.push({ rel, path: `${dir}/${rel}` });
  }
  const walk = async (sub: string) => {
    const entries: Deno.DirEntry[] = [];
    for await (const e of Deno.readDir(sub ? `${dir}/${sub}` : dir)) entries.push(e);
    entries.sort((a, b) => a.name < b.name ? -1 : a.name > b.name ? 1 : 0);
    for (const e of entries) {
      const rel = sub ? `${sub}/${e.name}` : e.name;
      if (e.isDirectory && !["__pycache__", "tests"].includes(e.name) && !e.name.startsWith(".")) await walk(rel);
      else if (e.isFile && !/\.py[co]$/.test(e.name)) files.push({ rel, path: `${dir}/${rel}` });
    }
  };
  await walk(within);
  const h = sha256Hasher();
  let bytes = 0;
  for (const f of files) {
    const data = await Deno.readFile(f.path);
    bytes += data.byteLength;
    h.update(f.rel).update("\0").update(data).update("\0");
  }
  return { name, path: dir, fileName: `${name}-${h.digest("hex").slice(0, 16)}/.complete`, bytes, files };
}

/** Parses `deno 2.9.6 (stable, ...)` into [2, 9, 6]; undefined when it is not a Deno version line. */
export function parseDenoVersion(line: string): [number, number, number] | undefined {
  const m = line.match(/^deno (\d+)\.(\d+)\.(\d+)/);
  return m ? [Number(m[1]), Number(m[2]), Number(m[3])] : undefined;
}

/** Whether version line `line` is at least `min`. */
export function denoUsable(line: string, min = MIN_DENO): boolean {
  const v = parseDenoVersion(line);
  const m = parseDenoVersion(`deno ${min}`)!;
  if (!v) return false;
  for (let i = 0; i < 3; i++) if (v[i] !== m[i]) return v[i] > m[i];
  return true;
}

const IMPORT_RE =
  /(?:^|[\s;}])(?:import|export)\s+(?:type\s+)?(?:[\w*{}\s,$]+?\s+from\s+)?["']([^"']+)["']|import\(\s*["']([^"']+)["']\s*\)/g;

/**
 * Hash of everything a bundle of `entry` depends on: the text of every module reachable through relative imports,
 * deno.json, deno.lock (for npm packages) and the Deno version.
 */
export async function sourceHash(entry: string): Promise<string> {
  const h = sha256Hasher();
  h.update(Deno.version.deno);
  for (const f of ["deno.json", "deno.lock"]) {
    try {
      h.update(await Deno.readTextFile(`${REPO_ROOT}/${f}`));
    } catch { /* absent */ }
  }
  const seen = new Set<string>();
  const queue = [new URL(`file://${entry}`).href];
  while (queue.length) {
    const url = queue.shift()!;
    if (seen.has(url)) continue;
    seen.add(url);
    let text: string;
    try {
      text = await Deno.readTextFile(new URL(url));
    } catch {
      h.update(`missing ${url}`);
      continue;
    }
    h.update(url).update("\0").update(text).update("\0");
    for (const m of text.matchAll(IMPORT_RE)) {
      const spec = m[1] ?? m[2];
      if (spec.startsWith("./") || spec.startsWith("../")) queue.push(new URL(spec, url).href);
    }
  }
  return h.digest("hex").slice(0, 20);
}

function localCacheDir(): string {
  return flexspCacheDir("local-bundles");
}

/** Bundles `entry` with `deno bundle --platform=deno`, reusing an earlier bundle of the same sources. */
export async function bundle(name: string, entry: string): Promise<Bundle> {
  const dir = localCacheDir();
  await Deno.mkdir(dir, { recursive: true });
  const path = `${dir}/${name}-${await sourceHash(entry)}.js`;
  let data: Uint8Array;
  try {
    data = await Deno.readFile(path);
  } catch {
    const tmp = `${path}.tmp-${Deno.pid}`;
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["bundle", "--platform=deno", "--quiet", "-o", tmp, entry],
      cwd: REPO_ROOT,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
      env: { NO_COLOR: "1", DENO_NO_UPDATE_CHECK: "1" },
    }).output();
    if (!out.success) {
      await Deno.remove(tmp).catch(() => {});
      const err = new TextDecoder().decode(out.stderr).trim();
      throw new Error(`deno bundle ${entry} failed:\n${err}`);
    }
    await Deno.rename(tmp, path);
    data = await Deno.readFile(path);
  }
  return { name, path, fileName: `${name}-${sha256Hex(data).slice(0, 16)}.js`, bytes: data.byteLength };
}

/** What a probe of the node found. */
export interface ProbeResult {
  home: string;
  /** Per-user cache directory on the node (`$XDG_CACHE_HOME/flexsp` or `~/.cache/flexsp`). */
  cache: string;
  os: string;
  arch: string;
  /** Every Deno candidate tried, with its `--version` line. */
  denos: { path: string; version: string }[];
  /** Bundle file names already in the node's cache. */
  have: Set<string>;
  error?: string;
}

/** The POSIX sh probe: cache directory, OS, architecture, Deno candidates (first usable wins), cached bundles. */
export function probeScript(opts: { configuredDeno?: string; files: string[] }): string {
  const cachedDeno = `$c/deno/${Deno.version.deno}-${Deno.build.os}-${Deno.build.arch}/deno`;
  const candidates = opts.configuredDeno
    ? [shQuote(opts.configuredDeno)]
    : ['"$(command -v deno 2>/dev/null)"', `"${cachedDeno}"`, '"$HOME/.deno/bin/deno"'];
  return [
    'c="${XDG_CACHE_HOME:-$HOME/.cache}/flexsp"',
    'mkdir -p "$c/bundles" "$c/deno" || { echo "error=cannot create $c"; exit 0; }',
    'echo "home=$HOME"',
    'echo "cache=$c"',
    'echo "os=$(uname -s)"',
    'echo "arch=$(uname -m)"',
    `for f in ${opts.files.map(shQuote).join(" ")}; do [ -f "$c/bundles/$f" ] && echo "have=$f"; done`,
    "probe_deno() {",
    '  [ -n "$1" ] && [ -f "$1" ] && [ -x "$1" ] || return 1',
    '  v=$("$1" --version 2>/dev/null | head -n 1)',
    '  echo "deno=$1|$v"',
    '  case "$v" in "deno "[2-9].*|"deno "[1-9][0-9]*) return 0;; esac',
    "  return 1",
    "}",
    `${candidates.map((c) => `probe_deno ${c}`).join(" || ")} || true`,
    "exit 0",
    "",
  ].join("\n");
}

/** Parses the probe's `key=value` lines. */
export function parseProbe(text: string): ProbeResult {
  const r: ProbeResult = { home: "", cache: "", os: "", arch: "", denos: [], have: new Set() };
  for (const line of text.split("\n")) {
    const eq = line.indexOf("=");
    if (eq < 0) continue;
    const k = line.slice(0, eq);
    const v = line.slice(eq + 1);
    if (k === "home") r.home = v;
    else if (k === "cache") r.cache = v;
    else if (k === "os") r.os = v;
    else if (k === "arch") r.arch = v;
    else if (k === "have") r.have.add(v);
    else if (k === "error") r.error = v;
    else if (k === "deno") {
      const bar = v.indexOf("|");
      r.denos.push({ path: v.slice(0, bar), version: v.slice(bar + 1) });
    }
  }
  return r;
}

const OS_NAMES: Record<string, string> = { linux: "Linux", darwin: "Darwin" };
const ARCH_NAMES: Record<string, string[]> = { x86_64: ["x86_64", "amd64"], aarch64: ["aarch64", "arm64"] };

/** What bootstrapping a node did. */
export interface BootstrapResult {
  probe: ProbeResult;
  /** Deno binary on the node. */
  deno: string;
  denoVersion: string;
  /** Whether Deno was uploaded. */
  denoUploaded: boolean;
  /** Remote paths of the bundles, by bundle name. */
  paths: Record<string, string>;
  /** Uploads done: what and how many bytes. */
  uploads: { what: string; bytes: number }[];
  /** Milliseconds spent (probe and uploads). */
  ms: number;
}

/** Progress steps reported while bootstrapping. */
export type BootstrapStep = "probe" | "upload-deno" | "upload-bundles";

/** Makes sure the node has a usable Deno and every bundle; uploads only what is missing. */
export async function bootstrapNode(
  conn: SshConnection,
  opts: {
    what: string;
    configuredDeno?: string;
    bundles: Bundle[];
    onStep?: (step: BootstrapStep, detail: string) => void;
  },
): Promise<BootstrapResult> {
  const t0 = performance.now();
  opts.onStep?.("probe", "");
  const res = await conn.exec(
    "/bin/sh -s",
    probeScript({ configuredDeno: opts.configuredDeno, files: opts.bundles.map((b) => b.fileName) }),
  );
  const probe = parseProbe(res.stdout);
  if (probe.error || !probe.cache) {
    throw new UserError(
      `${opts.what}: probing the node failed: ${probe.error ?? (res.stderr.trim() || `exit code ${res.code}`)}`,
    );
  }
  const uploads: { what: string; bytes: number }[] = [];
  const usable = probe.denos.find((d) => denoUsable(d.version));
  let deno = usable?.path;
  let denoVersion = usable ? parseDenoVersion(usable.version)!.join(".") : Deno.version.deno;
  let denoUploaded = false;
  const jobs: Promise<void>[] = [];
  if (!deno) {
    if (opts.configuredDeno) {
      const found = probe.denos[0];
      throw new UserError(
        `${opts.what}: the configured deno ${opts.configuredDeno} ` +
          (found
            ? `is too old or broken ("${found.version || "no version output"}"; need >= ${MIN_DENO})`
            : "is missing or not executable") +
          `; fix the path or remove deno: from the node's config to let flexsp upload its own`,
      );
    }
    const okOs = OS_NAMES[Deno.build.os] === probe.os;
    const okArch = (ARCH_NAMES[Deno.build.arch] ?? [Deno.build.arch]).includes(probe.arch);
    if (!okOs || !okArch) {
      throw new UserError(
        `${opts.what}: no usable Deno there (need >= ${MIN_DENO}) and this orchestrator's Deno is for ` +
          `${Deno.build.os}/${Deno.build.arch}, the node is ${probe.os}/${probe.arch}; install Deno on the node or set ` +
          `deno: to its path in the config`,
      );
    }
    deno = `${probe.cache}/deno/${Deno.version.deno}-${Deno.build.os}-${Deno.build.arch}/deno`;
    denoVersion = Deno.version.deno;
    denoUploaded = true;
    const local = await Deno.realPath(Deno.execPath());
    const dir = deno.slice(0, deno.lastIndexOf("/"));
    jobs.push((async () => {
      await conn.exec(`mkdir -p ${shQuote(dir)}`);
      const mb = (await Deno.stat(local)).size / 1e6;
      opts.onStep?.("upload-deno", `Deno ${Deno.version.deno} (${mb.toFixed(0)} MB, none usable found there)`);
      const bytes = await conn.upload(local, deno!, 0o755);
      uploads.push({ what: "deno", bytes });
    })());
  }
  const paths: Record<string, string> = {};
  const missing = opts.bundles.filter((b) => !probe.have.has(b.fileName));
  if (missing.length) opts.onStep?.("upload-bundles", missing.map((b) => b.name).join(", "));
  for (const b of opts.bundles) {
    paths[b.name] = `${probe.cache}/bundles/${b.fileName}`;
    if (b.files) paths[b.name] = paths[b.name].slice(0, paths[b.name].lastIndexOf("/"));
    if (probe.have.has(b.fileName)) continue;
    jobs.push((async () => {
      if (!b.files) {
        const bytes = await conn.upload(b.path, paths[b.name]);
        uploads.push({ what: b.name, bytes });
        return;
      }
      // A directory: its folders, every file, and the marker last (a half-done upload is redone next time).
      const root = paths[b.name];
      const dirs = new Set([root, ...b.files.map((f) => `${root}/${f.rel}`.replace(/\/[^/]*$/, ""))]);
      await conn.exec(`mkdir -p ${[...dirs].map(shQuote).join(" ")}`);
      let bytes = 0;
      for (const f of b.files) bytes += await conn.upload(f.path, `${root}/${f.rel}`);
      await conn.upload(new TextEncoder().encode(b.fileName + "\n"), `${probe.cache}/bundles/${b.fileName}`);
      uploads.push({ what: b.name, bytes });
    })());
  }
  const settled = await Promise.allSettled(jobs);
  const failed = settled.find((s) => s.status === "rejected") as PromiseRejectedResult | undefined;
  if (failed) throw new UserError(`${opts.what}: upload failed: ${(failed.reason as Error).message}`);
  if (denoUploaded) {
    const check = await conn.exec(`${shQuote(deno!)} --version`);
    if (!denoUsable(check.stdout.split("\n")[0] ?? "")) {
      throw new UserError(
        `${opts.what}: the uploaded Deno does not run there: ${(check.stderr || check.stdout).trim().slice(0, 300)}; ` +
          `install Deno ${MIN_DENO} or newer on the node`,
      );
    }
  }
  return { probe, deno: deno!, denoVersion, denoUploaded, paths, uploads, ms: performance.now() - t0 };
}

/** The shell command that starts the agent on the node (replacing the login shell, so signals reach it). */
export function agentCommand(deno: string, agentPath: string): string {
  return `exec /usr/bin/env DENO_NO_UPDATE_CHECK=1 NO_COLOR=1 ${shQuote(deno)} run -A --no-config ${
    shQuote(agentPath)
  }`;
}
