// A tiny declarative schema language for validating parsed YAML with path-qualified, located errors.

/** The shape a value must have. */
export type Spec =
  | { kind: "object"; fields: Record<string, Field>; openKeys?: Spec }
  | { kind: "array"; of: Spec; minItems?: number }
  | { kind: "int"; min?: number; max?: number }
  | { kind: "number"; min?: number; max?: number; positive?: boolean }
  | { kind: "string" }
  | { kind: "bool" }
  | { kind: "enum"; values: readonly string[] }
  | { kind: "oneOf"; options: Spec[]; expected: string };

/** One key of an object spec. */
export interface Field {
  spec: Spec;
  required?: boolean;
  /** Filled in when the key is absent. */
  default?: unknown;
}

/** Where a value came from: a file position or a command-line override. */
export type Locate = (path: (string | number)[], atKey?: boolean) => string;

/** A validation failure: the located, path-qualified message. */
export class SchemaError extends Error {
  override name = "SchemaError";
}

/** Formats a path like `cluster.nodes[1].devices`. */
export function formatPath(path: (string | number)[]): string {
  let s = "";
  for (const p of path) s += typeof p === "number" ? `[${p}]` : (s ? "." : "") + p;
  return s;
}

function describe(v: unknown): string {
  if (v === null || v === undefined) return "nothing";
  if (typeof v === "string") return JSON.stringify(v);
  if (Array.isArray(v)) return "a list";
  if (typeof v === "object") return "a mapping";
  return String(v);
}

/** Levenshtein distance, for did-you-mean suggestions. */
export function editDistance(a: string, b: string): number {
  const d = Array.from({ length: a.length + 1 }, (_, i) => [i, ...new Array(b.length).fill(0)]);
  for (let j = 1; j <= b.length; j++) d[0][j] = j;
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      d[i][j] = Math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
  }
  return d[a.length][b.length];
}

/** The closest candidate within a small edit distance, if any. */
export function didYouMean(word: string, candidates: Iterable<string>): string | undefined {
  let best: string | undefined;
  let bestD = Infinity;
  for (const c of candidates) {
    const dist = editDistance(word.toLowerCase(), c.toLowerCase());
    if (dist < bestD) [best, bestD] = [c, dist];
  }
  return best !== undefined && bestD <= Math.max(2, Math.floor(word.length / 3)) ? best : undefined;
}

function expectedOf(spec: Spec): string {
  switch (spec.kind) {
    case "object":
      return "a mapping";
    case "array":
      return "a list";
    case "int":
      return spec.min === 1 ? "a positive integer" : spec.min === 0 ? "a non-negative integer" : "an integer";
    case "number":
      return spec.positive ? "a positive number" : "a number";
    case "string":
      return "a string";
    case "bool":
      return "true or false";
    case "enum":
      return `one of ${spec.values.join(", ")}`;
    case "oneOf":
      return spec.expected;
  }
}

/** Validates `value` against `spec`, fills defaults in place, and returns the (possibly defaulted) value. */
export function validate(value: unknown, spec: Spec, path: (string | number)[], locate: Locate): unknown {
  const fail = (msg: string): never => {
    throw new SchemaError(`${locate(path)} ${formatPath(path)}: ${msg}`);
  };
  const mismatch = () => fail(`expected ${expectedOf(spec)}, got ${describe(value)}`);
  switch (spec.kind) {
    case "object": {
      if (value === null || typeof value !== "object" || Array.isArray(value)) return mismatch();
      const obj = value as Record<string, unknown>;
      for (const key of Object.keys(obj)) {
        if (key in spec.fields) continue;
        if (spec.openKeys) {
          obj[key] = validate(obj[key], spec.openKeys, [...path, key], locate);
          continue;
        }
        const hint = didYouMean(key, Object.keys(spec.fields));
        const keyPath = [...path, key];
        throw new SchemaError(
          `${locate(keyPath, true)} ${formatPath(keyPath)}: unknown key "${key}"` +
            (hint ? ` (did you mean "${hint}"?)` : `; allowed keys: ${Object.keys(spec.fields).join(", ")}`),
        );
      }
      for (const [key, field] of Object.entries(spec.fields)) {
        if (obj[key] === undefined || obj[key] === null) {
          if (field.required) {
            fail(`missing required key "${key}" (${expectedOf(field.spec)})`);
          }
          if (field.default !== undefined) obj[key] = structuredClone(field.default);
          else delete obj[key];
          if (obj[key] !== undefined && field.spec.kind === "object") {
            obj[key] = validate(obj[key], field.spec, [...path, key], locate);
          }
          continue;
        }
        obj[key] = validate(obj[key], field.spec, [...path, key], locate);
      }
      return obj;
    }
    case "array": {
      if (!Array.isArray(value)) return mismatch();
      if (spec.minItems !== undefined && value.length < spec.minItems) {
        fail(`expected at least ${spec.minItems} item(s), got ${value.length}`);
      }
      return value.map((v, i) => validate(v, spec.of, [...path, i], locate));
    }
    case "int": {
      if (typeof value !== "number" || !Number.isInteger(value)) return mismatch();
      if (spec.min !== undefined && value < spec.min) return mismatch();
      if (spec.max !== undefined && value > spec.max) fail(`expected at most ${spec.max}, got ${value}`);
      return value;
    }
    case "number": {
      if (typeof value !== "number" || !Number.isFinite(value)) return mismatch();
      if (spec.positive && value <= 0) return mismatch();
      if (spec.min !== undefined && value < spec.min) fail(`expected at least ${spec.min}, got ${value}`);
      if (spec.max !== undefined && value > spec.max) fail(`expected at most ${spec.max}, got ${value}`);
      return value;
    }
    case "string":
      return typeof value === "string" && value.length > 0 ? value : mismatch();
    case "bool":
      return typeof value === "boolean" ? value : mismatch();
    case "enum": {
      if (typeof value !== "string" || !spec.values.includes(value)) {
        const hint = typeof value === "string" ? didYouMean(value, spec.values) : undefined;
        return fail(
          `expected ${expectedOf(spec)}, got ${describe(value)}` + (hint ? ` (did you mean "${hint}"?)` : ""),
        );
      }
      return value;
    }
    case "oneOf": {
      let firstDeep: SchemaError | undefined;
      for (const option of spec.options) {
        try {
          return validate(structuredClone(value), option, path, locate);
        } catch (e) {
          if (!(e instanceof SchemaError)) throw e;
          // Keep an error from inside a matching container (it is more precise than "expected X").
          const sameKind = (option.kind === "object" && typeof value === "object" && !Array.isArray(value)) ||
            (option.kind === "array" && Array.isArray(value));
          if (sameKind && !firstDeep) firstDeep = e;
        }
      }
      if (firstDeep) throw firstDeep;
      return mismatch();
    }
  }
}
