// Minimal assertions for Deno.test (JSR's @std/assert is not reachable from our machines).

/** Throws with `msg` unless `cond`. */
export function assert(cond: unknown, msg = "assertion failed"): asserts cond {
  if (!cond) throw new Error(msg);
}

/**
 * Structural deep equality: primitives by value (NaN equals NaN, 0 equals -0), arrays and typed arrays element by
 * element, Maps by entries, Sets by members, Dates by time, other objects by own enumerable keys (a key holding
 * `undefined` counts as absent). Returns the path of the first difference, or undefined when equal.
 */
export function difference(a: unknown, b: unknown, path = ""): string | undefined {
  if (a === b || (Number.isNaN(a) && Number.isNaN(b))) return undefined;
  const where = path || "(top)";
  if (typeof a !== "object" || typeof b !== "object" || a === null || b === null) return where;
  if (Array.isArray(a) !== Array.isArray(b)) return where;
  if (a instanceof Date || b instanceof Date) {
    return a instanceof Date && b instanceof Date && a.getTime() === b.getTime() ? undefined : where;
  }
  if (a instanceof Map || b instanceof Map) {
    if (!(a instanceof Map && b instanceof Map) || a.size !== b.size) return `${where} (Map size)`;
    for (const [k, v] of a) {
      if (!b.has(k)) return `${path}.get(${String(k)}) (missing)`;
      const d = difference(v, b.get(k), `${path}.get(${String(k)})`);
      if (d) return d;
    }
    return undefined;
  }
  if (a instanceof Set || b instanceof Set) {
    if (!(a instanceof Set && b instanceof Set) || a.size !== b.size) return `${where} (Set size)`;
    const rest = [...b];
    for (const x of a) {
      const i = rest.findIndex((y) => difference(x, y) === undefined);
      if (i < 0) return `${where} (Set member ${String(x)})`;
      rest.splice(i, 1);
    }
    return undefined;
  }
  if (ArrayBuffer.isView(a) || ArrayBuffer.isView(b)) {
    if (!(ArrayBuffer.isView(a) && ArrayBuffer.isView(b)) || a.constructor !== b.constructor) return where;
    const x = a as unknown as ArrayLike<unknown>;
    const y = b as unknown as ArrayLike<unknown>;
    if (x.length !== y.length) return `${where} (length ${x.length} vs ${y.length})`;
    for (let i = 0; i < x.length; i++) if (difference(x[i], y[i]) !== undefined) return `${path}[${i}]`;
    return undefined;
  }
  if (Array.isArray(a) && Array.isArray(b)) {
    if (a.length !== b.length) return `${where} (length ${a.length} vs ${b.length})`;
    for (let i = 0; i < a.length; i++) {
      const d = difference(a[i], b[i], `${path}[${i}]`);
      if (d) return d;
    }
    return undefined;
  }
  const ra = a as Record<string, unknown>;
  const rb = b as Record<string, unknown>;
  const keys = new Set([...Object.keys(ra), ...Object.keys(rb)]);
  for (const k of keys) {
    const d = difference(ra[k], rb[k], path ? `${path}.${k}` : k);
    if (d) return d;
  }
  return undefined;
}

/** Structural deep equality (see `difference`); the message names the first differing path. */
export function assertEquals<T>(actual: T, expected: T, msg = ""): void {
  const d = difference(actual, expected);
  if (d === undefined) return;
  const show = (v: unknown) => Deno.inspect(v, { depth: 8, compact: true, breakLength: Infinity, iterableLimit: 200 });
  throw new Error(`${msg}\nexpected: ${show(expected)}\nactual:   ${show(actual)}\nfirst difference at ${d}`);
}

/** |actual - expected| <= tol * max(1, |expected|). */
export function assertClose(actual: number, expected: number, tol = 1e-9, msg = ""): void {
  if (!(Math.abs(actual - expected) <= tol * Math.max(1, Math.abs(expected)))) {
    throw new Error(`${msg} expected ${expected}, got ${actual} (tol ${tol})`);
  }
}

/** Runs `fn`, expects it to throw (sync or async), and returns the error's message. */
export async function assertThrows(fn: () => unknown, match?: string | RegExp): Promise<string> {
  let message: string | undefined;
  try {
    await fn();
  } catch (e) {
    message = (e as Error).message;
  }
  if (message === undefined) throw new Error(`expected an error${match ? ` matching ${match}` : ""}`);
  if (typeof match === "string" && !message.includes(match)) {
    throw new Error(`error message does not contain ${JSON.stringify(match)}:\n${message}`);
  }
  if (match instanceof RegExp && !match.test(message)) throw new Error(`error does not match ${match}:\n${message}`);
  return message;
}

/** Fails unless `text` contains every needle. */
export function assertIncludes(text: string, ...needles: string[]): void {
  for (const n of needles) {
    if (!text.includes(n)) throw new Error(`expected to find ${JSON.stringify(n)} in:\n${text}`);
  }
}

/** Polls `cond` every 50 ms until it holds or `ms` pass; returns whether it held. */
export async function eventually(cond: () => boolean | Promise<boolean>, ms: number): Promise<boolean> {
  const end = performance.now() + ms;
  while (performance.now() < end) {
    if (await cond()) return true;
    await new Promise((r) => setTimeout(r, 50));
  }
  return await cond();
}

/** Every element satisfies |a-b| <= atol + rtol·|b|; the message names the worst element. Returns max |a-b|. */
export function assertArrayClose(
  a: ArrayLike<number>,
  b: ArrayLike<number>,
  atol: number,
  rtol: number,
  what = "",
): number {
  if (a.length !== b.length) throw new Error(`${what}: length ${a.length} vs ${b.length}`);
  let wi = -1;
  let worst = 0;
  let maxAbs = 0;
  for (let i = 0; i < a.length; i++) {
    const diff = Math.abs(a[i] - b[i]);
    if (!Number.isNaN(diff)) maxAbs = Math.max(maxAbs, diff);
    if (Object.is(a[i], b[i])) continue;
    const tol = atol + rtol * Math.abs(b[i]);
    if (diff <= tol) continue;
    const excess = Number.isNaN(diff) ? Infinity : diff - tol;
    if (wi < 0 || excess > worst) [wi, worst] = [i, excess];
  }
  if (wi >= 0) {
    throw new Error(
      `${what}: element ${wi}: ${a[wi]} vs ${b[wi]} (abs err ${Math.abs(a[wi] - b[wi]).toExponential(2)}, ` +
        `atol ${atol}, rtol ${rtol})`,
    );
  }
  return maxAbs;
}

/** The two arrays are bit-identical. */
export function assertBitEqual(a: Float32Array, b: Float32Array, what = ""): void {
  if (a.length !== b.length) throw new Error(`${what}: length ${a.length} vs ${b.length}`);
  const x = new Uint32Array(a.buffer, a.byteOffset, a.length);
  const y = new Uint32Array(b.buffer, b.byteOffset, b.length);
  for (let i = 0; i < x.length; i++) {
    if (x[i] !== y[i]) throw new Error(`${what}: differs at ${i}: ${a[i]} vs ${b[i]}`);
  }
}
