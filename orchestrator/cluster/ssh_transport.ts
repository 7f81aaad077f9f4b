// SSH transport with npm:ssh2: a TCP_NODELAY socket, host key checked against known_hosts (strict or accept-new),
// identity file or ssh-agent, connect timeout, keepalive, ChaCha20-Poly1305 first; exec, streamed exec and upload (SFTP,
// or an exec channel with a sha256 check where the server has no SFTP subsystem).

// @ts-types="npm:@types/ssh2@^1.15"
import { Client, utils as sshUtils } from "ssh2";
// @ts-types="npm:@types/ssh2@^1.15"
import type {
  AuthMethod,
  CipherAlgorithm,
  ClientChannel,
  ConnectConfig,
  ServerHostKeyAlgorithm,
  SFTPWrapper,
} from "ssh2";
import net from "node:net";
import { Buffer } from "node:buffer";
import { Duplex } from "node:stream";
import { sha256Hasher } from "../../core/hash.ts";
import { UserError } from "../errors.ts";
import type { NodeConfig } from "../config/types.ts";
import { type AgentChannel, type ChannelExit, pushStream } from "./agent_channel.ts";
import { checkKnownHosts, fingerprint, keyType, knownHostsLine, knownKeyTypes } from "./known_hosts.ts";

/** Ciphers in order of preference: ChaCha20-Poly1305 is about twice as fast as AES-GCM under Deno's node:crypto. */
export const CIPHERS = [
  "chacha20-poly1305@openssh.com",
  "aes128-gcm@openssh.com",
  "aes256-gcm@openssh.com",
  "aes128-ctr",
  "aes192-ctr",
  "aes256-ctr",
];

const HOST_KEY_ALGOS: Record<string, string[]> = {
  "ssh-ed25519": ["ssh-ed25519"],
  "ecdsa-sha2-nistp256": ["ecdsa-sha2-nistp256"],
  "ecdsa-sha2-nistp384": ["ecdsa-sha2-nistp384"],
  "ecdsa-sha2-nistp521": ["ecdsa-sha2-nistp521"],
  "ssh-rsa": ["rsa-sha2-512", "rsa-sha2-256", "ssh-rsa"],
};
const DEFAULT_HOST_KEY_ORDER = Object.values(HOST_KEY_ALGOS).flat();

/**
 * A forwarded channel as the socket of an inner SSH connection. ssh2's ChaCha20-Poly1305 keeps its nonce in one
 * module-wide buffer, and an inner connection's encrypt writes each piece of a packet synchronously: written straight
 * into the outer channel, the outer connection's encrypt would overwrite that nonce in the middle of the inner
 * packet (sshd then reports "incomplete message" after key exchange). So bytes cross between the two connections
 * only from a microtask, copied, when the other side's crypto is not running.
 */
function copyingDuplex(ch: ClientChannel): Duplex {
  const toChannel = copiedInMicrotask((data) => ch.write(data));
  const d = new Duplex({
    read() {},
    write(chunk: Buffer, _enc, cb) {
      toChannel(chunk);
      cb();
    },
    final(cb) {
      queueMicrotask(() => ch.end());
      cb();
    },
    destroy(err, cb) {
      ch.close();
      cb(err);
    },
  });
  ch.on("data", copiedInMicrotask((data) => d.push(data)));
  ch.on("end", () => queueMicrotask(() => queueMicrotask(() => d.push(null))));
  ch.on("close", () => setTimeout(() => d.destroy(), 0));
  return d;
}

/** Copies each chunk given to the returned function and hands them to `deliver` in one piece from a microtask. */
function copiedInMicrotask(deliver: (data: Buffer) => void): (chunk: Buffer) => void {
  let pending: Buffer[] = [];
  return (chunk) => {
    if (pending.length === 0) {
      queueMicrotask(() => {
        const data = Buffer.concat(pending);
        pending = [];
        deliver(data);
      });
    }
    pending.push(Buffer.from(chunk));
  };
}

/** Everything needed to open one SSH connection. */
export interface SshTarget {
  host: string;
  port: number;
  user: string;
  /** Private key file; without it, ssh-agent (SSH_AUTH_SOCK) and then ~/.ssh/id_* are tried. */
  identity?: string;
  /** known_hosts file (default ~/.ssh/known_hosts). */
  knownHosts?: string;
  hostKeyPolicy: NodeConfig["hostKeyPolicy"];
  connectTimeoutMs: number;
  /** Keepalive interval; the connection is declared dead after `keepaliveCountMax` unanswered ones. */
  keepaliveMs?: number;
  keepaliveCountMax?: number;
  /** Prefix of error messages, e.g. `node 1 (10.0.0.2)`. */
  what?: string;
  /** Bastions to go through, outermost first (ProxyJump): the connection runs over ssh2 forwarding. */
  jump?: SshTarget[];
}

