// MILP backends from npm, loaded once per process: HiGHS (wasm; persistent model API with a MIP start, dual
// bound, gap, node limit) and glpk.js (wasm; time limit only, no start, no bound). Both are synchronous once
// loaded: a solve blocks the event loop until it ends or hits its limit.

import * as highsModule from "highs";
import type { Highs } from "highs";
import GLPK from "glpk.js/node";
import type { MilpModel } from "./milp_model.ts";

/** Names of the backends. */
export type MilpBackendName = "highs" | "glpk";

/** How a solve ended. */
export type MilpStatus =
  | "optimal"
  | "time-limit"
  | "node-limit"
  | "infeasible"
  | "error"
  | "skipped";

/** Limits and hints of one solve. */
export interface MilpSolveOptions {
  /** Wall-clock limit in seconds (absent: none). */
  timeLimitS?: number;
  /** Branch-and-bound node limit (HiGHS only; absent: none). */
  nodeLimit?: number;
  /** Relative MIP gap at which the solve stops as optimal (default 1e-4). */
  relGap?: number;
  /** A feasible assignment (one value per model variable) to start from (HiGHS only). */
  start?: ArrayLike<number>;
}

/** Outcome of one solve. */
export interface MilpResult {
  status: MilpStatus;
  /** Values of the model's variables (by index) when a feasible solution was found. */
  values?: Float64Array;
  /** Objective of that solution. */
  objective?: number;
  /** Proven lower bound on the optimum (HiGHS). */
  dualBound?: number;
  /** Relative gap between objective and bound (HiGHS). */
  gap?: number;
  /** Branch-and-bound nodes explored (HiGHS). */
  nodes?: number;
  /** Wall-clock ms of the solve (model transfer included). */
  ms: number;
  /** Whether the backend took the start as an incumbent (HiGHS). */
  startUsed?: boolean;
  /** Backend-specific detail (error text, raw status). */
  note?: string;
}

/** A loaded MILP solver. */
export interface MilpBackend {
  readonly name: MilpBackendName;
  /** Whether a node limit is honoured (what deterministic mode needs). */
  readonly nodeLimits: boolean;
  solve(model: MilpModel, options?: MilpSolveOptions): MilpResult;
}

type Glpk = Awaited<ReturnType<typeof GLPK>>;

const loaded = new Map<MilpBackendName, Promise<MilpBackend>>();

/** Loads (once per process) and returns a backend. */
export function loadMilpBackend(name: MilpBackendName): Promise<MilpBackend> {
  let p = loaded.get(name);
  if (!p) {
    p = name === "highs" ? loadHighs() : loadGlpk();
    // A failed load is not cached, so a later call can retry.
    p.catch(() => loaded.delete(name));
    loaded.set(name, p);
  }
  return p;
}

async function loadHighs(): Promise<MilpBackend> {
  // Under `deno check` the default import is typed as the namespace; at run time it is the loader.
  // deno-lint-ignore no-explicit-any
  const load = ((highsModule as any).default ?? highsModule) as () => Promise<Highs>;
  const highs = await load();
  return { name: "highs", nodeLimits: true, solve: (m, o) => solveHighs(highs, m, o ?? {}) };
}

async function loadGlpk(): Promise<MilpBackend> {
  // The node entry is a factory returning a promise of the synchronous solver.
  const glpk = await GLPK();
  return { name: "glpk", nodeLimits: false, solve: (m, o) => solveGlpk(glpk, m, o ?? {}) };
}

