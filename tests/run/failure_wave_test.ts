// A wave of node failures as one report: nodes with the same reason (their own names and addresses aside) grouped on
// one line that names every node; distinct reasons each on their own line. At launch, and mid-run in a step's report.

import { genericReason, waveReport } from "../../orchestrator/cluster/failure_wave.ts";
import { failureReport } from "../../orchestrator/run/failure_report.ts";
import type { Fault, RankPlace } from "../../orchestrator/cluster/fault.ts";
import type { NodeLaunch } from "../../orchestrator/cluster/cluster_session.ts";
import { assertEquals } from "../assert.ts";

Deno.test("wave report: 3 refused nodes grouped, one timeout alone, every node named once", () => {
  const refused = (i: number) => ({
    name: `node ${i} (10.0.0.${i})`,
    host: `10.0.0.${i}`,
    error: `node ${i} (10.0.0.${i}): cannot connect to 10.0.0.${i}:22: connection refused (is sshd running there?)`,
  });
  const slow = {
    name: "node 9 (10.0.0.9)",
    host: "10.0.0.9",
    error: "node 9 (10.0.0.9): cannot connect to 10.0.0.9:22: no answer within 5 s\nsecond line",
  };
  assertEquals(genericReason(refused(1)), "cannot connect to <host>:22: connection refused (is sshd running there?)");
  assertEquals(
    waveReport("launch failed", [refused(1), slow, refused(2), refused(10)], 32),
    [
      "launch failed on 4 of 32 node(s):",
      "  3 nodes: cannot connect to <host>:22: connection refused (is sshd running there?)",
      "    node 1 (10.0.0.1), node 2 (10.0.0.2), node 10 (10.0.0.10)",
      "  node 9 (10.0.0.9): cannot connect to 10.0.0.9:22: no answer within 5 s",
    ].join("\n"),
  );
});

Deno.test("step report: 16 nodes lost at once are named once each, grouped by reason; other nodes' echoes follow", () => {
  const nodes = Array.from({ length: 32 }, (_, i) =>
    ({
      name: `node ${i} (10.0.0.${i + 10})`,
      config: { host: `10.0.0.${i + 10}`, index: i },
    }) as unknown as NodeLaunch);
  const places: RankPlace[] = nodes.flatMap((node, i) =>
    [0, 1].map((d) => ({ rank: 2 * i + d, node, device: d, kind: "sim" as const }))
  );
  const lost = (i: number, why: string): Fault => ({
    kind: "node_lost",
    node: nodes[i],
    reason: `node lost: ${why}`,
    detail: why,
    atMs: i,
  });
  const faults = [
    lost(20, "control channel dropped: write EPIPE"),
    ...Array.from({ length: 16 }, (_, k) => 8 + k).filter((i) => i !== 20).map((i) =>
      lost(i, "control channel dropped: SSH connection closed")
    ),
    {
      kind: "executor_error",
      node: nodes[2],
      rank: 4,
      reason: "data plane: rank 16 disconnected",
      detail: "",
      atMs: 99,
    },
  ] as Fault[];
  const text = failureReport("step 4", faults, places);
  for (let i = 8; i < 24; i++) {
    assertEquals(text.split(`node ${i} (10.0.0.${i + 10})`).length - 1, 1, `node ${i} named once:\n${text}`);
  }
  assertEquals(text.split("\n").slice(0, 5), [
    "step 4 failed: node lost on 16 of 32 node(s):",
    "  15 nodes: control channel dropped: SSH connection closed",
    "    " + [8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 21, 22, 23].map((i) => `node ${i} (10.0.0.${i + 10})`)
      .join(", "),
    "  node 20 (10.0.0.30): control channel dropped: write EPIPE",
    "  then, as a consequence:",
  ]);
  assertEquals(text.split("\n")[5], "    rank 4 on node 2 (10.0.0.12): data plane: rank 16 disconnected");
});
