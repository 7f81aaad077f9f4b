// The emulated two-tier network of the test hosts: each host is a node; links between nodes are shaped like a
// cluster's InfiniBand (bandwidth and latency), links inside a node (executors talking over the host's loopback) ten
// times faster, like NVLink. Pass `shaping: await twoTierNetwork()` to startTestHosts.
//
// Why these numbers: per GPU, an A100 node's NVLink gives about 300 GB/s each way and its InfiniBand HCA (one 200-400
// Gbit/s port per GPU, the paper's 400 Gbit/s) 25-50 GB/s, and the paper's measured all-to-all table is 97-120 GB/s
// inside a node and 5-10 GB/s across nodes: 6-24x. We take 10:1. The absolute rates are scaled down to what this
// machine's loopback carries with room to spare (about 8.5 Gbit/s unshaped on 2 busy cores): 2 Gbit/s inside a node
// and 200 Mbit/s between nodes, each node's link shared by its devices as an HCA is. The inter-node latency, 0.2 ms
// one way (over the tens of microseconds of the namespaces' own TCP path), stands for the switch hops and the
// software stack that an inter-node message crosses and an NVLink transfer does not; small exchanges then cost more
// across nodes, as they do on a cluster. tc adds latency with the netem qdisc; a kernel without it (this machine's:
// "Specified qdisc kind is unknown") gets the two bandwidths alone, and twoTierNetwork says so.

import { netemAvailable } from "./test_hosts.ts";

/** Inter-node link rate per node (Mbit/s). */
export const INTER_NODE_MBIT = 200;
/** Loopback rate inside each node (Mbit/s): 10x the inter-node link. */
export const INTRA_NODE_MBIT = 10 * INTER_NODE_MBIT;
/** One-way latency added between nodes (ms). */
export const INTER_NODE_DELAY_MS = 0.2;

/** The `shaping` option of startTestHosts for the two-tier network, and what of it this kernel cannot apply. */
export async function twoTierNetwork(): Promise<{
  shaping: { rateMbit: number; delayMs?: number; intraRateMbit: number };
  note?: string;
}> {
  const shaping = { rateMbit: INTER_NODE_MBIT, intraRateMbit: INTRA_NODE_MBIT };
  if (await netemAvailable()) return { shaping: { ...shaping, delayMs: INTER_NODE_DELAY_MS } };
  return { shaping, note: `no netem qdisc in this kernel: no added inter-node latency (${INTER_NODE_DELAY_MS} ms)` };
}
