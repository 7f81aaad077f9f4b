// The profile's check that a node's executors do not compete for cores (core_sharing.ts), and the CPU lists it reads
// (core/cpu_list.ts): more executors than cores, overlapping pinned sets, unpinned executors, and disjoint sets.

import { assertEquals, assertIncludes, assertThrows } from "../assert.ts";
import { coreSharingWarnings, type ExecutorCores } from "../../orchestrator/profile/core_sharing.ts";
import { autoCpuSets, formatCpuList, parseCpuList } from "../../core/cpu_list.ts";

const on = (node: number, nodeCpus: number, sets: (string | undefined)[], pinned: boolean): ExecutorCores[] =>
  sets.map((cpus, i) => ({ rank: node * 10 + i, node: `node${node}`, nodeIndex: node, nodeCpus, cpus, pinned }));

Deno.test("CPU lists parse and print as the kernel writes them", async () => {
  assertEquals(parseCpuList("0-3,8, 10-11"), [0, 1, 2, 3, 8, 10, 11]);
  assertEquals(formatCpuList([5, 0, 1, 2, 10]), "0-2,5,10");
  assertIncludes(await assertThrows(() => parseCpuList("1-x")), '"1-x" is not a CPU number or range');
  assertEquals(autoCpuSets([0, 1, 2, 3, 4], 2), [[0, 1], [2, 3]]);
  assertEquals(autoCpuSets([0, 1], 4), [[0], [1], [0], [1]]);
});

Deno.test("core sharing: disjoint pinned sets, or one executor per node, give no warning", () => {
  assertEquals(coreSharingWarnings([...on(0, 4, ["0-1", "2-3"], true), ...on(1, 2, ["0-1"], false)]), []);
});

Deno.test("core sharing: more executors than cores is a warning, whatever the pinning", () => {
  const w = coreSharingWarnings(on(0, 2, ["0", "1", "0", "1"], true));
  assertEquals(w.length, 1);
  assertIncludes(w[0], "node0: 4 executors on 2 core(s): they time-share cores", "at most 2 device(s)");
});

Deno.test("core sharing: overlapping pinned sets name the ranks and CPUs; unpinned executors point to auto", () => {
  const pinned = coreSharingWarnings(on(0, 8, ["0-3", "2-5"], true));
  assertEquals(pinned, [
    "node0: ranks 0 and 1 share CPU 2-3: give each executor disjoint CPUs in cluster.nodes[0].cpu_pinning, or use auto",
  ]);
  const unpinned = coreSharingWarnings([...on(0, 4, ["0-3", "0-3"], false), ...on(1, 4, ["0-1", "2-3"], true)]);
  assertEquals(unpinned, [
    "node0: its 2 executors are not pinned and may run on the same cores (0-3): set cluster.nodes[0].cpu_pinning: " +
    "auto to give each its own",
  ]);
});
