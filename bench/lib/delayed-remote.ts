// A local image and a remote one per case, the remotes served by one nbdkit behind its delay
// filter (a far-away disk): what the transport-aware read and write-behind benches compare on.
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { sparseImage } from './images.js';
import { freePort, startServer, waitReady, type Server } from './proc.js';

export interface DelayedPairs {
  readonly server: Server;
  /** The local image of case `name`. */
  local(name: string): string;
  /** The NBD URI of case `name`'s remote image. */
  remoteUri(name: string): string;
}

/**
 * Creates `local-NAME.img` in `dir` and `remote/remote-NAME.img` for every name (each
 * `imageBytes` long, sparse) and starts nbdkit on the remote directory with `delayArgs`
 * (e.g. `rdelay=20ms`). The caller stops `server`.
 */
export async function delayedPairs(dir: string, names: readonly string[], imageBytes: number, delayArgs: readonly string[], nbdkitThreads?: number): Promise<DelayedPairs> {
  const remoteDir = path.join(dir, 'remote');
  mkdirSync(remoteDir, { recursive: true });
  for (const n of names) {
    await sparseImage(path.join(dir, `local-${n}.img`), imageBytes);
    await sparseImage(path.join(remoteDir, `remote-${n}.img`), imageBytes);
  }
  const port = await freePort();
  const threads = nbdkitThreads === undefined ? [] : ['-t', String(nbdkitThreads)];
  const server = startServer('nbdkit', 'nbdkit', ['-f', ...threads, '-p', String(port), '-i', '127.0.0.1', '--filter=delay', 'file', `dir=${remoteDir}`, ...delayArgs]);
  await waitReady(server, port, 15_000);
  return {
    server,
    local: (n) => path.join(dir, `local-${n}.img`),
    remoteUri: (n) => `nbd://127.0.0.1:${port}/remote-${n}.img`,
  };
}
