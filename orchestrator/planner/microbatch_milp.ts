// The per-micro-batch bucketed MILP (paper §3.2, eq. 15-22; reference `solve_flexSP_bucket_seqs`): virtual SP
// groups per allowed degree, integer counts of each bucket's sequences per group, a binary "used" per group and
// the makespan C; solved by a MILP backend, then expanded to real sequences, placed on aligned blocks and timed
// with the real lengths.

import type { PlanContext } from "./context.ts";
import type { MicroBatchPlan } from "./plan_types.ts";
import type { Block } from "./placement.ts";
import { type Bucket, BucketLadder, bucketSequences } from "./bucketing.ts";
import { MilpModel, type Term } from "./milp_model.ts";
import type { MilpBackend, MilpResult, MilpStatus } from "./milp_backends.ts";
import { microBatchLowerBound, toMicroBatch } from "./microbatch_heuristic.ts";

/** Options of one micro-batch solve. */
export interface MicroBatchMilpOptions {
  /** Bucket count or the adaptive rule (default: the context's option). */
  buckets?: number | "auto";
  /** Wall-clock limit of the solver (seconds). */
  timeLimitS?: number;
  /** Branch-and-bound node limit (HiGHS). */
  nodeLimit?: number;
  /** Relative gap at which the solver stops (default 1e-4). */
  relGap?: number;
  /**
   * The plan to beat: its makespan bounds C from above (C ≤ incumbent, which also prunes bucket/degree pairs
   * and count bounds), and it is handed to HiGHS as a MIP start when it is feasible in the bucketed model.
   */
  incumbent?: MicroBatchPlan;
  /**
   * With buckets "auto" and an incumbent: after the reference's rule, keep adding buckets while rounding up
   * inflates the incumbent's own makespan by more than `bucketSlack` × (incumbent − lower bound), so the
   * bucketed model has room below the bound C ≤ incumbent. Absent: the reference's rule alone.
   */
  bucketSlack?: number;
  /** Cap on the integer variables the refinement may reach (default 3000). */
  maxIntegers?: number;
  /** Do not solve models with more integer variables than this (status "skipped"). */
  skipAboveIntegers?: number;
}

/** Status of a micro-batch solve: the backend's, or "no-better" when C ≤ incumbent left nothing feasible. */
export type MicroBatchMilpStatus = MilpStatus | "no-better";

/** Outcome of one micro-batch solve. */
export interface MicroBatchMilpResult {
  status: MicroBatchMilpStatus;
  /** The expanded, placed, validated plan (timed with the real lengths), when the solver found a solution. */
  plan?: MicroBatchPlan;
  /** The solver's makespan C (bucketed lengths, optimistic block speed). */
  objective?: number;
  /**
   * The solver's proven bound on C (HiGHS). A bound on the real optimum only when the bucketing is exact and the
   * cluster homogeneous; with coarser buckets the model is pessimistic (every sequence rounded up).
   */
  dualBound?: number;
  gap?: number;
  nodes?: number;
  /** Bucket count used, and whether it is exact (one bucket per distinct length). */
  buckets: number;
  exact: boolean;
  /** Model size. */
  groups: number;
  integers: number;
  rows: number;
  /** Whether a MIP start was handed to the solver. */
  started: boolean;
  /** ms to build the model, and in the solver. */
  buildMs: number;
  solveMs: number;
  /** Why a solution gave no plan, or why no solve ran. */
  note?: string;
}

/** A virtual SP group of the model: degree, copy number, and the variables of its row. */
interface VirtualGroup {
  degree: number;
  copy: number;
  m: number;
  /** Variable of bucket q's count in this group, or -1 when q cannot go there. */
  a: Int32Array;
}

/** The built model with what is needed to read a solution back. */
export interface BuiltMicroBatchMilp {
  model: MilpModel;
  buckets: Bucket[];
  groups: VirtualGroup[];
  c: number;
  /** Group time of one bucket-q sequence on degree d (ms, β1 excluded). */
  time: (q: number, d: number) => number;
  /** Fixed ms of a group of degree d (β1 and the profiled per-group and per-micro-batch costs). */
  betaOf: (d: number) => number;
  /** Token capacity of a degree-d group in the model (d times the best aligned block's per-device capacity). */
  groupCapacity: (d: number) => number;
  /** Upper bound applied to C (Infinity if none). */
  ub: number;
  /** Set when the model is trivially infeasible (a bucket fits no group under the bound). */
  infeasible?: string;
}