/** The SSH target of a configured node. */
export function sshTargetOf(node: NodeConfig, connectTimeoutS: number, keepaliveMs = 5000): SshTarget {
  return {
    host: node.host,
    port: node.port,
    user: node.user ?? Deno.env.get("USER") ?? "root",
    identity: node.identity,
    knownHosts: node.knownHosts,
    hostKeyPolicy: node.hostKeyPolicy,
    connectTimeoutMs: connectTimeoutS * 1000,
    keepaliveMs,
    what: `node ${node.index} (${node.host})`,
  };
}

/** Result of a command run to completion. */
export interface ExecResult {
  code: number | null;
  signal: string | null;
  stdout: string;
  stderr: string;
}

function home(): string {
  return Deno.env.get("HOME") ?? "/root";
}

function expandHome(p: string): string {
  return p.startsWith("~/") ? home() + p.slice(1) : p;
}

/** Quotes a string for POSIX sh. */
export function shQuote(s: string): string {
  return `'${s.replaceAll("'", `'\\''`)}'`;
}

function readKey(path: string, where: string): Buffer {
  let data: Uint8Array;
  try {
    data = Deno.readFileSync(path);
  } catch (e) {
    throw new UserError(`${where}: cannot read identity file ${path} (${(e as Error).message})`);
  }
  const parsed = sshUtils.parseKey(Buffer.from(data));
  if (parsed instanceof Error) {
    if (/passphrase/i.test(parsed.message)) {
      throw new UserError(
        `${where}: identity ${path} is passphrase-protected; load it into ssh-agent (ssh-add ${path}) and remove ` +
          `identity from the node's config so the agent is used`,
      );
    }
    throw new UserError(`${where}: identity ${path} is not a private key ssh2 can read (${parsed.message})`);
  }
  return Buffer.from(data);
}

/** The text of the known_hosts file ("" when it does not exist and the policy may add to it). */
async function readKnownHosts(t: SshTarget, where: string, knownHostsPath: string): Promise<string> {
  try {
    return await Deno.readTextFile(knownHostsPath);
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) {
      throw new UserError(`${where}: cannot read known_hosts ${knownHostsPath} (${(e as Error).message})`);
    }
    if (t.hostKeyPolicy === "strict") {
      throw new UserError(
        `${where}: known_hosts file ${knownHostsPath} does not exist, so the host key of ${t.host} cannot be ` +
          `checked; add it (ssh-keyscan -p ${t.port} ${t.host} >> ${knownHostsPath}) or set host_key_policy: accept-new`,
      );
    }
    return "";
  }
}

/** Authentication methods, in order: the configured identity, else ssh-agent and the default key files. */
function authMethods(t: SshTarget, where: string): { auth: AuthMethod[]; tried: string[] } {
  const auth: AuthMethod[] = [];
  const tried: string[] = [];
  const agentSock = Deno.env.get("SSH_AUTH_SOCK");
  if (t.identity) {
    auth.push({ type: "publickey", username: t.user, key: readKey(expandHome(t.identity), where) } as AuthMethod);
    tried.push(`identity ${t.identity}`);
    return { auth, tried };
  }
  if (agentSock) {
    auth.push({ type: "agent", username: t.user, agent: agentSock } as AuthMethod);
    tried.push(`ssh-agent (${agentSock})`);
  }
  for (const name of ["id_ed25519", "id_ecdsa", "id_rsa"]) {
    const p = `${home()}/.ssh/${name}`;
    try {
      Deno.statSync(p);
    } catch {
      continue;
    }
    try {
      auth.push({ type: "publickey", username: t.user, key: readKey(p, where) } as AuthMethod);
      tried.push(p);
    } catch { /* passphrase-protected default keys are left to the agent */ }
  }
  if (auth.length === 0) {
    throw new UserError(
      `${where}: no way to authenticate: set identity: in the node's config, or start ssh-agent (SSH_AUTH_SOCK)`,
    );
  }
  return { auth, tried };
}

/**
 * The server's host key checked against known_hosts: a match passes, a revoked or different key is refused, an
 * unknown one is added under `accept-new` and refused under `strict`. `error` says why a key was refused.
 */
