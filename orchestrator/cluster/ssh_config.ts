// ~/.ssh/config as OpenSSH reads it, for the keys flexsp uses: Host blocks (patterns with * and ?, negation with !),
// HostName (with %h), User, Port, IdentityFile, ProxyJump, UserKnownHostsFile; the first value obtained for a key
// wins, as in ssh_config(5). `Match` blocks are skipped (their conditions are not evaluated); `Include` is followed.

import { UserError } from "../errors.ts";

/** What the config says about one host (only keys it sets). */
export interface SshHostConfig {
  hostName?: string;
  user?: string;
  port?: number;
  identityFile?: string;
  /** Bastions in order (`ProxyJump a,b`): `[user@]host[:port]` each; [] for `ProxyJump none`. */
  proxyJump?: string[];
  userKnownHostsFile?: string;
}

interface Block {
  patterns: string[];
  options: [string, string, number][];
  file: string;
}

function home(): string {
  return Deno.env.get("HOME") ?? "/root";
}

function expandTilde(p: string): string {
  return p === "~" || p.startsWith("~/") ? home() + p.slice(1) : p;
}

/** Whether `host` matches an ssh_config pattern list (`a*.example.com !bad.example.com`). */
export function hostMatches(host: string, patterns: string[]): boolean {
  let hit = false;
  for (const raw of patterns) {
    const neg = raw.startsWith("!");
    const p = neg ? raw.slice(1) : raw;
    const re = new RegExp(`^${p.replace(/[.+^${}()|[\]\\]/g, "\\$&").replace(/\*/g, ".*").replace(/\?/g, ".")}$`, "i");
    if (re.test(host)) {
      if (neg) return false;
      hit = true;
    }
  }
  return hit;
}

function splitArgs(line: string): string[] {
  const out: string[] = [];
  for (const m of line.matchAll(/"([^"]*)"|(\S+)/g)) out.push(m[1] ?? m[2]);
  return out;
}

function parseBlocks(text: string, file: string, depth: number, blocks: Block[]): void {
  // Lines before the first Host apply to every host.
  let cur: Block = { patterns: ["*"], options: [], file };
  blocks.push(cur);
  text.split("\n").forEach((rawLine, i) => {
    const line = rawLine.trim();
    if (!line || line.startsWith("#")) return;
    const m = line.match(/^(\S+?)\s*(?:=\s*|\s+)(.*)$/);
    if (!m) throw new UserError(`${file}:${i + 1}: cannot parse "${line}" (expected Keyword value)`);
    const key = m[1].toLowerCase();
    const args = splitArgs(m[2]);
    if (key === "host") {
      cur = { patterns: args, options: [], file };
      blocks.push(cur);
    } else if (key === "match") {
      cur = { patterns: [], options: [], file }; // conditions not evaluated: never applies
      blocks.push(cur);
    } else if (key === "include") {
      if (depth > 8) throw new UserError(`${file}:${i + 1}: Include nested too deeply`);
      for (const a of args) {
        const path = expandTilde(a).startsWith("/") ? expandTilde(a) : `${home()}/.ssh/${a}`;
        let inc: string;
        try {
          inc = Deno.readTextFileSync(path);
        } catch {
          continue; // OpenSSH ignores missing includes
        }
        // Included files' blocks take effect in place; a block opened there does not continue here.
        parseBlocks(inc, path, depth + 1, blocks);
        cur = { patterns: cur.patterns, options: [], file };
        blocks.push(cur);
      }
    } else cur.options.push([key, args.join(" "), i + 1]);
  });
}

/** Parses ssh config text into its blocks. */
export function parseSshConfig(text: string, file = "ssh config"): Block[] {
  const blocks: Block[] = [];
  parseBlocks(text, file, 0, blocks);
  return blocks;
}

/** What `text` (an ssh config) says about `alias`. */
export function resolveSshHost(alias: string, text: string, file = "ssh config"): SshHostConfig {
  const out: SshHostConfig = {};
  for (const b of parseSshConfig(text, file)) {
    if (!hostMatches(alias, b.patterns)) continue;
    for (const [key, value, line] of b.options) {
      const at = `${b.file}:${line}`;
      switch (key) {
        case "hostname":
          out.hostName ??= value.replaceAll("%h", alias);
          break;
        case "user":
          out.user ??= value;
          break;
        case "port": {
          const n = Number(value);
          if (!Number.isInteger(n) || n < 1 || n > 65535) {
            throw new UserError(`${at}: Port: expected 1-65535, got "${value}"`);
          }
          out.port ??= n;
          break;
        }
        case "identityfile":
          out.identityFile ??= expandTilde(value);
          break;
        case "userknownhostsfile":
          out.userKnownHostsFile ??= expandTilde(value.split(" ")[0]);
          break;
        case "proxyjump":
          out.proxyJump ??= value.toLowerCase() === "none" ? [] : value.split(",").map((s) => s.trim()).filter(Boolean);
          break;
      }
    }
  }
  return out;
}

/** Splits `[user@]host[:port]` (or `ssh://[user@]host[:port]`). */
export function parseJumpSpec(spec: string): { user?: string; host: string; port?: number } {
  const s = spec.replace(/^ssh:\/\//, "");
  const at = s.lastIndexOf("@");
  const user = at >= 0 ? s.slice(0, at) : undefined;
  const rest = at >= 0 ? s.slice(at + 1) : s;
  const m = rest.match(/^\[([^\]]+)\](?::(\d+))?$/) ?? rest.match(/^([^:]+)(?::(\d+))?$/);
  if (!m) throw new UserError(`jump host "${spec}": expected [user@]host[:port]`);
  return { user, host: m[1], port: m[2] ? Number(m[2]) : undefined };
}

/** Reads the ssh config file at `path` ("" when it does not exist). */
export function readSshConfig(path: string): string {
  try {
    return Deno.readTextFileSync(expandTilde(path));
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return "";
    throw new UserError(`${path}: cannot read the ssh config (${(e as Error).message})`);
  }
}