/**
 * Buckets of a micro-batch: a fixed count, or the reference's adaptive rule, optionally refined so that rounding
 * up leaves the bucketed model room below the incumbent (see `MicroBatchMilpOptions.bucketSlack`).
 */
export function pickBuckets(
  ctx: PlanContext,
  lengths: readonly number[],
  seqs: readonly number[],
  options: MicroBatchMilpOptions,
): Bucket[] {
  const choice = options.buckets ?? ctx.options.buckets;
  if (seqs.length === 0) return [];
  if (choice !== "auto") return bucketSequences(lengths, seqs, choice);
  const ladder = new BucketLadder(lengths, seqs);
  let q = ladder.adaptiveCount(ctx.capacity.reduce((a, b) => a + b, 0));
  const inc = options.incumbent;
  if (!inc || options.bucketSlack === undefined || q >= ladder.distinct) return ladder.buckets(q);
  // Model times as the MILP sees them; the inflation is that of the incumbent's slowest group.
  const speed = ctx.maxSpeed;
  const t = (s: number, d: number) => ctx.cost.seqMs(s, d, ctx.degreeSpans(d), speed);
  const used = inc.groups.filter((g) => g.sequences.length > 0);
  const realMax = Math.max(...used.map((g) => g.lengths.reduce((a, s) => a + t(s, g.degree), 0)));
  const slack = options.bucketSlack * Math.max(0, inc.predictedMs - microBatchLowerBound(ctx, lengths, seqs));
  let groupsEst = 0;
  for (const d of ctx.degrees) groupsEst += Math.min(Math.floor(ctx.topo.devices / d), seqs.length);
  const qMax = Math.min(ladder.distinct, Math.max(q, Math.floor((options.maxIntegers ?? 3000) / groupsEst)));
  const bound = new Map<number, number>();
  const inflation = (bks: Bucket[]) => {
    for (const b of bks) for (const k of b.seqs) bound.set(k, b.bound);
    const max = Math.max(...used.map((g) => g.sequences.reduce((a, k) => a + t(bound.get(k)!, g.degree), 0)));
    return max - realMax;
  };
  let bks = ladder.buckets(q);
  while (q < qMax && inflation(bks) > slack) bks = ladder.buckets(++q);
  return bks;
}

/**
 * Builds the bucketed MILP of one micro-batch. Times use `ctx.cost.seqMs(ŝ, d, ctx.degreeSpans(d), speed)` with
 * the fastest device speed (exact on homogeneous clusters) and memory the best aligned block of each degree.
 */
