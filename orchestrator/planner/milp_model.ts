// A small backend-neutral MILP model (variables with bounds and kinds, linear rows, a minimised objective) with
// writers to CPLEX LP text (read by HiGHS) and to glpk.js's JSON `LP` object.

/** Domain of a variable. */
export type VarKind = "continuous" | "integer" | "binary";

/** Sense of a linear constraint. */
export type RowSense = "<=" | ">=" | "=";

/** One coefficient of a linear expression: `coef · x[v]`. */
export interface Term {
  v: number;
  coef: number;
}

/** A variable of the model. */
export interface Variable {
  name: string;
  kind: VarKind;
  lb: number;
  ub: number;
}

/** A linear constraint `Σ terms (sense) rhs`. */
export interface Row {
  name: string;
  terms: Term[];
  sense: RowSense;
  rhs: number;
}

/** Numbers of the glpk.js constants the writer needs (from the loaded glpk instance). */
export interface GlpkConstants {
  GLP_MIN: number;
  GLP_FR: number;
  GLP_LO: number;
  GLP_UP: number;
  GLP_DB: number;
  GLP_FX: number;
}

/** glpk.js's problem object (the shape of `LP` in glpk.js/dist/types.d.ts). */
export interface GlpkLp {
  name: string;
  objective: { direction: number; name: string; vars: { name: string; coef: number }[] };
  subjectTo: { name: string; vars: { name: string; coef: number }[]; bnds: { type: number; ub: number; lb: number } }[];
  bounds: { name: string; type: number; ub: number; lb: number }[];
  binaries: string[];
  generals: string[];
}

const NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
/** Words the LP format reserves (case-insensitive), which cannot name variables or rows. */
const RESERVED = new Set([
  "free",
  "inf",
  "infinity",
  "st",
  "s.t.",
  "bound",
  "bounds",
  "bin",
  "binary",
  "binaries",
  "gen",
  "general",
  "generals",
  "end",
  "subject",
  "to",
  "such",
  "that",
  "minimize",
  "minimise",
  "minimum",
  "min",
  "maximize",
  "maximise",
  "maximum",
  "max",
  "semi",
  "semis",
  "semi-continuous",
]);

/** A minimisation MILP built incrementally; variables and rows are referred to by index. */
export class MilpModel {
  readonly vars: Variable[] = [];
  readonly rows: Row[] = [];
  objective: Term[] = [];
  private readonly names = new Set<string>();

  /** Adds a variable and returns its index. Binary variables have bounds [0, 1]. */
  addVar(name: string, kind: VarKind, lb = 0, ub = Infinity): number {
    this.checkName(name);
    if (kind === "binary") [lb, ub] = [Math.max(0, lb), Math.min(1, ub)];
    if (!(lb <= ub)) throw new RangeError(`variable ${name}: empty domain [${lb}, ${ub}]`);
    this.vars.push({ name, kind, lb, ub });
    return this.vars.length - 1;
  }

  /** Adds a row `Σ terms (sense) rhs`; zero coefficients are dropped, repeated variables merged. */
  addRow(name: string, terms: readonly Term[], sense: RowSense, rhs: number): number {
    this.checkName(name);
    if (!Number.isFinite(rhs)) throw new RangeError(`row ${name}: right-hand side ${rhs}`);
    this.rows.push({ name, terms: this.clean(terms), sense, rhs });
    return this.rows.length - 1;
  }

  /** Sets the objective to minimise. */
  minimise(terms: readonly Term[]): void {
    this.objective = this.clean(terms);
  }

  /** Objective value of a full assignment. */
  objectiveOf(x: ArrayLike<number>): number {
    let z = 0;
    for (const t of this.objective) z += t.coef * x[t.v];
    return z;
  }

  /** Largest violation of a bound, a row or integrality by a full assignment (0 = feasible). */
  violation(x: ArrayLike<number>): number {
    let worst = 0;
    this.vars.forEach((v, i) => {
      worst = Math.max(worst, v.lb - x[i], x[i] - v.ub);
      if (v.kind !== "continuous") worst = Math.max(worst, Math.abs(x[i] - Math.round(x[i])));
    });
    for (const r of this.rows) {
      let lhs = 0;
      for (const t of r.terms) lhs += t.coef * x[t.v];
      const d = lhs - r.rhs;
      worst = Math.max(worst, r.sense === "<=" ? d : r.sense === ">=" ? -d : Math.abs(d));
    }
    return worst;
  }

  /** Number of integer and binary variables. */
  get integerCount(): number {
    return this.vars.reduce((n, v) => n + (v.kind === "continuous" ? 0 : 1), 0);
  }

