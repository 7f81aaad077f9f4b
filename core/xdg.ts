// XDG base directories of this machine's user: where flexsp keeps caches (bundles, datasets, Deno binaries).

/** `$XDG_CACHE_HOME`, else `$HOME/.cache` (else `/tmp/.cache`). */
export function cacheHome(): string {
  return Deno.env.get("XDG_CACHE_HOME") || `${Deno.env.get("HOME") ?? "/tmp"}/.cache`;
}

/** flexsp's cache directory (`<cache home>/flexsp`), or a subdirectory of it. */
export function flexspCacheDir(sub?: string): string {
  return sub ? `${cacheHome()}/flexsp/${sub}` : `${cacheHome()}/flexsp`;
}