export function buildMicroBatchMilp(
  ctx: PlanContext,
  bks: Bucket[],
  ub = Infinity,
  target = ub,
): BuiltMicroBatchMilp {
  const n = ctx.topo.devices;
  const speed = ctx.maxSpeed;
  const betaOf = (d: number) => ctx.cost.groupFixedMs(d, speed);
  const beta = ctx.cost.minGroupFixedMs(speed);
  const Q = bks.length;
  const degrees = ctx.degrees;
  const tCache = new Map<number, number>();
  const time = (q: number, d: number) => {
    const key = q * 1024 + Math.log2(d);
    let t = tCache.get(key);
    if (t === undefined) tCache.set(key, t = ctx.cost.seqMs(bks[q].bound, d, ctx.degreeSpans(d), speed));
    return t;
  };
  const cap = (d: number) => ctx.blockCapacity(d);
  // Bucket q may go to degree d when d holds its bound and one such sequence alone is not slower than the bound.
  const allowed = (q: number, d: number) => bks[q].bound <= d * cap(d) && betaOf(d) + time(q, d) <= ub;
  const model = new MilpModel();
  const groupCapacity = (d: number) => d * cap(d);
  const built: BuiltMicroBatchMilp = { model, buckets: bks, groups: [], c: -1, time, betaOf, groupCapacity, ub };

  const minAllowed = bks.map((_, q) => degrees.find((d) => allowed(q, d)) ?? Infinity);
  const stuck = minAllowed.findIndex((d) => !Number.isFinite(d));
  // Lower bounds on C: one group per sequence (the slowest bucket at its best degree), and the least work
  // Σ b_q·min_d d·t(q,d) spread over all devices (every used group runs at most C − β1).
  let longest = 0;
  let work = 0;
  bks.forEach((b, q) => {
    let best = Infinity;
    let bestWork = Infinity;
    for (const d of degrees) {
      if (!allowed(q, d)) continue;
      best = Math.min(best, time(q, d));
      bestWork = Math.min(bestWork, d * time(q, d));
    }
    longest = Math.max(longest, best);
    work += b.seqs.length * bestWork;
  });
  const lb = beta + Math.max(longest, work / n);
  if (stuck >= 0 || lb > ub || lb >= target) {
    built.infeasible = stuck >= 0
      ? `sequences of ${bks[stuck].bound} tokens fit no group${ub < Infinity ? " within the incumbent's makespan" : ""}`
      : `the bucketed lower bound ${lb.toFixed(3)} ms is not below the incumbent's ${target.toFixed(3)} ms`;
    built.c = model.addVar("C", "continuous", 0, Infinity);
    return built;
  }
  built.c = model.addVar("C", "continuous", lb, ub);

  // Devices that the sequences needing degree ≥ D necessarily take (groups of degree ≥ D are multiples of D):
  // by memory (their tokens over the best per-device capacity of such groups) and by count (at most
  // floor(g·cap(g)/shortest) of them share a degree-g group). Degrees below D get only the remaining devices:
  // the reference's pruning, generalised so it stays valid when sequences may share groups larger than D.
  const reserved = (d: number) => {
    let r = 0;
    for (const D of degrees) {
      if (D <= d) continue;
      let cnt = 0;
      let tokens = 0;
      let shortest = Infinity;
      bks.forEach((b, q) => {
        if (minAllowed[q] < D) return;
        cnt += b.seqs.length;
        tokens += b.bound * b.seqs.length;
        shortest = Math.min(shortest, b.bound);
      });
      if (cnt === 0) continue;
      let perDevice = 0;
      for (const g of degrees) if (g >= D) perDevice = Math.max(perDevice, Math.floor((g * cap(g)) / shortest) / g);
      const need = Math.max(tokens / cap(D), cnt / perDevice);
      r = Math.max(r, Math.ceil(need / D - 1e-9) * D);
    }
    return r;
  };

  for (const d of degrees) {
    let usable = 0;
    bks.forEach((b, q) => {
      if (allowed(q, d)) usable += b.seqs.length;
    });
    const copies = Math.min(Math.floor((n - reserved(d)) / d), usable);
    for (let c = 0; c < copies; c++) {
      const a = new Int32Array(Q).fill(-1);
      const p = built.groups.length;
      const m = model.addVar(`m${p}`, "binary");
      bks.forEach((b, q) => {
        if (!allowed(q, d)) return;
        const byMemory = Math.floor((d * cap(d)) / b.bound);
        const byTime = ub < Infinity ? Math.floor((ub - betaOf(d)) / time(q, d) + 1e-9) : Infinity;
        const hi = Math.min(b.seqs.length, byMemory, byTime);
        if (hi >= 1) a[q] = model.addVar(`a${q}_${p}`, "integer", 0, hi);
      });
      built.groups.push({ degree: d, copy: c, m, a });
    }
  }

  const C = built.c;
  const workTerms: Term[] = [{ v: C, coef: n }];
  const devices: Term[] = [];
  const cover: Term[][] = bks.map(() => []);
  built.groups.forEach((g, p) => {
    const d = g.degree;
    const timeRow: Term[] = [{ v: g.m, coef: betaOf(d) }, { v: C, coef: -1 }];
    // Memory in kilotokens keeps the coefficients near the time rows' scale.
    const memRow: Term[] = [{ v: g.m, coef: -(d * cap(d)) / 1024 }];
    const nonEmpty: Term[] = [{ v: g.m, coef: -1 }];
    workTerms.push({ v: g.m, coef: -d * betaOf(d) });
    g.a.forEach((v, q) => {
      if (v < 0) return;
      const t = time(q, d);
      timeRow.push({ v, coef: t });
      memRow.push({ v, coef: bks[q].bound / 1024 });
      nonEmpty.push({ v, coef: 1 });
      workTerms.push({ v, coef: -d * t });
      cover[q].push({ v, coef: 1 });
    });
    model.addRow(`time${p}`, timeRow, "<=", 0);
    model.addRow(`mem${p}`, memRow, "<=", 0);
    model.addRow(`used${p}`, nonEmpty, ">=", 0);
    devices.push({ v: g.m, coef: d });
    // Copies of one degree are interchangeable: use them in order.
    if (g.copy > 0) model.addRow(`sym${p}`, [{ v: built.groups[p - 1].m, coef: 1 }, { v: g.m, coef: -1 }], ">=", 0);
  });
  model.addRow("devices", devices, "<=", n);
  bks.forEach((b, q) => model.addRow(`cover${q}`, cover[q], "=", b.seqs.length));
  // Valid cut: the device-time of all groups fits in N·C.
  model.addRow("work", workTerms, ">=", 0);
  model.minimise([{ v: C, coef: 1 }]);
  return built;
}

