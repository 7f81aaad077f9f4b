// Canonical JSON: sorted object keys, `undefined` members left out, so equal values always give equal text (and
// equal hashes).

function sortKeys(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(sortKeys);
  if (value === null || typeof value !== "object") return value;
  const out: Record<string, unknown> = {};
  for (const k of Object.keys(value as Record<string, unknown>).sort()) {
    const v = (value as Record<string, unknown>)[k];
    if (v !== undefined) out[k] = sortKeys(v);
  }
  return out;
}

/** Canonical JSON (sorted keys, undefined left out) of any plain value. */
export function canonicalJson(value: unknown): string {
  return JSON.stringify(sortKeys(value));
}
