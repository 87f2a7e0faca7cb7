// The NBD servers under test, each started on a free loopback port over the same image file(s).
import { existsSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { freePort, startServer, waitReady, type Server } from './proc.js';

export interface Running {
  readonly server: Server;
  readonly uri: string;
}

export interface SystemDef {
  readonly id: string;
  readonly label: string;
  /** onestack rows are compared against the best of the others. */
  readonly onestack: boolean;
  /** A like-for-like peer for an extra ratio row (e.g. raid1 vs a quorum of two). */
  readonly likePeer?: string;
  /** Why it cannot run here, or null. */
  unavailable(): string | null;
  start(ctx: StartContext): Promise<Running>;
}

export interface StartContext {
  readonly images: readonly [string, string];
  readonly workDir: string;
  readonly repoRoot: string;
}

const EXPORT = 'bench';
const STARTUP_MS = 30_000;

function onPath(tool: string): boolean {
  return ['/usr/local/bin', '/usr/bin', '/bin', '/usr/sbin', '/sbin'].some((d) => existsSync(path.join(d, tool)));
}

function need(...tools: string[]): string | null {
  const missing = tools.filter((t) => !onPath(t));
  return missing.length === 0 ? null : `missing ${missing.join(', ')}`;
}

async function started(server: Server, port: number, readyLine?: RegExp): Promise<Running> {
  await waitReady(server, port, STARTUP_MS, readyLine);
  return { server, uri: `nbd://127.0.0.1:${port}/${EXPORT}` };
}

function qemuNbd(id: string, label: string, cacheArgs: readonly string[]): SystemDef {
  return {
    id, label, onestack: false,
    unavailable: () => need('qemu-nbd'),
    async start(ctx) {
      const port = await freePort();
      const s = startServer(id, 'qemu-nbd', ['-f', 'raw', '-x', EXPORT, '-p', String(port), '-b', '127.0.0.1', ...cacheArgs, '-t', '--shared=8', ctx.images[0]]);
      return started(s, port);
    },
  };
}

/** onestack config: elements over the bench images, page cache (writeback) like the peers. */
async function onestackConfig(ctx: StartContext, layout: 'linear' | 'raid1'): Promise<string> {
  const imgs = layout === 'linear' ? [ctx.images[0]] : [...ctx.images];
  const lines = ['elements:'];
  imgs.forEach((img, i) => lines.push(`  - { name: e${i}, uri: "file:${img}", cache: writeback }`));
  lines.push('volumes:', `  - { name: ${EXPORT}, layout: ${layout}, elements: [${imgs.map((_, i) => `e${i}`).join(', ')}], boot: true }`);
  const file = path.join(ctx.workDir, `onestack-${layout}.yaml`);
  await writeFile(file, lines.join('\n') + '\n');
  return file;
}

function onestack(layout: 'linear' | 'raid1', label: string, likePeer?: string): SystemDef {
  return {
    id: `onestack-${layout}`, label, onestack: true, ...(likePeer === undefined ? {} : { likePeer }),
    unavailable: () => null,
    async start(ctx) {
      const main = path.join(ctx.repoRoot, 'packages/cli/dist/main.js');
      if (!existsSync(main)) throw new Error(`${main} is missing: run \`pnpm run build\` first`);
      const [port, apiPort] = [await freePort(), await freePort()];
      const config = await onestackConfig(ctx, layout);
      const dataDir = path.join(ctx.workDir, `data-${layout}`);
      const s = startServer(`onestack ${layout}`, process.execPath, [main, 'serve', '--config', config, '--data-dir', dataDir,
        '--nbd', `127.0.0.1:${port}`, '--api', `127.0.0.1:${apiPort}`], ctx.repoRoot);
      return started(s, port, /onestack: ready/);
    },
  };
}

export const SYSTEMS: readonly SystemDef[] = [
  qemuNbd('qemu-nbd-none', 'qemu-nbd cache=none aio=io_uring', ['--cache=none', '--aio=io_uring']),
  qemuNbd('qemu-nbd-writeback', 'qemu-nbd cache=writeback aio=threads', ['--cache=writeback', '--aio=threads']),
  {
    id: 'nbdkit-file', label: 'nbdkit file (page cache)', onestack: false,
    unavailable: () => need('nbdkit'),
    async start(ctx) {
      const port = await freePort();
      return started(startServer('nbdkit', 'nbdkit', ['-f', '--exit-with-parent', '-p', String(port), '-i', '127.0.0.1', 'file', ctx.images[0]]), port);
    },
  },
  {
    id: 'qsd-quorum', label: 'qemu-storage-daemon quorum of 2 (writeback)', onestack: false,
    unavailable: () => need('qemu-storage-daemon'),
    async start(ctx) {
      const port = await freePort();
      const leg = (i: number): string[] => [
        '--blockdev', `driver=file,node-name=f${i},filename=${ctx.images[i]},cache.direct=off,aio=threads`,
        '--blockdev', `driver=raw,node-name=r${i},file=f${i}`,
      ];
      return started(startServer('qemu-storage-daemon', 'qemu-storage-daemon', [
        ...leg(0), ...leg(1),
        '--blockdev', 'driver=quorum,node-name=q,children.0=r0,children.1=r1,vote-threshold=1,read-pattern=fifo',
        '--nbd-server', `addr.type=inet,addr.host=127.0.0.1,addr.port=${port}`,
        '--export', `type=nbd,id=e0,node-name=q,name=${EXPORT},writable=on`,
      ]), port);
    },
  },
  onestack('linear', 'onestack linear (writeback)'),
  onestack('raid1', 'onestack raid1 of 2 (writeback)', 'qsd-quorum'),
];