/** Makespan of a plan's own assignment as the bucketed model times it (every sequence at its bucket's bound). */
function bucketedMakespan(ctx: PlanContext, bks: Bucket[], plan: MicroBatchPlan): number {
  const bound = new Map<number, number>();
  for (const b of bks) for (const k of b.seqs) bound.set(k, b.bound);
  let max = 0;
  for (const g of plan.groups) {
    if (g.sequences.length === 0) continue;
    const spans = ctx.degreeSpans(g.degree);
    let t = ctx.cost.groupFixedMs(g.degree, ctx.maxSpeed);
    for (const k of g.sequences) t += ctx.cost.seqMs(bound.get(k) ?? 0, g.degree, spans, ctx.maxSpeed);
    max = Math.max(max, t);
  }
  return max;
}

/** Bucketed group time of a bucket-count vector on degree d (0 if empty). */
function bucketedTime(built: BuiltMicroBatchMilp, counts: ArrayLike<number>, d: number): number {
  let t = 0;
  let any = false;
  for (let q = 0; q < counts.length; q++) {
    if (counts[q] > 0) [t, any] = [t + counts[q] * built.time(q, d), true];
  }
  return any ? t + built.betaOf(d) : 0;
}

/**
 * MIP starts in the model's variables: the incumbent's own groups (each sequence counted in its bucket), and an
 * LPT packing of the buckets into the incumbent's degree multiset and into each homogeneous degree. Returns the
 * feasible one with the least C, if any.
 */
function warmStart(built: BuiltMicroBatchMilp, incumbent: MicroBatchPlan | undefined): Float64Array | undefined {
  const { model, buckets, groups } = built;
  const Q = buckets.length;
  const bucketOf = new Map<number, number>();
  buckets.forEach((b, q) => b.seqs.forEach((k) => bucketOf.set(k, q)));
  const candidates: { degree: number; counts: number[] }[][] = [];
  if (incumbent) {
    const own = incumbent.groups.filter((g) => g.sequences.length > 0).map((g) => {
      const counts = new Array(Q).fill(0);
      for (const k of g.sequences) counts[bucketOf.get(k)!]++;
      return { degree: g.degree, counts };
    });
    candidates.push(own);
    candidates.push(lpt(built, own.map((g) => g.degree)));
  }
  const degreesInModel = [...new Set(groups.map((g) => g.degree))];
  for (const d of degreesInModel) candidates.push(lpt(built, groups.filter((g) => g.degree === d).map(() => d)));

  let best: Float64Array | undefined;
  let bestC = Infinity;
  for (const cand of candidates) {
    const x = assign(built, cand);
    if (!x) continue;
    const c = x[built.c];
    if (c < bestC && model.violation(x) <= 1e-6) [best, bestC] = [x, c];
  }
  return best;
}

/** LPT of the buckets' sequences (longest bound first) into groups of the given degrees, memory permitting. */
function lpt(built: BuiltMicroBatchMilp, degrees: number[]): { degree: number; counts: number[] }[] {
  const { buckets } = built;
  const gs = degrees.map((degree) => ({ degree, counts: new Array(buckets.length).fill(0), load: 0, tokens: 0 }));
  for (let q = buckets.length - 1; q >= 0; q--) {
    for (let i = 0; i < buckets[q].seqs.length; i++) {
      let pick = -1;
      for (let j = 0; j < gs.length; j++) {
        const g = gs[j];
        if (built.groups.every((v) => v.degree !== g.degree || v.a[q] < 0)) continue;
        if (g.tokens + buckets[q].bound > built.groupCapacity(g.degree)) continue;
        if (pick < 0 || g.load < gs[pick].load) pick = j;
      }
      if (pick < 0) return [];
      const g = gs[pick];
      g.counts[q]++;
      g.tokens += buckets[q].bound;
      g.load += built.time(q, g.degree);
    }
  }
  return gs.filter((g) => g.tokens > 0);
}

