// TCP throughput between two test hosts (or inside one), for checking shaped links: `measureTcpMbit` runs this file
// as a receiver in one network namespace and a sender in another and returns the receiver's rate. As a script:
// `serve HOST PORT` accepts one connection, reads it to the end and prints `{"bytes":N,"first":F,"ms":T}` (F: the first
// read's bytes; T: from the first read to the last);
// `send HOST PORT BYTES` writes that many bytes and closes.

const SELF = new URL(import.meta.url).pathname;

/** Where to measure: the receiver listens on `toIp` inside `toNetns`, the sender runs inside `fromNetns`. */
export interface TcpPath {
  fromNetns: string;
  toNetns: string;
  toIp: string;
}

/**
 * Sends `bytes` over one TCP connection along `path`; the receiver's Mbit/s (10^6 bit/s): the bytes after its first
 * read over the time from that read to the last (what arrives in the first read took no measured time).
 */
export async function measureTcpMbit(path: TcpPath, bytes: number): Promise<number> {
  const port = 20000 + (Deno.pid * 31 + Math.floor(performance.now())) % 20000;
  const server = new Deno.Command("ip", {
    args: [
      "netns",
      "exec",
      path.toNetns,
      Deno.execPath(),
      "run",
      "-A",
      "--no-config",
      SELF,
      "serve",
      path.toIp,
      `${port}`,
    ],
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const reader = server.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let out = "";
  try {
    while (!out.includes("listening")) {
      const { value, done } = await reader.read();
      if (done) {
        throw new Error(`receiver did not start: ${out}${await new Response(server.stderr).text()}`);
      }
      out += value;
    }
    const send = await new Deno.Command("ip", {
      args: [
        "netns",
        "exec",
        path.fromNetns,
        Deno.execPath(),
        "run",
        "-A",
        "--no-config",
        SELF,
        "send",
        path.toIp,
        `${port}`,
        `${bytes}`,
      ],
      stdout: "null",
      stderr: "piped",
    }).output();
    if (!send.success) throw new Error(`sender failed: ${new TextDecoder().decode(send.stderr)}`);
    out = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      out += value;
    }
  } finally {
    try {
      server.kill("SIGKILL");
    } catch { /* exited */ }
    await server.status;
    await server.stderr.cancel().catch(() => {});
  }
  const r = JSON.parse(out.trim().split("\n").at(-1)!) as { bytes: number; first: number; ms: number };
  if (r.bytes !== bytes) throw new Error(`receiver got ${r.bytes} of ${bytes} bytes`);
  return ((r.bytes - r.first) * 8) / (r.ms * 1000);
}

if (import.meta.main) {
  const [mode, host, port, count] = Deno.args;
  if (mode === "serve") {
    const listener = Deno.listen({ hostname: host, port: Number(port) });
    console.log("listening");
    const conn = await listener.accept();
    const buf = new Uint8Array(1 << 20);
    let bytes = 0;
    let first = 0;
    let t0 = 0;
    for (;;) {
      const n = await conn.read(buf);
      if (n === null) break;
      if (bytes === 0) [t0, first] = [performance.now(), n];
      bytes += n;
    }
    console.log(JSON.stringify({ bytes, first, ms: performance.now() - t0 }));
    conn.close();
    listener.close();
  } else if (mode === "send") {
    const conn = await Deno.connect({ hostname: host, port: Number(port) });
    const chunk = new Uint8Array(1 << 16).fill(7);
    let left = Number(count);
    while (left > 0) {
      const part = left >= chunk.length ? chunk : chunk.subarray(0, left);
      let off = 0;
      while (off < part.length) off += await conn.write(part.subarray(off));
      left -= part.length;
    }
    conn.close();
  } else {
    console.error("usage: tcp_throughput.ts serve HOST PORT | send HOST PORT BYTES");
    Deno.exit(2);
  }
}