class HostKeyCheck {
  /** The offered key, `type fingerprint` (once the server offered one). */
  hostKey = "";
  error: string | undefined;

  constructor(
    readonly t: SshTarget,
    readonly where: string,
    readonly knownHostsPath: string,
    public knownText: string,
  ) {}

  verify = (key: Buffer): boolean => {
    const { t, where, knownHostsPath } = this;
    const blob = new Uint8Array(key);
    const hostKey = this.hostKey = `${keyType(blob)} ${fingerprint(blob)}`;
    const r = checkKnownHosts(this.knownText, t.host, t.port, blob);
    if (r.status === "match") return true;
    if (r.status === "revoked") {
      this.error = `${where}: the host key of ${t.host} (${hostKey}) is marked @revoked in ` +
        `${knownHostsPath}:${r.line}; refusing to connect`;
      return false;
    }
    if (r.status === "mismatch") {
      const listed = r.known.map((k) => `${k.type} ${k.fingerprint} (${knownHostsPath}:${k.line})`).join(", ");
      this.error = `${where}: HOST KEY MISMATCH for ${t.host}:${t.port}: the server offered ${hostKey}, but ` +
        `known_hosts has ${listed}. Someone may be intercepting the connection, or the host was reinstalled; ` +
        `if you trust the new key, remove the old one (ssh-keygen -R ${t.host} -f ${knownHostsPath})`;
      return false;
    }
    if (t.hostKeyPolicy === "accept-new") return this.#accept(blob);
    this.error = `${where}: host ${t.host}:${t.port} is not in ${knownHostsPath} (it offered ${hostKey}); ` +
      `verify the fingerprint and add it (ssh-keyscan -p ${t.port} ${t.host} >> ${knownHostsPath}), ` +
      `or set host_key_policy: accept-new`;
    return false;
  };

  /** Appends a new host's key to known_hosts (accept-new). */
  #accept(blob: Uint8Array): boolean {
    const { t, knownHostsPath } = this;
    const line = knownHostsLine(t.host, t.port, blob);
    try {
      Deno.mkdirSync(knownHostsPath.slice(0, knownHostsPath.lastIndexOf("/")) || "/", { recursive: true });
      const sep = this.knownText && !this.knownText.endsWith("\n") ? "\n" : "";
      Deno.writeTextFileSync(knownHostsPath, sep + line + "\n", { append: true, mode: 0o600 });
      this.knownText += sep + line + "\n";
    } catch (e) {
      this.error = `${this.where}: cannot add the host key to ${knownHostsPath} (${(e as Error).message})`;
      return false;
    }
    return true;
  }
}

/**
 * Opens the TCP socket (or uses the jump host's forwarded channel) and runs the SSH handshake to an authenticated
 * client within the connect timeout. On failure the client and socket are closed and one UserError says why.
 */
async function handshake(
  client: Client,
  cfg: ConnectConfig,
  viaStream: ClientChannel | undefined,
  t: SshTarget,
  where: string,
  hostKeyError: () => string | undefined,
  tried: string[],
): Promise<void> {
  let sock: net.Socket | undefined;
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    await new Promise<void>((resolve, reject) => {
      let settled = false;
      const fail = (msg: string) => {
        if (settled) return;
        settled = true;
        reject(new UserError(msg));
      };
      timer = setTimeout(() => {
        fail(
          `${where}: cannot connect to ${t.host}:${t.port}: no answer within ${t.connectTimeoutMs / 1000} s ` +
            `(cluster.connect_timeout_s); check the address, the network, and that sshd runs there`,
        );
      }, t.connectTimeoutMs);
      if (viaStream) client.connect({ ...cfg, sock: copyingDuplex(viaStream) });
      else {
        sock = net.connect({ host: t.host, port: t.port, noDelay: true });
        sock.setNoDelay(true);
        sock.on("error", (e: Error & { code?: string }) => {
          fail(`${where}: cannot connect to ${t.host}:${t.port}: ${socketErrorText(e)}`);
        });
        sock.on("connect", () => client.connect({ ...cfg, sock }));
      }
      client.on("ready", () => {
        if (settled) return;
        settled = true;
        resolve();
      });
      client.on("error", (e: Error & { level?: string }) => {
        const refused = hostKeyError();
        if (refused) return fail(refused);
        if (e.level === "client-authentication") {
          return fail(
            `${where}: authentication as ${t.user} failed (tried ${tried.join(", ")}); the server refused the ` +
              `key: add its public key to ~${t.user}/.ssh/authorized_keys on ${t.host}, or set identity: in the config`,
          );
        }
        if (e.level === "client-timeout") {
          return fail(
            `${where}: SSH handshake with ${t.host}:${t.port} did not finish within ${t.connectTimeoutMs / 1000} s`,
          );
        }
        fail(`${where}: SSH connection to ${t.host}:${t.port} failed: ${e.message}`);
      });
      client.on("close", () => fail(hostKeyError() ?? `${where}: ${t.host}:${t.port} closed the connection`));
    });
  } catch (e) {
    clearTimeout(timer);
    client.end();
    sock?.destroy();
    throw e;
  }
  clearTimeout(timer);
}