/** Maps groups (degree + bucket counts) onto virtual groups; undefined when they do not fit the copies. */
function assign(built: BuiltMicroBatchMilp, cand: { degree: number; counts: number[] }[]): Float64Array | undefined {
  if (cand.length === 0) return undefined;
  const x = new Float64Array(built.model.vars.length);
  const byDegree = new Map<number, { counts: number[]; t: number }[]>();
  for (const g of cand) {
    const list = byDegree.get(g.degree) ?? [];
    list.push({ counts: g.counts, t: bucketedTime(built, g.counts, g.degree) });
    byDegree.set(g.degree, list);
  }
  let c = 0;
  for (const [d, list] of byDegree) {
    const copies = built.groups.filter((g) => g.degree === d);
    if (list.length > copies.length) return undefined;
    list.sort((a, b) => b.t - a.t);
    for (let i = 0; i < list.length; i++) {
      const g = copies[i];
      x[g.m] = 1;
      for (let q = 0; q < list[i].counts.length; q++) {
        if (list[i].counts[q] === 0) continue;
        if (g.a[q] < 0) return undefined;
        x[g.a[q]] = list[i].counts[q];
      }
      c = Math.max(c, list[i].t);
    }
  }
  const v = built.model.vars[built.c];
  x[built.c] = Math.max(c, v.lb);
  return x;
}

/**
 * Turns a solution of the bucketed model into a micro-batch plan: each bucket's sequences, longest first, go to
 * the group with a remaining slot for that bucket and the least real load so far; groups take aligned blocks in
 * descending degree (then load) order. Returns the plan or why it is not valid.
 */
export function expandSolution(
  ctx: PlanContext,
  lengths: readonly number[],
  built: BuiltMicroBatchMilp,
  values: ArrayLike<number>,
): { plan?: MicroBatchPlan; note?: string } {
  const { buckets, groups } = built;
  const quota = groups.map((g) => Array.from(g.a, (v) => (v < 0 ? 0 : Math.round(values[v]))));
  const load = groups.map((g) => ctx.cost.groupFixedMs(g.degree));
  const tokens = groups.map(() => 0);
  const members: number[][] = groups.map(() => []);
  for (let q = buckets.length - 1; q >= 0; q--) {
    for (const k of buckets[q].seqs) {
      let pick = -1;
      for (let p = 0; p < groups.length; p++) {
        if (quota[p][q] > 0 && (pick < 0 || load[p] < load[pick])) pick = p;
      }
      if (pick < 0) return { note: `the solution leaves a sequence of bucket ${q} without a group` };
      const d = groups[pick].degree;
      quota[pick][q]--;
      members[pick].push(k);
      tokens[pick] += lengths[k];
      load[pick] += ctx.cost.seqMs(lengths[k], d, ctx.degreeSpans(d), ctx.maxSpeed);
    }
  }
  if (quota.some((qs) => qs.some((x) => x > 0))) return { note: "the solution places more sequences than exist" };
  const order = groups.map((_, p) => p).filter((p) => members[p].length > 0)
    .sort((a, b) => groups[b].degree - groups[a].degree || load[b] - load[a] || a - b);
  const alloc = ctx.newAllocator();
  const placed: { block: Block; seqs: number[] }[] = [];
  for (const p of order) {
    const d = groups[p].degree;
    const block = alloc.peek(d, Math.ceil(tokens[p] / d));
    if (!block) return { note: `no free aligned block of ${d} devices holds ${tokens[p]} tokens` };
    alloc.take(block);
    placed.push({ block, seqs: members[p] });
  }
  const plan = toMicroBatch(ctx, lengths, placed);
  const seqs = buckets.flatMap((b) => b.seqs);
  const bad = microBatchViolation(ctx, lengths, seqs, plan);
  return bad ? { note: bad } : { plan };
}

