// A wave of node failures as one report: nodes with the same reason (their own names and addresses aside) grouped on
// one line that names every node; distinct reasons each on their own line.

import { genericReason, waveReport } from "../../orchestrator/cluster/failure_wave.ts";
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
