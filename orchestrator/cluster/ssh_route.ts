// How to reach an SSH node as the user's own `ssh` would: the node's Host entry in the ssh config (HostName, User,
// Port, IdentityFile, UserKnownHostsFile, ProxyJump) under the keys the cluster config sets, and the bastions to go
// through (`cluster.nodes[].jump`, else ProxyJump), each resolved in the same ssh config.

import type { NodeConfig } from "../config/types.ts";
import { type SshTarget, sshTargetOf } from "./ssh_transport.ts";
import { parseJumpSpec, readSshConfig, resolveSshHost } from "./ssh_config.ts";

/** Default ssh config path. */
export const DEFAULT_SSH_CONFIG = "~/.ssh/config";

/** The SSH target of a node with its ssh config entry and jump hosts applied. */
export function sshTargetFor(node: NodeConfig, connectTimeoutS: number, keepaliveMs = 5000): SshTarget {
  const base = sshTargetOf(node, connectTimeoutS, keepaliveMs);
  const file = node.sshConfig ?? DEFAULT_SSH_CONFIG;
  const text = readSshConfig(file);
  const hc = text ? resolveSshHost(node.host, text, file) : {};
  const target: SshTarget = {
    ...base,
    host: hc.hostName ?? node.host,
    user: node.user ?? hc.user ?? base.user,
    // The schema's default port is 22: a Port from the ssh config applies unless the node sets another.
    port: node.port !== 22 ? node.port : hc.port ?? 22,
    identity: node.identity ?? hc.identityFile,
    knownHosts: node.knownHosts ?? hc.userKnownHostsFile,
  };
  const hops = node.jump ?? hc.proxyJump ?? [];
  target.jump = hops.map((spec) => {
    const j = parseJumpSpec(spec);
    const jc = text ? resolveSshHost(j.host, text, file) : {};
    return {
      ...base,
      host: jc.hostName ?? j.host,
      port: j.port ?? jc.port ?? 22,
      user: j.user ?? jc.user ?? target.user,
      identity: jc.identityFile ?? target.identity,
      knownHosts: jc.userKnownHostsFile ?? target.knownHosts,
      what: `${base.what}: jump host ${spec}`,
    };
  });
  if (hc.hostName && hc.hostName !== node.host) target.what = `${base.what} (${hc.hostName})`;
  return target;
}