/** Why a micro-batch plan is not valid for these sequences (each once, ranks partition the devices, memory), or undefined. */
export function microBatchViolation(
  ctx: PlanContext,
  lengths: readonly number[],
  seqs: readonly number[],
  plan: MicroBatchPlan,
): string | undefined {
  const want = new Set(seqs);
  const seen = new Set<number>();
  const owner = new Uint8Array(ctx.topo.devices);
  for (const g of plan.groups) {
    if (g.ranks.length !== g.degree || g.ranks[0] % g.degree !== 0) return `group at ${g.ranks[0]} is not aligned`;
    for (const r of g.ranks) {
      if (r < 0 || r >= owner.length || owner[r]) return `rank ${r} is in two groups or out of range`;
      owner[r] = 1;
    }
    if (g.sequences.length > 0 && !ctx.degrees.includes(g.degree)) return `degree ${g.degree} is not allowed`;
    let tok = 0;
    for (const k of g.sequences) {
      if (!want.has(k) || seen.has(k)) return `sequence ${k} is planned twice or does not belong here`;
      seen.add(k);
      tok += lengths[k];
    }
    const cap = Math.min(...g.ranks.map((r) => ctx.capacity[r]));
    if (tok > g.degree * cap) return `group at ${g.ranks[0]} holds ${tok} tokens, more than ${g.degree} x ${cap}`;
  }
  if (owner.some((o) => !o)) return "some rank is in no group";
  if (seen.size !== want.size) return `${want.size - seen.size} sequence(s) are not planned`;
  return undefined;
}

/** Shortest solve worth starting for a model of this size (s): reading it and its root LP (measured, WASM). */
export function minUsefulSeconds(integers: number): number {
  return 0.02 + 0.04 * (integers / 1000);
}

/**
 * Solves one micro-batch with the bucketed MILP. The result's plan, when present, is valid and timed with the
 * real lengths; the caller keeps the faster of it and its own plan.
 */
export function solveMicroBatchMilp(
  ctx: PlanContext,
  lengths: readonly number[],
  seqs: readonly number[],
  backend: MilpBackend,
  options: MicroBatchMilpOptions = {},
): MicroBatchMilpResult {
  const t0 = performance.now();
  const bks = pickBuckets(ctx, lengths, seqs, options);
  const inc = options.incumbent;
  // C ≤ the incumbent as the model times it (so the incumbent stays a feasible start), and no solve at all when
  // the model's own lower bound cannot beat the incumbent's real makespan.
  const ub = inc ? Math.max(inc.predictedMs, bucketedMakespan(ctx, bks, inc)) * (1 + 1e-9) : Infinity;
  const built = buildMicroBatchMilp(ctx, bks, ub, inc ? inc.predictedMs : Infinity);
  const exact = built.buckets.every((b) => b.seqs.every((k) => lengths[k] === b.bound));
  const base = {
    buckets: built.buckets.length,
    exact,
    groups: built.groups.length,
    integers: built.model.integerCount,
    rows: built.model.rows.length,
  };
  if (built.infeasible) {
    const ms = performance.now() - t0;
    return {
      ...base,
      status: ub < Infinity ? "no-better" : "infeasible",
      started: false,
      buildMs: ms,
      solveMs: 0,
      note: built.infeasible,
    };
  }
  if (options.skipAboveIntegers !== undefined && base.integers > options.skipAboveIntegers) {
    const ms = performance.now() - t0;
    const note = `${base.integers} integer variables, above the limit of ${options.skipAboveIntegers}`;
    return { ...base, status: "skipped", started: false, buildMs: ms, solveMs: 0, note };
  }
  const start = backend.name === "highs" ? warmStart(built, options.incumbent) : undefined;
  const buildMs = performance.now() - t0;
  // Building counts against the limit, so one call stays within its budget; a solve too short to get through
  // reading the model and its root LP is not started.
  const timeLimitS = options.timeLimitS === undefined ? undefined : options.timeLimitS - buildMs / 1000;
  if (timeLimitS !== undefined && timeLimitS < minUsefulSeconds(base.integers)) {
    const note = `${(timeLimitS * 1000).toFixed(0)} ms left is too little for ${base.integers} integer variables`;
    return { ...base, status: "skipped", started: false, buildMs, solveMs: 0, note };
  }
  const r: MilpResult = backend.solve(built.model, {
    timeLimitS,
    nodeLimit: options.nodeLimit,
    relGap: options.relGap,
    start,
  });
  const out: MicroBatchMilpResult = {
    ...base,
    status: r.status === "infeasible" && ub < Infinity ? "no-better" : r.status,
    objective: r.objective,
    dualBound: r.dualBound,
    gap: r.gap,
    nodes: r.nodes,
    started: start !== undefined,
    buildMs,
    solveMs: r.ms,
    note: r.note,
  };
  if (r.values) {
    const e = expandSolution(ctx, lengths, built, r.values);
    if (e.plan) out.plan = e.plan;
    else out.note = e.note;
  }
  return out;
}
