// OpenSSH known_hosts: matching a server's host key (plain, [host]:port, hashed and wildcard entries, @revoked),
// OpenSSH-style SHA256 fingerprints, and the line that `accept-new` appends.

import { createHash, createHmac } from "node:crypto";
import { Buffer } from "node:buffer";

/** One key listed in known_hosts for a host. */
export interface KnownKey {
  /** 1-based line number. */
  line: number;
  type: string;
  fingerprint: string;
  marker?: "revoked" | "cert-authority";
}

/** Result of looking a host key up. */
export interface KnownHostsCheck {
  status: "match" | "mismatch" | "unknown" | "revoked";
  /** Line of the matching (or revoking) entry. */
  line?: number;
  /** Every key listed for this host. */
  known: KnownKey[];
}

/** The key type named inside an SSH public key blob (`ssh-ed25519`, `ssh-rsa`, ...). */
export function keyType(blob: Uint8Array): string {
  if (blob.length < 4) return "unknown";
  const n = new DataView(blob.buffer, blob.byteOffset, blob.byteLength).getUint32(0);
  return new TextDecoder().decode(blob.subarray(4, 4 + n));
}

/** OpenSSH's fingerprint: `SHA256:` + unpadded base64 of the blob's SHA-256. */
export function fingerprint(blob: Uint8Array): string {
  return "SHA256:" + createHash("sha256").update(blob).digest("base64").replace(/=+$/, "");
}

/** The host name as known_hosts writes it: `host` on port 22, else `[host]:port`. */
export function hostPattern(host: string, port: number): string {
  return port === 22 ? host : `[${host}]:${port}`;
}

/** The line `accept-new` appends for a newly seen host. */
export function knownHostsLine(host: string, port: number, blob: Uint8Array): string {
  return `${hostPattern(host, port)} ${keyType(blob)} ${Buffer.from(blob).toString("base64")}`;
}

function globMatch(pattern: string, text: string): boolean {
  const re = "^" + pattern.replace(/[.+^${}()|[\]\\]/g, "\\$&").replace(/\*/g, ".*").replace(/\?/g, ".") + "$";
  return new RegExp(re, "i").test(text);
}

function hostMatches(field: string, name: string): boolean {
  if (field.startsWith("|1|")) {
    const [, , salt, hash] = field.split("|");
    if (!salt || !hash) return false;
    const mac = createHmac("sha1", Buffer.from(salt, "base64")).update(name).digest("base64");
    return mac === hash;
  }
  let matched = false;
  for (const raw of field.split(",")) {
    const negated = raw.startsWith("!");
    const pattern = negated ? raw.slice(1) : raw;
    if (globMatch(pattern, name)) {
      if (negated) return false;
      matched = true;
    }
  }
  return matched;
}

/** Key types listed for a host (to prefer them in the key exchange, as OpenSSH does). */
export function knownKeyTypes(text: string, host: string, port: number): string[] {
  return [...new Set(checkKnownHosts(text, host, port, new Uint8Array()).known.map((k) => k.type))];
}

/** Looks up `blob` for `host:port` in known_hosts `text`. */
export function checkKnownHosts(text: string, host: string, port: number, blob: Uint8Array): KnownHostsCheck {
  const name = hostPattern(host, port);
  const offered = Buffer.from(blob).toString("base64");
  const known: KnownKey[] = [];
  let match: number | undefined;
  let revoked: number | undefined;
  const lines = text.split("\n");
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i].trim();
    if (!line || line.startsWith("#")) continue;
    const parts = line.split(/\s+/);
    let marker: KnownKey["marker"];
    if (parts[0].startsWith("@")) {
      marker = parts[0] === "@revoked" ? "revoked" : "cert-authority";
      parts.shift();
    }
    if (parts.length < 3) continue;
    const [hosts, type, key] = parts;
    if (marker === "revoked") {
      // A revoked key is refused for every host.
      if (key === offered) revoked = i + 1;
      continue;
    }
    if (marker === "cert-authority" || !hostMatches(hosts, name)) continue;
    let fp = "?";
    try {
      fp = fingerprint(Buffer.from(key, "base64"));
    } catch { /* malformed key: still listed */ }
    known.push({ line: i + 1, type, fingerprint: fp, marker });
    if (key === offered && match === undefined) match = i + 1;
  }
  if (revoked !== undefined) return { status: "revoked", line: revoked, known };
  if (match !== undefined) return { status: "match", line: match, known };
  return { status: known.length > 0 ? "mismatch" : "unknown", known };
}
