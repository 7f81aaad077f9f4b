// The dashboard's HTTP server: `/` the page, `/api/state` the run's snapshot as JSON, `/events` the same snapshot
// pushed as server-sent events on every change (and every 2 s, for heartbeat ages), `/metrics` Prometheus text.
// Loopback and a free port unless configured; every request must carry the run's random token (`?token=` or
// `Authorization: Bearer`), else 401.

import { timingSafeEqual } from "node:crypto";
import { UserError } from "../../errors.ts";
import { DASHBOARD_PAGE } from "./dashboard_page.ts";
import type { RunMetrics } from "./metrics.ts";
import type { RunState } from "./run_state.ts";

/** Where the dashboard listens. */
export interface DashboardOptions {
  /** Listen address (default 127.0.0.1). */
  listen?: string;
  /** Port (0 or absent: a free one). */
  port?: number;
  /** The token (default: 32 random hex digits). */
  token?: string;
  /** Where the URL with the token is to be found, for the 401 (default: what the run printed, RUN_DIR/dashboard.url). */
  tokenSource?: string;
}

/** A running dashboard. */
export interface Dashboard {
  /** The URL with the token, e.g. `http://127.0.0.1:40123/?token=...`. */
  url: string;
  port: number;
  token: string;
  close(): Promise<void>;
}

/** A fresh random token. */
export function newToken(): string {
  return [...crypto.getRandomValues(new Uint8Array(16))].map((b) => b.toString(16).padStart(2, "0")).join("");
}

function authorized(req: Request, url: URL, token: string): boolean {
  const given = url.searchParams.get("token") ??
    (req.headers.get("authorization") ?? "").replace(/^Bearer\s+/i, "");
  const a = new TextEncoder().encode(given), b = new TextEncoder().encode(token);
  return a.length === b.length && timingSafeEqual(a, b);
}

/** Serves a run's state (see the file header). */
export function serveDashboard(state: RunState, metrics: RunMetrics, opts: DashboardOptions = {}): Dashboard {
  const token = opts.token ?? newToken();
  const hostname = opts.listen ?? "127.0.0.1";
  const streams = new Set<ReadableStreamDefaultController<Uint8Array>>();
  const enc = new TextEncoder();
  const push = () => {
    if (!streams.size) return;
    const msg = enc.encode(`data: ${JSON.stringify(state.snapshot())}\n\n`);
    for (const c of streams) {
      try {
        c.enqueue(msg);
      } catch {
        streams.delete(c);
      }
    }
  };
  const off = state.onChange(push);
  const tick = setInterval(push, 2000);
  Deno.unrefTimer(tick);
  let server: Deno.HttpServer<Deno.NetAddr>;
  try {
    server = Deno.serve({ hostname, port: opts.port ?? 0, onListen: () => {} }, async (req) => {
      const url = new URL(req.url);
      if (req.method !== "GET" && req.method !== "HEAD") {
        return new Response("405 method not allowed: the dashboard is read-only (GET)\n", {
          status: 405,
          headers: { allow: "GET, HEAD", "content-type": "text/plain; charset=utf-8" },
        });
      }
      if (!authorized(req, url, token)) {
        return new Response(
          `401 unauthorized: open the URL with ?token= that ${
            opts.tokenSource ?? "the run printed (RUN_DIR/dashboard.url)"
          }\n`,
          {
            status: 401,
            headers: { "content-type": "text/plain; charset=utf-8" },
          },
        );
      }
      switch (url.pathname) {
        case "/":
          return new Response(DASHBOARD_PAGE, { headers: { "content-type": "text/html; charset=utf-8" } });
        case "/api/state":
          return Response.json(state.snapshot(), { headers: { "cache-control": "no-store" } });
        case "/metrics":
          return new Response(await metrics.text(), { headers: { "content-type": metrics.contentType } });
        case "/events": {
          let ctl: ReadableStreamDefaultController<Uint8Array>;
          const body = new ReadableStream<Uint8Array>({
            start(c) {
              ctl = c;
              streams.add(c);
              c.enqueue(enc.encode(`retry: 1000\ndata: ${JSON.stringify(state.snapshot())}\n\n`));
            },
            cancel() {
              streams.delete(ctl);
            },
          });
          return new Response(body, {
            headers: { "content-type": "text/event-stream", "cache-control": "no-store", connection: "keep-alive" },
          });
        }
        default:
          return new Response("not found\n", { status: 404 });
      }
    });
  } catch (e) {
    clearInterval(tick);
    off();
    throw new UserError(
      `dashboard: cannot listen on ${hostname}:${opts.port ?? 0} (${(e as Error).message}); pick another ` +
        `--dashboard-port or observe.listen, or set observe.dashboard: false`,
    );
  }
  const port = server.addr.port;
  const shown = hostname.includes(":") ? `[${hostname}]` : hostname === "0.0.0.0" ? Deno.hostname() : hostname;
  return {
    url: `http://${shown}:${port}/?token=${token}`,
    port,
    token,
    close: async () => {
      clearInterval(tick);
      off();
      for (const c of streams) {
        try {
          c.close();
        } catch { /* closed */ }
      }
      streams.clear();
      await server.shutdown();
    },
  };
}
