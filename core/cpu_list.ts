// Linux CPU lists ("0-3,8,10-11", as in /proc/PID/status Cpus_allowed_list and `taskset -c`): parsing, printing,
// and the per-executor core sets of `cluster.nodes[].cpu_pinning`.

/** The CPU numbers of a list like `0-3,8` (sorted, unique); throws on anything else. */
export function parseCpuList(text: string): number[] {
  const out = new Set<number>();
  const t = text.trim();
  if (!t) throw new Error("empty CPU list");
  for (const part of t.split(",")) {
    const m = /^\s*(\d+)\s*(?:-\s*(\d+)\s*)?$/.exec(part);
    if (!m) throw new Error(`"${part.trim()}" is not a CPU number or range (like 0-3)`);
    const a = Number(m[1]), b = m[2] === undefined ? a : Number(m[2]);
    if (b < a) throw new Error(`range ${a}-${b} runs backwards`);
    for (let c = a; c <= b; c++) out.add(c);
  }
  return [...out].sort((x, y) => x - y);
}

/** The shortest list text of a set of CPUs (`[0,1,2,5]` → `0-2,5`). */
export function formatCpuList(cpus: number[]): string {
  const s = [...new Set(cpus)].sort((a, b) => a - b);
  const parts: string[] = [];
  for (let i = 0; i < s.length;) {
    let j = i;
    while (j + 1 < s.length && s[j + 1] === s[j] + 1) j++;
    parts.push(j === i ? String(s[i]) : `${s[i]}-${s[j]}`);
    i = j + 1;
  }
  return parts.join(",");
}

/**
 * `cpu_pinning: auto`: the node's usable CPUs split into `executors` contiguous blocks of equal size (the remainder
 * left unused, so that every executor gets the same compute); with fewer CPUs than executors, executor i gets CPU
 * i mod (number of CPUs): cores are then shared, which the profile warns about.
 */
export function autoCpuSets(available: number[], executors: number): number[][] {
  if (available.length === 0) throw new Error("no CPUs available");
  const per = Math.floor(available.length / executors);
  if (per === 0) return Array.from({ length: executors }, (_, i) => [available[i % available.length]]);
  return Array.from({ length: executors }, (_, i) => available.slice(i * per, (i + 1) * per));
}

/** How a node's executors are given cores: `off` (the OS schedules them anywhere), `auto`, or one list per device. */
export type CpuPinning = "off" | "auto" | string[];

/** The CPUs process `pid` may run on, as the kernel applies them (Linux: Cpus_allowed_list of /proc/PID/status). */
export function processCpus(pid: number | "self"): number[] | undefined {
  try {
    const m = /^Cpus_allowed_list:\s*(\S+)/m.exec(Deno.readTextFileSync(`/proc/${pid}/status`));
    return m ? parseCpuList(m[1]) : undefined;
  } catch {
    return undefined; // not Linux, or the process is gone
  }
}

/** This process's usable CPUs (its affinity on Linux; elsewhere 0..n-1). */
export function ownCpus(): number[] {
  return processCpus("self") ?? Array.from({ length: navigator.hardwareConcurrency }, (_, i) => i);
}