/** Why a TCP connect failed, in words. */
function socketErrorText(e: Error & { code?: string }): string {
  if (e.code === "ECONNREFUSED") return "connection refused (is sshd running there, on this port?)";
  if (e.code === "ENOTFOUND" || e.code === "EAI_AGAIN") return "unknown host name";
  if (e.code === "EHOSTUNREACH" || e.code === "ENETUNREACH") return "host unreachable";
  return e.message;
}

/** An open, authenticated SSH connection. */
export class SshConnection {
  #client: Client;
  #closed: Promise<void>;
  #dead?: string;
  #sftp?: Promise<SFTPWrapper>;
  /** Milliseconds from TCP connect to authenticated. */
  readonly connectMs: number;
  /** `user@host:port`. */
  readonly label: string;
  /** The server's host key fingerprint. */
  readonly hostKey: string;

  private constructor(client: Client, label: string, connectMs: number, hostKey: string, closed: Promise<void>) {
    this.#client = client;
    this.label = label;
    this.connectMs = connectMs;
    this.hostKey = hostKey;
    this.#closed = closed;
    client.on("error", (e: Error) => this.#dead ??= e.message);
    client.on("close", () => this.#dead ??= "connection closed");
  }

  /** Why the connection is gone, or undefined while it is up. */
  get dead(): string | undefined {
    return this.#dead;
  }

  /** Connects, checks the host key and authenticates; every failure is a UserError with one clear message. */
  static async connect(t: SshTarget): Promise<SshConnection> {
    const where = t.what ?? `${t.host}:${t.port}`;
    const knownHostsPath = expandHome(t.knownHosts ?? "~/.ssh/known_hosts");
    const hostCheck = new HostKeyCheck(t, where, knownHostsPath, await readKnownHosts(t, where, knownHostsPath));
    const { auth, tried } = authMethods(t, where);
    // Prefer host key types known_hosts already lists for this host (as OpenSSH does).
    const knownTypes = knownKeyTypes(hostCheck.knownText, t.host, t.port).flatMap((k) => HOST_KEY_ALGOS[k] ?? []);
    const hostKeyOrder = [...new Set([...knownTypes, ...DEFAULT_HOST_KEY_ORDER])];

    // Through bastions: a forwarded channel from the last one is the socket (see orchestrator/cluster/ssh_route.ts).
    let via: SshConnection | undefined;
    let viaStream: ClientChannel | undefined;
    if (t.jump?.length) {
      const last = t.jump[t.jump.length - 1];
      via = await SshConnection.connect({ ...last, jump: t.jump.slice(0, -1) });
      try {
        viaStream = await via.forwardOut(t.host, t.port);
      } catch (e) {
        await via.close();
        throw new UserError(
          `${where}: the jump host ${via.label} cannot reach ${t.host}:${t.port}: ${(e as Error).message}`,
        );
      }
    }

    const t0 = performance.now();
    const client = new Client();
    if (via) client.on("close", () => void via.close());
    let closedResolve!: () => void;
    const closed = new Promise<void>((r) => closedResolve = r);
    client.on("close", () => closedResolve());
    const cfg: ConnectConfig = {
      username: t.user,
      authHandler: auth,
      hostVerifier: hostCheck.verify,
      readyTimeout: t.connectTimeoutMs,
      keepaliveInterval: t.keepaliveMs ?? 5000,
      keepaliveCountMax: t.keepaliveCountMax ?? 3,
      algorithms: {
        cipher: CIPHERS as CipherAlgorithm[],
        serverHostKey: hostKeyOrder as ServerHostKeyAlgorithm[],
      },
    };
    try {
      await handshake(client, cfg, viaStream, t, where, () => hostCheck.error, tried);
    } catch (e) {
      await via?.close();
      throw e;
    }
    return new SshConnection(
      client,
      `${t.user}@${t.host}:${t.port}`,
      performance.now() - t0,
      hostCheck.hostKey,
      closed,
    );
  }

  /** Runs a command to completion and returns its output. */
  exec(command: string, input?: string): Promise<ExecResult> {
    return new Promise((resolve, reject) => {
      this.#client.exec(command, (err, stream) => {
        if (err) return reject(new Error(`${this.label}: exec failed: ${err.message}`));
        const out: Buffer[] = [];
        const errs: Buffer[] = [];
        let code: number | null = null;
        let signal: string | null = null;
        stream.on("data", (d: Buffer) => out.push(d));
        stream.stderr.on("data", (d: Buffer) => errs.push(d));
        stream.on("exit", (c: number | null, s?: string) => {
          code = c;
          signal = s ?? null;
        });
        stream.on("close", () => {
          resolve({
            code,
            signal,
            stdout: Buffer.concat(out).toString("utf8"),
            stderr: Buffer.concat(errs).toString("utf8"),
          });
        });
        if (input !== undefined) stream.end(input);
        else stream.end();
      });
    });
  }

