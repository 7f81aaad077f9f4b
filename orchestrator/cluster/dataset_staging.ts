// Where each node reads the dataset's token file. Local nodes use the orchestrator's copy. An SSH node uses the same
// path when its `manifest.json` there has the same content hash (a shared filesystem, or a copy put in place);
// otherwise a dataset up to `MAX_COPY_BYTES` is copied once into the node's cache
// (`~/.cache/flexsp/datasets/<hash>/`, token file first, manifest last) and reused by later runs.

import { UserError } from "../errors.ts";
import { DATASET_FILES, type DatasetIndex } from "../data/dataset_format.ts";
import type { ClusterSession, NodeLaunch } from "./cluster_session.ts";
import { shQuote } from "./ssh_transport.ts";

/** Largest token file copied to nodes automatically. */
export const MAX_COPY_BYTES = 2 * 1024 ** 3;

async function remoteHash(node: NodeLaunch, dir: string): Promise<string | undefined> {
  const r = await node.conn!.exec(`cat ${shQuote(`${dir}/${DATASET_FILES.manifest}`)} 2>/dev/null`);
  if (r.code !== 0) return undefined;
  try {
    return JSON.parse(r.stdout).contentHash;
  } catch {
    return undefined;
  }
}

/** Token file path of the dataset on every ready node (copying it where needed). */
export async function stageDataset(
  cluster: ClusterSession,
  ds: DatasetIndex,
  log: (line: string) => void,
): Promise<Map<NodeLaunch, string>> {
  const out = new Map<NodeLaunch, string>();
  const hash = ds.manifest.contentHash;
  await Promise.all(cluster.ready.map(async (node) => {
    if (node.config.transport === "local" || !node.conn) {
      out.set(node, ds.tokensPath);
      return;
    }
    if (await remoteHash(node, ds.dir) === hash) {
      out.set(node, ds.tokensPath);
      return;
    }
    const dir = `${node.boot!.probe.cache}/datasets/${hash.slice(0, 16)}`;
    if (await remoteHash(node, dir) !== hash) {
      const bytes = ds.manifest.files.tokens.bytes;
      if (bytes > MAX_COPY_BYTES) {
        throw new UserError(
          `${node.name}: the dataset is not at ${ds.dir} there and is too large to copy (${bytes} bytes); put it ` +
            `on a shared filesystem or copy the directory to the same path on every node`,
        );
      }
      log(`${node.name}: copying the dataset (${(bytes / 1024 ** 2).toFixed(1)} MiB) to ${dir}`);
      const mk = await node.conn.exec(`mkdir -p ${shQuote(dir)}`);
      if (mk.code !== 0) throw new UserError(`${node.name}: cannot create ${dir}: ${mk.stderr.trim()}`);
      await node.conn.upload(ds.tokensPath, `${dir}/${DATASET_FILES.tokens}`);
      await node.conn.upload(`${ds.dir}/${DATASET_FILES.manifest}`, `${dir}/${DATASET_FILES.manifest}`);
    }
    out.set(node, `${dir}/${DATASET_FILES.tokens}`);
  }));
  return out;
}
