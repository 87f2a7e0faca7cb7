// What a system under test is, and the helpers the system definitions share: start-up checks,
// waiting for a greeting, and the nbdkit that serves the network leg of a mixed mirror.
import { existsSync } from 'node:fs';
import path from 'node:path';
import type { DaemonApi } from './copies.js';
import { runFio, type Measured, type Workload } from './fio.js';
import { freePort, startServer, stopServer, waitReady, type Server } from './proc.js';

/**
 * `raw`: fio on the file itself (the limit); `peer`: another NBD server; `daemon`: the onestack
 * daemon over NBD; `embedded`: @onestack/engine in a process of its own, no NBD.
 */
export type SystemGroup = 'raw' | 'peer' | 'daemon' | 'embedded';

export interface Running {
  /** The process that serves the I/O (absent for raw fio: fio is both ends). */
  readonly server?: Server;
  /** For progress lines: a URI, a file, a pid. */
  readonly where: string;
  /** Helpers started for this system only (an nbdkit serving a remote leg): stopped with it. */
  readonly aux?: readonly Server[];
  /** The onestack daemon's API, for `status --json` (copies per request). */
  readonly api?: DaemonApi;
  /** Runs one workload for `seconds` (plus the ramp) against the system. */
  measure(w: Workload, seconds: number, cwd: string): Promise<Measured>;
}

export interface SystemDef {
  readonly id: string;
  readonly label: string;
  readonly group: SystemGroup;
  /** How many of the images onestack uses as elements (their reserved headers are cleared first). */
  readonly onestackImages?: 1 | 2;
  /** Why it cannot run here, or null. */
  unavailable(): string | null;
  start(ctx: StartContext): Promise<Running>;
}

export interface StartContext {
  readonly images: readonly [string, string];
  readonly workDir: string;
  readonly repoRoot: string;
}

export const EXPORT = 'bench';
const STARTUP_MS = 30_000;

export function isOnestack(s: SystemDef): boolean {
  return s.group === 'daemon' || s.group === 'embedded';
}

function onPath(tool: string): boolean {
  return ['/usr/local/bin', '/usr/bin', '/bin', '/usr/sbin', '/sbin'].some((d) => existsSync(path.join(d, tool)));
}

export function need(...tools: string[]): string | null {
  const missing = tools.filter((t) => !onPath(t));
  return missing.length === 0 ? null : `missing ${missing.join(', ')}`;
}

/** A running NBD server measured with fio's nbd engine. */
export function nbdRunning(server: Server, port: number): Running {
  const uri = `nbd://127.0.0.1:${port}/${EXPORT}`;
  return { server, where: uri, measure: (w, seconds, cwd) => runFio({ kind: 'nbd', uri }, w, seconds, cwd) };
}

/** Ready, or stopped: a server that never came up must not linger until the bench exits. */
export async function started(server: Server, port: number, readyLine?: RegExp): Promise<Running> {
  try {
    await waitReady(server, port, STARTUP_MS, readyLine);
  } catch (e) {
    await stopServer(server);
    throw e;
  }
  return nbdRunning(server, port);
}

export interface RemoteLeg { readonly server: Server; readonly port: number }

/** nbdkit's file plugin (page cache) serving `image`: the network leg of a mixed mirror. */
export async function remoteLeg(id: string, image: string): Promise<RemoteLeg> {
  const port = await freePort();
  const r = await started(startServer(`nbdkit (remote leg of ${id})`, 'nbdkit', ['-f', '--exit-with-parent', '-p', String(port), '-i', '127.0.0.1', 'file', image]), port);
  return { server: r.server!, port };
}

/** Starts the main server with `leg` (if any) attached to it; stops the leg if the main one fails. */
export async function withLeg(leg: RemoteLeg | undefined, start: () => Promise<Running>): Promise<Running> {
  try {
    const running = await start();
    return leg === undefined ? running : { ...running, aux: [leg.server] };
  } catch (e) {
    if (leg !== undefined) await stopServer(leg.server);
    throw e;
  }
}
