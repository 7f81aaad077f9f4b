// known_hosts matching and fingerprints, checked against OpenSSH's own tools on generated keys.

import { createHmac } from "node:crypto";
import { Buffer } from "node:buffer";
import {
  checkKnownHosts,
  fingerprint,
  keyType,
  knownHostsLine,
  knownKeyTypes,
} from "../../orchestrator/cluster/known_hosts.ts";
import { assert, assertEquals } from "../assert.ts";

const hasKeygen = (() => {
  try {
    Deno.statSync("/usr/bin/ssh-keygen");
    return true;
  } catch {
    return false;
  }
})();

async function genKey(dir: string, name: string): Promise<{ line: string; blob: Uint8Array; fp: string }> {
  const path = `${dir}/${name}`;
  await new Deno.Command("ssh-keygen", { args: ["-q", "-t", "ed25519", "-N", "", "-f", path] }).output();
  const line = (await Deno.readTextFile(`${path}.pub`)).trim();
  const out = await new Deno.Command("ssh-keygen", { args: ["-l", "-E", "sha256", "-f", `${path}.pub`] }).output();
  const fp = new TextDecoder().decode(out.stdout).split(" ")[1];
  return { line, blob: new Uint8Array(Buffer.from(line.split(" ")[1], "base64")), fp };
}

Deno.test({
  name: "known_hosts: plain, [host]:port, hashed, wildcard, negated, mismatch, revoked",
  ignore: !hasKeygen,
  fn: async () => {
    const dir = await Deno.makeTempDir({ prefix: "fxkh-" });
    try {
      const a = await genKey(dir, "a");
      const b = await genKey(dir, "b");
      const [, typeA, keyA] = ["", ...a.line.split(" ")];
      const keyB = b.line.split(" ")[1];
      assertEquals(fingerprint(a.blob), a.fp, "fingerprint as ssh-keygen -l prints it");
      assertEquals(keyType(a.blob), "ssh-ed25519");
      assertEquals(typeA, "ssh-ed25519");

      const salt = Buffer.from("0123456789abcdef0123");
      const hashed = `|1|${salt.toString("base64")}|${
        createHmac("sha1", salt).update("hashed.example").digest("base64")
      }`;
      const text = [
        "# comment",
        `10.0.0.1 ssh-ed25519 ${keyA}`,
        `[10.0.0.1]:2222 ssh-ed25519 ${keyB}`,
        `${hashed} ssh-ed25519 ${keyA}`,
        `*.lab,!bad.lab ssh-ed25519 ${keyA}`,
        `10.0.0.9 ssh-ed25519 ${keyB}`,
      ].join("\n");
      assertEquals(checkKnownHosts(text, "10.0.0.1", 22, a.blob).status, "match");
      assertEquals(checkKnownHosts(text, "10.0.0.1", 22, a.blob).line, 2);
      assertEquals(checkKnownHosts(text, "10.0.0.1", 2222, b.blob).status, "match", "port-specific entry");
      assertEquals(checkKnownHosts(text, "10.0.0.1", 2222, a.blob).status, "mismatch");
      assertEquals(checkKnownHosts(text, "hashed.example", 22, a.blob).status, "match", "hashed entry");
      assertEquals(checkKnownHosts(text, "n1.lab", 22, a.blob).status, "match", "wildcard");
      assertEquals(checkKnownHosts(text, "bad.lab", 22, a.blob).status, "unknown", "negated pattern");
      const mm = checkKnownHosts(text, "10.0.0.9", 22, a.blob);
      assertEquals(mm.status, "mismatch");
      assertEquals(mm.known.map((k) => [k.line, k.fingerprint]), [[6, b.fp]]);
      assertEquals(checkKnownHosts(text, "10.0.0.2", 22, a.blob).status, "unknown");
      assertEquals(knownKeyTypes(text, "10.0.0.1", 22), ["ssh-ed25519"]);

      const revoked = text + `\n@revoked * ssh-ed25519 ${keyA}`;
      assertEquals(checkKnownHosts(revoked, "10.0.0.1", 22, a.blob).status, "revoked");

      // The line accept-new writes is understood by OpenSSH itself.
      const line = knownHostsLine("10.1.2.3", 2200, a.blob);
      await Deno.writeTextFile(`${dir}/kh`, line + "\n");
      const found = await new Deno.Command("ssh-keygen", { args: ["-F", "[10.1.2.3]:2200", "-f", `${dir}/kh`] })
        .output();
      assert(found.success, "ssh-keygen -F finds the appended line");
      assertEquals(checkKnownHosts(line, "10.1.2.3", 2200, a.blob).status, "match");
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
