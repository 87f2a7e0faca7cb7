// The other NBD servers, each started on a free loopback port over the same image file(s):
// qemu-nbd, nbdkit's file plugin and qemu-storage-daemon (a plain file node, and quorums).
import { EXPORT, need, remoteLeg, started, withLeg, type SystemDef } from './system-kit.js';
import { freePort, startServer } from './proc.js';

export function qemuNbd(id: string, label: string, cacheArgs: readonly string[]): SystemDef {
  return {
    id, label, group: 'peer',
    unavailable: () => need('qemu-nbd'),
    async start(ctx) {
      const port = await freePort();
      const s = startServer(id, 'qemu-nbd', ['-f', 'raw', '-x', EXPORT, '-p', String(port), '-b', '127.0.0.1', ...cacheArgs, '-t', '--shared=8', ctx.images[0]]);
      return started(s, port);
    },
  };
}

export function nbdkitFile(id: string, label: string): SystemDef {
  return {
    id, label, group: 'peer',
    unavailable: () => need('nbdkit'),
    async start(ctx) {
      const port = await freePort();
      return started(startServer('nbdkit', 'nbdkit', ['-f', '--exit-with-parent', '-p', String(port), '-i', '127.0.0.1', 'file', ctx.images[0]]), port);
    },
  };
}

/** qsd's NBD server exporting node `node` with the block nodes `blockdevs` (each one --blockdev). */
function qsdArgs(port: number, blockdevs: readonly string[], node: string): string[] {
  return [
    ...blockdevs.flatMap((b) => ['--blockdev', b]),
    '--nbd-server', `addr.type=inet,addr.host=127.0.0.1,addr.port=${port}`,
    '--export', `type=nbd,id=e0,node-name=${node},name=${EXPORT},writable=on`,
  ];
}

/** A local file node in the page cache (cache.direct=off), like onestack's `cache: writeback`. */
function fileNode(i: number, image: string): string {
  return `driver=file,node-name=f${i},filename=${image},cache.direct=off,aio=threads`;
}

/** qemu-storage-daemon exporting image 0 as a plain `file` node: like for like with onestack linear. */
export function qsdPlain(id: string, label: string): SystemDef {
  return {
    id, label, group: 'peer',
    unavailable: () => need('qemu-storage-daemon'),
    async start(ctx) {
      const port = await freePort();
      return started(startServer(id, 'qemu-storage-daemon', qsdArgs(port, [fileNode(0, ctx.images[0]), 'driver=raw,node-name=r0,file=f0'], 'r0')), port);
    },
  };
}

/**
 * qemu-storage-daemon quorum (vote-threshold=1: raid1-like) of image 0 as a local file (page
 * cache, like onestack's default) and image 1, either as a file too or over NBD from an nbdkit
 * of its own (../shared/PEERS.md, with cache.direct=off so it compares like for like).
 */
export function qsdQuorum(id: string, label: string, remote: boolean): SystemDef {
  return {
    id, label, group: 'peer',
    unavailable: () => need('qemu-storage-daemon', ...(remote ? ['nbdkit'] : [])),
    async start(ctx) {
      const leg = remote ? await remoteLeg(id, ctx.images[1]) : undefined;
      return withLeg(leg, async () => {
        const port = await freePort();
        const child1 = leg === undefined ? fileNode(1, ctx.images[1]) : `driver=nbd,node-name=f1,server.type=inet,server.host=127.0.0.1,server.port=${leg.port}`;
        return started(startServer(id, 'qemu-storage-daemon', qsdArgs(port, [
          fileNode(0, ctx.images[0]), 'driver=raw,node-name=r0,file=f0',
          child1, 'driver=raw,node-name=r1,file=f1',
          'driver=quorum,node-name=q,children.0=r0,children.1=r1,vote-threshold=1,read-pattern=fifo',
        ], 'q')), port);
      });
    },
  };
}
