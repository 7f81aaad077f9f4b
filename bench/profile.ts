// Benchmark of `deno task profile`: a default profile of configs/local.yaml (how long it takes, how well the cost
// model fits: R², held-out error, per-degree validation) followed by planned training steps run on the same
// executors (predicted vs measured step and group times); with root, the same on 2 SSH test hosts x 2 devices with
// 1 Gbit/s links (inside vs across hosts). `deno task bench --only profile`, or `deno run -A bench/profile.ts`.

import { loadConfig } from "../orchestrator/config/load.ts";
import type { Config } from "../orchestrator/config/types.ts";
import { defaultGrid, type GridSize } from "../orchestrator/profile/compute_grid.ts";
import { checkLedger } from "../orchestrator/profile/ledger_check.ts";
import { runProfile } from "../orchestrator/profile/profiler.ts";
import { formatProfileSummary } from "../orchestrator/profile/report_text.ts";
import { canCreateTestHosts, startTestHosts } from "../tests/hosts/test_hosts.ts";
import type { BenchSection } from "./report.ts";

const STEPS = Number(Deno.env.get("FLEXSP_BENCH_PROFILE_STEPS") ?? 10);
const pct = (x: number) => `${(x * 100).toFixed(1)}%`;

async function one(name: string, config: Config, size: GridSize, runDir: string) {
  const t0 = performance.now();
  const { doc, ledger } = await runProfile(config, {
    grid: defaultGrid(config.model.maxSeq, size),
    timeoutMs: 600_000,
    say: (l) => console.error(`  ${l}`),
    runDir,
    fidelitySteps: STEPS,
  });
  const totalS = (performance.now() - t0) / 1000;
  console.error(formatProfileSummary(doc));
  const check = checkLedger(ledger);
  const t = doc.compute.deviceTypes[0];
  const bw = (side: "intra" | "inter") =>
    Object.entries(doc.constants.bandwidth_gbps[side]).map(([d, v]) => `${d}:${v}`).join(" ") || "-";
  const micro = (side: boolean) =>
    doc.network.alltoall.filter((a) => a.spans === side).map((a) => `${a.degree}:${a.gbps.toFixed(3)}`).join(" ") ||
    "-";
  return {
    row: {
      cluster: name,
      devices: doc.fingerprint.cluster.nodes.reduce((s, n) => s + n.devices, 0),
      "profile s": (doc.durationMs / 1000).toFixed(1),
      "with steps s": totalS.toFixed(1),
      "compute R²": t.fit.r2.toFixed(3),
      "held-out max err": pct(t.heldOut.maxRelErr),
      "validation median err": doc.validation ? pct(doc.validation.medianRelErr) : "-",
      "a2a GB/s inside": micro(false),
      "a2a GB/s across": micro(true),
      "v[d] inside": bw("intra"),
      "v[d] across": bw("inter"),
      steps: check.steps,
      "step median |err|": pct(check.step.medianAbs),
      "step max |err|": pct(check.step.maxAbs),
      "group median |err|": pct(check.group.medianAbs),
    },
    json: { doc, check, ledger },
  };
}

/** Runs the benchmark. */
export async function bench(): Promise<BenchSection> {
  const rows: Record<string, string | number>[] = [];
  const json: Record<string, unknown> = {};
  const dir = await Deno.makeTempDir({ prefix: "fxbench-profile-" });
  try {
    const local = await loadConfig(new URL("../configs/local.yaml", import.meta.url).pathname);
    const r = await one("local (configs/local.yaml)", local, "default", `${dir}/local`);
    rows.push(r.row);
    json.local = r.json;
    const can = canCreateTestHosts();
    if (can.ok) {
      const th = await startTestHosts({ count: 2, shaping: { rateMbit: 1000 } });
      try {
        const path = await th.writeConfig({ devices: 2, executor: "cpu", heartbeatTimeoutS: 20, connectTimeoutS: 10 });
        await Deno.writeTextFile(
          path,
          (await Deno.readTextFile(path)) +
            "  checkpointing: none\ntraining:\n  lengths: wikipedia\n  global_batch: 8\nplanner:\n  memory_budget_gb: 0.25\n",
        );
        const s = await one("2 SSH test hosts x 2, 1 Gbit/s", await loadConfig(path), "quick", `${th.dir}/run`);
        rows.push(s.row);
        json.ssh = s.json;
      } finally {
        await th.close();
      }
    } else {
      console.error(`(skipping the SSH test hosts: ${can.reason})`);
    }
  } finally {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
  return { title: `profile: fit quality and predicted vs measured over ${STEPS} planned steps`, rows, json };
}

if (import.meta.main) {
  const { printSection } = await import("./report.ts");
  printSection(await bench());
}