  /** The model in CPLEX LP format. Every variable is listed in the bounds section, so all are declared. */
  toLpText(): string {
    const out: string[] = ["Minimize", ` obj: ${this.expr(this.objective, "0 " + (this.vars[0]?.name ?? ""))}`];
    out.push("Subject To");
    for (const r of this.rows) {
      const op = r.sense === "=" ? "=" : r.sense;
      out.push(` ${r.name}: ${this.expr(r.terms, "0 " + (this.vars[0]?.name ?? ""))} ${op} ${num(r.rhs)}`);
    }
    out.push("Bounds");
    for (const v of this.vars) {
      if (v.kind === "binary") continue;
      if (v.lb === -Infinity && v.ub === Infinity) out.push(` ${v.name} free`);
      else if (v.lb === v.ub) out.push(` ${v.name} = ${num(v.lb)}`);
      else {out.push(
          ` ${v.lb === -Infinity ? "-inf" : num(v.lb)} <= ${v.name} <= ${v.ub === Infinity ? "+inf" : num(v.ub)}`,
        );}
    }
    const gen = this.vars.filter((v) => v.kind === "integer").map((v) => v.name);
    const bin = this.vars.filter((v) => v.kind === "binary").map((v) => v.name);
    if (gen.length) out.push("General", ...wrap(gen));
    if (bin.length) out.push("Binary", ...wrap(bin));
    out.push("End", "");
    return out.join("\n");
  }

  /** The model as glpk.js's `LP` object (`glpk` supplies the constants of the loaded instance). */
  toGlpk(glpk: GlpkConstants, name = "flexsp"): GlpkLp {
    const named = (ts: Term[]) => ts.map((t) => ({ name: this.vars[t.v].name, coef: t.coef }));
    const rowBnds = (r: Row) =>
      r.sense === "<="
        ? { type: glpk.GLP_UP, lb: 0, ub: r.rhs }
        : r.sense === ">="
        ? { type: glpk.GLP_LO, lb: r.rhs, ub: 0 }
        : { type: glpk.GLP_FX, lb: r.rhs, ub: r.rhs };
    const colBnds = (v: Variable) => {
      const lo = v.lb > -Infinity;
      const hi = v.ub < Infinity;
      if (lo && hi) return { type: v.lb === v.ub ? glpk.GLP_FX : glpk.GLP_DB, lb: v.lb, ub: v.ub };
      if (lo) return { type: glpk.GLP_LO, lb: v.lb, ub: 0 };
      if (hi) return { type: glpk.GLP_UP, lb: 0, ub: v.ub };
      return { type: glpk.GLP_FR, lb: 0, ub: 0 };
    };
    return {
      name,
      objective: { direction: glpk.GLP_MIN, name: "obj", vars: named(this.objective) },
      subjectTo: this.rows.map((r) => ({ name: r.name, vars: named(r.terms), bnds: rowBnds(r) })),
      bounds: this.vars.map((v) => ({ name: v.name, ...colBnds(v) })),
      binaries: this.vars.filter((v) => v.kind === "binary").map((v) => v.name),
      generals: this.vars.filter((v) => v.kind === "integer").map((v) => v.name),
    };
  }

  private checkName(name: string): void {
    if (!NAME.test(name) || RESERVED.has(name.toLowerCase()) || /^[eE]\d/.test(name)) {
      throw new RangeError(`invalid LP name ${JSON.stringify(name)}`);
    }
    if (this.names.has(name)) throw new RangeError(`duplicate LP name ${name}`);
    this.names.add(name);
  }

  private clean(terms: readonly Term[]): Term[] {
    const acc = new Map<number, number>();
    for (const t of terms) {
      if (!(t.v >= 0 && t.v < this.vars.length)) throw new RangeError(`unknown variable ${t.v}`);
      if (!Number.isFinite(t.coef)) throw new RangeError(`coefficient ${t.coef} of ${this.vars[t.v].name}`);
      acc.set(t.v, (acc.get(t.v) ?? 0) + t.coef);
    }
    return [...acc].filter(([, c]) => c !== 0).map(([v, coef]) => ({ v, coef }));
  }

  /** A linear expression in LP syntax, wrapped every few terms (long lines trouble some readers). */
  private expr(terms: Term[], empty: string): string {
    if (terms.length === 0) return empty;
    const parts = terms.map((t, i) => {
      const sign = t.coef < 0 ? "-" : i === 0 ? "" : "+";
      return `${sign}${sign ? " " : ""}${num(Math.abs(t.coef))} ${this.vars[t.v].name}`;
    });
    const lines: string[] = [];
    for (let i = 0; i < parts.length; i += 8) lines.push(parts.slice(i, i + 8).join(" "));
    return lines.join("\n   ");
  }
}

/** A finite number in LP syntax (JavaScript's shortest round-trip form: exact, accepted by HiGHS). */
function num(x: number): string {
  if (!Number.isFinite(x)) throw new RangeError(`non-finite number ${x} in an LP model`);
  return String(x);
}

function wrap(names: string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < names.length; i += 12) out.push(" " + names.slice(i, i + 12).join(" "));
  return out;
}
