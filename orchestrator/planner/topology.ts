// The devices a plan places groups on: global ranks in node order, each with its node, speed and memory.

import type { Config, CostConstants } from "../config/types.ts";

/** The cluster as the planner sees it. Ranks are numbered node by node, in config order. */
export interface Topology {
  /** Number of devices (ranks). */
  devices: number;
  /** Node index of each rank. */
  nodeOf: number[];
  /** Host name of each node. */
  hosts: string[];
  /** Relative compute speed of each rank (1 = profiled speed). */
  speed: number[];
  /** Memory of each rank in GB, when configured (else the planner's budget applies alone). */
  memoryGb: (number | undefined)[];
}

/** Builds a topology from explicit per-node device counts (helper for tests and benchmarks). */
export function uniformTopology(nodes: number[] | number, devicesPerNode = 1, speed = 1): Topology {
  const sizes = Array.isArray(nodes) ? nodes : new Array(nodes).fill(devicesPerNode);
  const nodeOf: number[] = [];
  sizes.forEach((n, i) => {
    for (let k = 0; k < n; k++) nodeOf.push(i);
  });
  return {
    devices: nodeOf.length,
    nodeOf,
    hosts: sizes.map((_, i) => `node${i}`),
    speed: nodeOf.map(() => speed),
    memoryGb: nodeOf.map(() => undefined),
  };
}

/** Topology of a config: node speeds times the profiled per-executor speed. */
export function topologyOf(config: Config, constants?: CostConstants): Topology {
  const nodeOf: number[] = [];
  const speed: number[] = [];
  const memoryGb: (number | undefined)[] = [];
  for (const node of config.cluster.nodes) {
    const kindSpeed = constants?.deviceSpeed?.[node.executor] ?? 1;
    for (let k = 0; k < node.devices; k++) {
      nodeOf.push(node.index);
      speed.push(node.speed * kindSpeed);
      memoryGb.push(node.deviceMemoryGb);
    }
  }
  return { devices: nodeOf.length, nodeOf, hosts: config.cluster.nodes.map((n) => n.host), speed, memoryGb };
}

/** Whether the aligned block [start, start+degree) spans more than one node. */
export function spansNodes(topo: Topology, start: number, degree: number): boolean {
  return topo.nodeOf[start] !== topo.nodeOf[start + degree - 1];
}

/** Slowest speed in a block (a group runs at its slowest device). */
export function blockSpeed(topo: Topology, start: number, degree: number): number {
  let s = Infinity;
  for (let r = start; r < start + degree; r++) s = Math.min(s, topo.speed[r]);
  return s;
}