  /** Starts a long-running command and returns its stdio as an agent channel. */
  spawn(command: string): Promise<AgentChannel> {
    return new Promise((resolve, reject) => {
      this.#client.exec(command, (err, stream: ClientChannel) => {
        if (err) return reject(new Error(`${this.label}: exec failed: ${err.message}`));
        const out = pushStream();
        const errs = pushStream();
        let exit: ChannelExit = { code: null, signal: null };
        let inputOpen = true;
        let resolveClosed!: (e: ChannelExit) => void;
        const closed = new Promise<ChannelExit>((r) => resolveClosed = r);
        const onConnError = (e: Error) => exit.error ??= e.message;
        const onConnClose = () => {
          exit.error ??= "SSH connection closed";
          finish();
        };
        let finished = false;
        const finish = () => {
          if (finished) return;
          finished = true;
          inputOpen = false;
          out.end();
          errs.end();
          this.#client.off("error", onConnError);
          this.#client.off("close", onConnClose);
          resolveClosed(exit);
        };
        this.#client.on("error", onConnError);
        this.#client.on("close", onConnClose);
        stream.on("data", (d: Buffer) => out.push(new Uint8Array(d)));
        stream.stderr.on("data", (d: Buffer) => errs.push(new Uint8Array(d)));
        stream.on("exit", (c: number | null, s?: string) => {
          exit = { ...exit, code: c ?? null, signal: s ?? null };
        });
        stream.on("close", finish);
        stream.on("error", (e: Error) => exit.error ??= e.message);
        resolve({
          label: this.label,
          stdout: out.stream,
          stderr: errs.stream,
          write: (text) => {
            if (!inputOpen) return false;
            stream.write(text);
            return true;
          },
          closeInput: () => {
            if (!inputOpen) return;
            inputOpen = false;
            stream.end();
          },
          closed,
          kill: () => {
            inputOpen = false;
            stream.close();
          },
        });
      });
    });
  }

  /** Opens a TCP channel from the server to `host:port` (a jump host's forwarding; closes when the far end does). */
  forwardOut(host: string, port: number): Promise<ClientChannel> {
    return new Promise((resolve, reject) => {
      this.#client.forwardOut("127.0.0.1", 0, host, port, (err, ch) => {
        if (err) return reject(err);
        // Forwarded channels are half-open: end ours when the far side ends, or 'close' never comes.
        ch.on("end", () => ch.end());
        resolve(ch);
      });
    });
  }

  #getSftp(): Promise<SFTPWrapper> {
    this.#sftp ??= new Promise((resolve, reject) => {
      this.#client.sftp((err, sftp) =>
        err ? reject(new Error(`${this.label}: SFTP failed: ${err.message}`)) : resolve(sftp)
      );
    });
    return this.#sftp;
  }

  /**
   * Uploads a local file (path) or bytes to `remotePath`: written to a temporary name, then renamed, so a concurrent
   * reader never sees half a file. Uses SFTP where the server offers it, else (no `Subsystem sftp`, common on
   * hardened hosts) streams the bytes over an exec channel and checks their sha256 there before the rename.
   * Returns the bytes sent.
   */
  async upload(source: string | Uint8Array, remotePath: string, mode = 0o644): Promise<number> {
    let sftp: SFTPWrapper;
    try {
      sftp = await this.#getSftp();
    } catch (e) {
      if (this.#dead) throw e;
      this.sftpUnavailable = (e as Error).message;
      return await this.#uploadExec(source, remotePath, mode);
    }
    const tmp = `${remotePath}.part-${crypto.randomUUID().slice(0, 8)}`;
    const call = (fn: (cb: (err?: Error | null) => void) => void) =>
      new Promise<void>((resolve, reject) =>
        fn((err) => err ? reject(new Error(`${this.label}: upload of ${remotePath}: ${err.message}`)) : resolve())
      );
    let bytes: number;
    if (typeof source === "string") {
      bytes = (await Deno.stat(source)).size;
      await call((cb) => sftp.fastPut(source, tmp, { concurrency: 32, chunkSize: 65536, mode }, cb));
    } else {
      bytes = source.byteLength;
      await call((cb) => sftp.writeFile(tmp, Buffer.from(source), { mode }, cb));
    }
    await call((cb) => sftp.chmod(tmp, mode, cb));
    try {
      await call((cb) => sftp.ext_openssh_rename(tmp, remotePath, cb));
    } catch (e) {
      await call((cb) => sftp.unlink(tmp, cb)).catch(() => {});
      throw e;
    }
    return bytes;
  }

  /** Why SFTP could not be used on this connection (set once an upload fell back to the exec channel). */
  sftpUnavailable?: string;

  /** The exec-channel upload: `cat` into a temporary file, sha256 checked there, then renamed. */
  async #uploadExec(source: string | Uint8Array, remotePath: string, mode: number): Promise<number> {
    const tmp = `${remotePath}.part-${crypto.randomUUID().slice(0, 8)}`;
    const q = shQuote(tmp);
    const octal = mode.toString(8);
    const hash = sha256Hasher();
    const fail = (why: string) => new Error(`${this.label}: upload of ${remotePath} (exec channel, no SFTP): ${why}`);
    const script = `umask 077; cat > ${q} && chmod ${octal} ${q} && ` +
      `{ sha256sum ${q} 2>/dev/null || shasum -a 256 ${q} 2>/dev/null || openssl dgst -sha256 -r ${q}; }`;
    const result = await new Promise<{ code: number | null; stdout: string; stderr: string; bytes: number }>(
      (resolve, reject) => {
        this.#client.exec(script, (err, stream: ClientChannel) => {
          if (err) return reject(fail(err.message));
          const out: Buffer[] = [];
          const errs: Buffer[] = [];
          let code: number | null = null;
          let bytes = 0;
          stream.on("data", (d: Buffer) => out.push(d));
          stream.stderr.on("data", (d: Buffer) => errs.push(d));
          stream.on("exit", (c: number | null) => code = c);
          stream.on("close", () =>
            resolve({
              code,
              stdout: Buffer.concat(out).toString("utf8"),
              stderr: Buffer.concat(errs).toString("utf8"),
              bytes,
            }));
          const write = (chunk: Uint8Array) =>
            new Promise<void>((r) => {
              hash.update(chunk);
              bytes += chunk.byteLength;
              if (stream.write(Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength))) r();
              else stream.once("drain", () => r());
            });
          (async () => {
            if (typeof source === "string") {
              using file = await Deno.open(source, { read: true });
              for await (const chunk of file.readable) await write(chunk);
            } else {
              for (let off = 0; off < source.byteLength; off += 1 << 20) {
                await write(source.subarray(off, Math.min(source.byteLength, off + (1 << 20))));
              }
            }
            stream.end();
          })().catch((e) => {
            stream.close();
            reject(fail((e as Error).message));
          });
        });
      },
    );
    const local = hash.digest("hex");
    const remote = result.stdout.trim().split(/\s+/)[0] ?? "";
    if (result.code !== 0 || remote !== local) {
      await this.exec(`rm -f ${q}`).catch(() => {});
      if (result.code !== 0) throw fail(`exit ${result.code}: ${result.stderr.trim().slice(0, 300)}`);
      throw fail(`sha256 there is ${remote || "(none)"}, here ${local}: the bytes were damaged on the way`);
    }
    const mv = await this.exec(`mv -f ${q} ${shQuote(remotePath)}`);
    if (mv.code !== 0) {
      await this.exec(`rm -f ${q}`).catch(() => {});
      throw fail(`rename failed: ${mv.stderr.trim().slice(0, 300)}`);
    }
    return result.bytes;
  }

  /** Closes the connection and waits until it is closed. */
  async close(): Promise<void> {
    this.#client.end();
    await Promise.race([this.#closed, new Promise((r) => setTimeout(r, 2000))]);
    this.#client.destroy();
  }
}