function solveHighs(highs: Highs, model: MilpModel, o: MilpSolveOptions): MilpResult {
  const t0 = performance.now();
  const text = model.toLpText();
  const ms = highs.constants.modelStatus;
  try {
    return highs.withModel({ format: "lp", data: text }, (h) => {
      const n = h.getDimensions().numCols;
      // Columns are numbered in order of appearance in the LP text: map them back by name.
      const byName = new Map(model.vars.map((v, i) => [v.name, i]));
      const colOf = new Int32Array(n);
      for (let c = 0; c < n; c++) {
        const i = byName.get(h.getColName(c));
        if (i === undefined) throw new Error(`HiGHS column ${h.getColName(c)} is not in the model`);
        colOf[c] = i;
      }
      if (n !== model.vars.length) throw new Error(`HiGHS read ${n} columns, the model has ${model.vars.length}`);
      const opts: Record<string, number | boolean | string> = {
        output_flag: false,
        random_seed: 0,
        // Presolve costs ~0.5 s on 64-GPU models and rarely pays off within planning budgets (measured).
        presolve: "off",
        mip_rel_gap: o.relGap ?? 1e-4,
        mip_abs_gap: 1e-9,
      };
      if (o.timeLimitS !== undefined) opts.time_limit = Math.max(1e-3, o.timeLimitS);
      if (o.nodeLimit !== undefined) opts.mip_max_nodes = o.nodeLimit;
      h.options.set(opts);
      let startUsed: boolean | undefined;
      if (o.start) {
        const colValue = new Float64Array(n);
        for (let c = 0; c < n; c++) colValue[c] = o.start[colOf[c]];
        h.setSolution({ colValue });
        startUsed = true;
      }
      const run = h.run();
      const status = run.modelStatus;
      const info = (k: string) => {
        try {
          return Number(h.info.get(k));
        } catch {
          return undefined;
        }
      };
      const hasSolution = info("primal_solution_status") === 2;
      const out: MilpResult = { status: "error", ms: 0, startUsed, nodes: info("mip_node_count") };
      if (status === ms.optimal) out.status = "optimal";
      else if (status === ms.timeLimit) out.status = "time-limit";
      else if (status === ms.iterationLimit || status === ms.solutionLimit) out.status = "node-limit";
      else if (status === ms.infeasible) out.status = "infeasible";
      else out.note = `HiGHS model status ${status}`;
      if (hasSolution && out.status !== "infeasible") {
        const sol = h.getSolution().colValue;
        const values = new Float64Array(model.vars.length);
        for (let c = 0; c < n; c++) values[colOf[c]] = sol[c];
        out.values = values;
        out.objective = h.getObjectiveValue();
      }
      const bound = info("mip_dual_bound");
      if (bound !== undefined && Number.isFinite(bound)) out.dualBound = bound;
      const gap = info("mip_gap");
      if (out.values && gap !== undefined && Number.isFinite(gap)) out.gap = gap;
      out.ms = performance.now() - t0;
      return out;
    });
  } catch (e) {
    return { status: "error", ms: performance.now() - t0, note: e instanceof Error ? e.message : String(e) };
  }
}

function solveGlpk(glpk: Glpk, model: MilpModel, o: MilpSolveOptions): MilpResult {
  const t0 = performance.now();
  try {
    const lp = model.toGlpk(glpk);
    const opts: { msglev: number; presol: boolean; mipgap: number; tmlim?: number } = {
      msglev: glpk.GLP_MSG_OFF,
      presol: true,
      mipgap: o.relGap ?? 1e-4,
    };
    if (o.timeLimitS !== undefined) opts.tmlim = Math.max(1e-3, o.timeLimitS);
    const r = glpk.solve(lp, opts).result;
    const out: MilpResult = { status: "error", ms: 0 };
    const hasSolution = r.status === glpk.GLP_OPT || r.status === glpk.GLP_FEAS;
    if (r.status === glpk.GLP_OPT) out.status = "optimal";
    else if (r.status === glpk.GLP_NOFEAS || r.status === glpk.GLP_INFEAS) out.status = "infeasible";
    else if (o.timeLimitS !== undefined && (r.status === glpk.GLP_FEAS || r.status === glpk.GLP_UNDEF)) {
      // glpk reports a limit only through a feasible-but-not-optimal (or undefined) status.
      out.status = "time-limit";
    } else out.note = `glpk status ${r.status}`;
    if (hasSolution) {
      out.values = Float64Array.from(model.vars, (v) => r.vars[v.name] ?? 0);
      out.objective = r.z;
    }
    out.ms = performance.now() - t0;
    return out;
  } catch (e) {
    return { status: "error", ms: performance.now() - t0, note: e instanceof Error ? e.message : String(e) };
  }
}
