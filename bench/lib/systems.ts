// The NBD servers under test, each started on a free loopback port over the same image file(s).
// Mixed systems (a local leg plus a remote one) start an nbdkit of their own for the remote leg.
import { existsSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { freePort, startServer, stopServer, waitReady, type Server } from './proc.js';

export interface Running {
  readonly server: Server;
  readonly uri: string;
  /** Helpers started for this system only (an nbdkit serving a remote leg): stopped with it. */
  readonly aux?: readonly Server[];
}

export interface SystemDef {
  readonly id: string;
  readonly label: string;
  /** onestack rows are compared against the best of the others. */
  readonly onestack: boolean;
  /** How many of the images onestack uses as elements (their reserved headers are cleared first). */
  readonly onestackImages?: 1 | 2;
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

/** Ready, or stopped: a server that never came up must not linger until the bench exits. */
async function started(server: Server, port: number, readyLine?: RegExp): Promise<Running> {
  try {
    await waitReady(server, port, STARTUP_MS, readyLine);
  } catch (e) {
    await stopServer(server);
    throw e;
  }
  return { server, uri: `nbd://127.0.0.1:${port}/${EXPORT}` };
}

interface RemoteLeg { readonly server: Server; readonly port: number }

/** nbdkit's file plugin (page cache) serving `image`: the network leg of a mixed mirror. */
async function remoteLeg(id: string, image: string): Promise<RemoteLeg> {
  const port = await freePort();
  const r = await started(startServer(`nbdkit (remote leg of ${id})`, 'nbdkit', ['-f', '--exit-with-parent', '-p', String(port), '-i', '127.0.0.1', 'file', image]), port);
  return { server: r.server, port };
}

/** Starts the main server with `leg` (if any) attached to it; stops the leg if the main one fails. */
async function withLeg(leg: RemoteLeg | undefined, start: () => Promise<Running>): Promise<Running> {
  try {
    const running = await start();
    return leg === undefined ? running : { ...running, aux: [leg.server] };
  } catch (e) {
    if (leg !== undefined) await stopServer(leg.server);
    throw e;
  }
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

/** onestack config over element URIs; local files use the page cache (writeback) like the peers. */
async function onestackConfig(ctx: StartContext, id: string, layout: 'linear' | 'raid1', uris: readonly string[]): Promise<string> {
  const lines = ['elements:'];
  uris.forEach((uri, i) => lines.push(`  - { name: e${i}, uri: "${uri}"${uri.startsWith('file:') ? ', cache: writeback' : ''} }`));
  lines.push('volumes:', `  - { name: ${EXPORT}, layout: ${layout}, elements: [${uris.map((_, i) => `e${i}`).join(', ')}], boot: true }`);
  const file = path.join(ctx.workDir, `${id}.yaml`);
  await writeFile(file, lines.join('\n') + '\n');
  return file;
}

interface OnestackDef {
  readonly id: string;
  readonly label: string;
  readonly layout: 'linear' | 'raid1';
  readonly images: 1 | 2;
  /** Image 1 is served by an nbdkit of this system's own and joins as nbd://: a local + remote mirror. */
  readonly remote?: boolean;
  readonly likePeer?: string;
}

function onestack(def: OnestackDef): SystemDef {
  return {
    id: def.id, label: def.label, onestack: true, onestackImages: def.images, ...(def.likePeer === undefined ? {} : { likePeer: def.likePeer }),
    unavailable: () => (def.remote === true ? need('nbdkit') : null),
    async start(ctx) {
      const main = path.join(ctx.repoRoot, 'packages/cli/dist/main.js');
      if (!existsSync(main)) throw new Error(`${main} is missing: run \`pnpm run build\` first`);
      const leg = def.remote === true ? await remoteLeg(def.id, ctx.images[1]) : undefined;
      return withLeg(leg, async () => {
        const uris = [`file:${ctx.images[0]}`];
        if (def.images === 2) uris.push(leg === undefined ? `file:${ctx.images[1]}` : `nbd://127.0.0.1:${leg.port}/`);
        const [port, apiPort] = [await freePort(), await freePort()];
        const config = await onestackConfig(ctx, def.id, def.layout, uris);
        const dataDir = path.join(ctx.workDir, `data-${def.id}`);
        const s = startServer(def.id, process.execPath, [main, 'serve', '--config', config, '--data-dir', dataDir,
          '--nbd', `127.0.0.1:${port}`, '--api', `127.0.0.1:${apiPort}`], ctx.repoRoot);
        return started(s, port, /onestack: ready/);
      });
    },
  };
}

/**
 * qemu-storage-daemon quorum (vote-threshold=1: raid1-like) of image 0 as a local file (page
 * cache, like onestack's default) and image 1, either as a file too or over NBD from an nbdkit
 * of its own (../shared/PEERS.md, with cache.direct=off so it compares like for like).
 */
function qsdQuorum(id: string, label: string, remote: boolean): SystemDef {
  return {
    id, label, onestack: false,
    unavailable: () => need('qemu-storage-daemon', ...(remote ? ['nbdkit'] : [])),
    async start(ctx) {
      const leg = remote ? await remoteLeg(id, ctx.images[1]) : undefined;
      return withLeg(leg, async () => {
        const port = await freePort();
        const file = (i: number): string[] => ['--blockdev', `driver=file,node-name=f${i},filename=${ctx.images[i]},cache.direct=off,aio=threads`];
        const child1 = leg === undefined ? file(1) : ['--blockdev', `driver=nbd,node-name=f1,server.type=inet,server.host=127.0.0.1,server.port=${leg.port}`];
        return started(startServer(id, 'qemu-storage-daemon', [
          ...file(0), '--blockdev', 'driver=raw,node-name=r0,file=f0',
          ...child1, '--blockdev', 'driver=raw,node-name=r1,file=f1',
          '--blockdev', 'driver=quorum,node-name=q,children.0=r0,children.1=r1,vote-threshold=1,read-pattern=fifo',
          '--nbd-server', `addr.type=inet,addr.host=127.0.0.1,addr.port=${port}`,
          '--export', `type=nbd,id=e0,node-name=q,name=${EXPORT},writable=on`,
        ]), port);
      });
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
  qsdQuorum('qsd-quorum', 'qemu-storage-daemon quorum of 2 (writeback)', false),
  qsdQuorum('qsd-quorum-remote', 'qemu-storage-daemon quorum local + nbdkit', true),
  onestack({ id: 'onestack-linear', label: 'onestack linear (writeback)', layout: 'linear', images: 1 }),
  onestack({ id: 'onestack-raid1', label: 'onestack raid1 of 2 (writeback)', layout: 'raid1', images: 2, likePeer: 'qsd-quorum' }),
  onestack({ id: 'onestack-raid1-remote', label: 'onestack raid1 local + nbdkit', layout: 'raid1', images: 2, remote: true, likePeer: 'qsd-quorum-remote' }),
];
