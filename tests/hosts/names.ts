// Names of everything the test hosts create (namespaces, links, temp dirs), keyed by the creating process id, and
// the cleanup of leftovers from runs whose process is gone (a crashed or killed test run).

import $ from "dax";

/** Prefix of every namespace and temp directory the test hosts create. */
export const NAME_PREFIX = "fxag";

/** `fxag-<pid>-<seq>-h<i>`: the namespace of host i of run `seq` of process `pid`. */
export function namespaceName(pid: number, seq: number, i: number): string {
  return `${NAME_PREFIX}-${pid}-${seq}-h${i}`;
}

/** Interface names (at most 15 characters): the bridge and the root-side veth of each host. */
export function linkNames(
  pid: number,
  seq: number,
): { bridge: string; inner: string; veth: (i: number) => string } {
  const id = `${pid.toString(36)}_${seq.toString(36)}`;
  return { bridge: `fxb${id}`, inner: `fxc${id}`, veth: (i) => `fxv${id}_${i}` };
}

function alive(pid: number): boolean {
  try {
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    return !/\) [ZX] /.test(stat);
  } catch {
    return false;
  }
}

/** Removes namespaces, bridges and temp dirs of test-host runs whose creating process no longer runs. */
export async function cleanupStaleTestHosts(): Promise<string[]> {
  const removed: string[] = [];
  const list = await $`ip netns list`.noThrow().quiet().text();
  for (const line of list.split("\n")) {
    const ns = line.split(" ")[0];
    const m = ns.match(new RegExp(`^${NAME_PREFIX}-(\\d+)-\\d+-h\\d+$`));
    if (!m || alive(Number(m[1]))) continue;
    const pids = await $`ip netns pids ${ns}`.noThrow().quiet().text();
    for (const tok of pids.split(/\s+/).filter(Boolean)) {
      try {
        Deno.kill(Number(tok), "SIGKILL");
      } catch { /* gone */ }
    }
    await $`ip netns del ${ns}`.noThrow().quiet();
    removed.push(ns);
  }
  const links = await $`ip -o link show type bridge`.noThrow().quiet().text();
  for (const m of links.matchAll(/^\d+: (fx[bc]([0-9a-z]+)_[0-9a-z]+)[:@]/gm)) {
    if (alive(parseInt(m[2], 36))) continue;
    await $`ip link del ${m[1]}`.noThrow().quiet();
    removed.push(m[1]);
  }
  const tmp = Deno.env.get("TMPDIR") ?? "/tmp";
  for await (const e of Deno.readDir(tmp)) {
    const m = e.name.match(new RegExp(`^${NAME_PREFIX}-(\\d+)-\\d+-`));
    if (!e.isDirectory || !m || alive(Number(m[1]))) continue;
    await Deno.remove(`${tmp}/${e.name}`, { recursive: true }).catch(() => {});
    removed.push(`${tmp}/${e.name}`);
  }
  return removed;
}
