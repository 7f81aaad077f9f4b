// Protocol validation: malformed, unknown, wrong-channel and wrong-version lines are reported with their source and
// dropped; a byte stream split anywhere still yields every valid message.

import { checkMessage, encodeMessage, parseMessage, PROTOCOL_VERSION, readMessages } from "../../core/protocol.ts";
import type { AgentCommand, AgentEvent } from "../../core/protocol.ts";
import { assert, assertEquals, assertIncludes } from "../assert.ts";

Deno.test("encodeMessage stamps the version and round-trips through parseMessage", () => {
  const line = encodeMessage({ type: "ping", id: 3, t: 1.5 });
  assert(line.endsWith("\n"));
  const r = parseMessage<AgentCommand>(line.trim(), "test", "agent_command");
  assert(r.ok);
  assertEquals(r.msg, { v: PROTOCOL_VERSION, type: "ping", id: 3, t: 1.5 } as unknown as AgentCommand);
});

Deno.test("bad lines are reported with their source, never thrown", () => {
  const cases: [string, string][] = [
    ["not json at all", "not JSON"],
    ["[1,2]", "not a JSON object"],
    ['{"id":1}', 'missing "type"'],
    ['{"type":"launch_missiles"}', 'unknown message type "launch_missiles"'],
    ['{"type":"ping","id":"x","t":1}', '"ping" needs id: number'],
    ['{"v":99,"type":"ping","id":1,"t":1}', "protocol version 99"],
    ['{"type":"to_executor","rank":0,"msg":{"type":"step"}}', 'inner msg: "step" needs plan: object'],
  ];
  for (const [line, want] of cases) {
    const r = parseMessage(line, "agent on node 3 (h)");
    assert(!r.ok, `accepted ${line}`);
    assertIncludes(r.error, "agent on node 3 (h)", want);
  }
});

Deno.test("a channel accepts only its own messages", () => {
  // An agent event arriving where agent commands are expected.
  const r = parseMessage('{"type":"heartbeat","t":1,"executors":[]}', "orchestrator", "agent_command");
  assert(!r.ok);
  assertIncludes(r.error, "does not belong on the agent command channel");
  // hello differs by direction: the agent's must carry an inventory.
  assertIncludes(checkMessage({ type: "hello", version: 1 }, "agent_event")!, "inventory");
  assertEquals(
    checkMessage({ type: "hello", version: 1, runId: "r", runDir: "/tmp", heartbeatMs: 100 }, "agent_command"),
    undefined,
  );
  // spawn entries are checked field by field.
  assertIncludes(
    checkMessage({ type: "spawn", executors: [{ rank: 0, device: 0, kind: "tpu" }] }, "agent_command")!,
    "kind must be one of",
  );
  assertIncludes(
    checkMessage({ type: "spawn", executors: [{ rank: 0, device: 0, kind: "cpu", command: [1] }] }, "agent_command")!,
    "command must be a list of strings",
  );
  // an executor event smuggled into to_executor is refused.
  assertIncludes(
    checkMessage({ type: "to_executor", rank: 0, msg: { type: "connected", rank: 0 } }, "agent_command")!,
    "inner msg",
  );
  // step_progress (the hang watch's per-micro-batch report) travels from executors only, with all its fields.
  const progress = { type: "step_progress", rank: 1, step: 3, microBatch: 0, ms: 12.5 };
  assertEquals(checkMessage({ type: "from_executor", rank: 1, msg: progress }, "agent_event"), undefined);
  assertIncludes(checkMessage({ ...progress, microBatch: "0" }, "executor_event")!, "microBatch: number");
  assertIncludes(checkMessage(progress, "executor_command")!, "does not belong on the executor command channel");
});

Deno.test("readMessages reassembles lines split across chunks and skips bad ones", async () => {
  const events: AgentEvent[] = [
    { type: "pong", id: 1, t: 2 },
    { type: "log", level: "info", text: "x".repeat(5000) + " ünïcode" },
    { type: "heartbeat", t: 3, executors: [] },
  ];
  const text = encodeMessage(events[0]) + "garbage line\n\n" + encodeMessage(events[1]) + encodeMessage(events[2]);
  const bytes = new TextEncoder().encode(text);
  // Chunks of 7 bytes split lines and multi-byte characters.
  const stream = new ReadableStream<Uint8Array>({
    start(c) {
      for (let i = 0; i < bytes.length; i += 7) c.enqueue(bytes.slice(i, i + 7));
      c.close();
    },
  });
  const errors: string[] = [];
  const got: AgentEvent[] = [];
  for await (const m of readMessages<AgentEvent>(stream, "src", (e) => errors.push(e), "agent_event")) got.push(m);
  assertEquals(got.map((m) => m.type), ["pong", "log", "heartbeat"]);
  assertEquals((got[1] as { text: string }).text, (events[1] as { text: string }).text);
  assertEquals(errors.length, 1);
  assertIncludes(errors[0], "src: not JSON: garbage line");
});

Deno.test("a final line without a newline is still read", async () => {
  const stream = new ReadableStream<Uint8Array>({
    start(c) {
      c.enqueue(new TextEncoder().encode('{"type":"ping","id":1,"t":0}'));
      c.close();
    },
  });
  const got = [];
  for await (const m of readMessages(stream, "s", () => {}, "agent_command")) got.push(m);
  assertEquals(got.length, 1);
});

Deno.test("connected: the SP-group pool timings are optional, but a list when present", () => {
  // The TypeScript executors build no SP-group pool and send none; the PyTorch ones send one entry per degree.
  assertEquals(checkMessage({ type: "connected", rank: 0 }, "executor_event"), undefined);
  assertEquals(
    checkMessage({ type: "connected", rank: 1, pool: [{ degree: 2, groups: 2, ms: 1.5 }] }, "executor_event"),
    undefined,
  );
  assertIncludes(
    checkMessage({ type: "connected", rank: 0, pool: { degree: 2 } }, "executor_event")!,
    '"connected" needs pool: array (or no pool)',
  );
  assertIncludes(checkMessage({ type: "connected", pool: [] }, "executor_event")!, '"connected" needs rank: number');
});
