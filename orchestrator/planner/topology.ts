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
  /** Planner memory budget of each rank in GB, when its node sets one (else the cost model's budget). */
  budgetGb?: (number | undefined)[];
  /** Device type of each node, e.g. "cuda 80GB x2" (executor, memory, speed); nodes alike share a type. */
  deviceType?: string[];
}

/** Label of a device type: executor kind, configured memory (else the budget) and relative speed (when not 1). */
export function deviceTypeLabel(executor: string, memoryGb?: number, speed = 1, budgetGb?: number): string {
  const parts = [executor];
  if (memoryGb !== undefined) parts.push(`${memoryGb}GB`);
  else if (budgetGb !== undefined) parts.push(`${budgetGb}GB budget`);
  if (speed !== 1) parts.push(`x${+speed.toFixed(3)}`);
  return parts.join(" ");
}

/** Device type of a rank (its node's), or "" when the topology has none. */
export function rankType(topo: Topology, rank: number): string {
  return topo.deviceType?.[topo.nodeOf[rank]] ?? "";
}

/** A mixed topology: node groups given as {nodes, devices per node, speed, memory budget GB, label}. */
export function mixedTopology(
  parts: { nodes: number; devicesPerNode: number; speed?: number; budgetGb?: number; type?: string }[],
): Topology {
  const nodeOf: number[] = [];
  const speed: number[] = [];
  const budgetGb: (number | undefined)[] = [];
  const deviceType: string[] = [];
  let node = 0;
  for (const p of parts) {
    for (let n = 0; n < p.nodes; n++, node++) {
      deviceType.push(p.type ?? deviceTypeLabel("device", p.budgetGb, p.speed ?? 1));
      for (let k = 0; k < p.devicesPerNode; k++) {
        nodeOf.push(node);
        speed.push(p.speed ?? 1);
        budgetGb.push(p.budgetGb);
      }
    }
  }
  return {
    devices: nodeOf.length,
    nodeOf,
    hosts: deviceType.map((_, i) => `node${i}`),
    speed,
    memoryGb: nodeOf.map(() => undefined),
    budgetGb,
    deviceType,
  };
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

/**
 * Topology of a config: node speeds times the profiled per-executor speed; each node's memory budget is its
 * `memory_budget_gb`, else `planner.memory_budget_gb`, else 90% of its own device memory.
 */
export function topologyOf(config: Config, constants?: CostConstants): Topology {
  const nodeOf: number[] = [];
  const speed: number[] = [];
  const memoryGb: (number | undefined)[] = [];
  const budgetGb: (number | undefined)[] = [];
  const deviceType: string[] = [];
  for (const node of config.cluster.nodes) {
    const kindSpeed = constants?.deviceSpeed?.[node.executor] ?? 1;
    const budget = nodeBudgetGb(config, node.index);
    deviceType.push(deviceTypeLabel(node.executor, node.deviceMemoryGb, node.speed * kindSpeed, node.memoryBudgetGb));
    for (let k = 0; k < node.devices; k++) {
      nodeOf.push(node.index);
      speed.push(node.speed * kindSpeed);
      memoryGb.push(node.deviceMemoryGb);
      budgetGb.push(budget);
    }
  }
  return {
    devices: nodeOf.length,
    nodeOf,
    hosts: config.cluster.nodes.map((n) => n.host),
    speed,
    memoryGb,
    budgetGb,
    deviceType,
  };
}

/** Memory budget (GB) of node i's devices, or undefined when only the cost model's global budget applies. */
export function nodeBudgetGb(config: Config, i: number): number | undefined {
  const node = config.cluster.nodes[i];
  if (node.memoryBudgetGb !== undefined) return node.memoryBudgetGb;
  if (config.planner.memoryBudgetGb !== undefined) return config.planner.memoryBudgetGb;
  return node.deviceMemoryGb !== undefined ? 0.9 * node.deviceMemoryGb : undefined;
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
