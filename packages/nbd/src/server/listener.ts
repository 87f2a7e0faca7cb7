// One listening socket of the NBD server: a TCP address, a Unix socket path, or a listening
// socket inherited from a supervisor (systemd socket activation passes it as an fd). Every kind
// accepts paused, so a plaintext connection can move to the zero-copy reader first.

import { chmodSync, fstatSync, lstatSync, readFileSync, readlinkSync, statSync, unlinkSync, type Stats } from 'node:fs';
import { type Server, type Socket, connect, createServer } from 'node:net';
import { dirname } from 'node:path';
import type { LogFn } from './limits.js';

/** Where a server listens. */
export type NbdListenTarget =
  | { readonly host: string; readonly port: number }
  /** A Unix socket created at this path (mode 0660 unless `mode` says otherwise). */
  | { readonly socketPath: string; readonly mode?: number }
  /** An already listening socket (TCP or Unix) handed over by the parent, e.g. systemd's fd 3. */
  | { readonly fd: number };

/** Where a listener ended up; an inherited fd reports what kind of socket it turned out to be. */
export type NbdBoundAddress =
  | { readonly transport: 'tcp'; readonly host: string; readonly port: number; readonly fd?: number }
  /** socketPath is absent for an inherited socket whose path is unknown (abstract or unnamed). */
  | { readonly transport: 'unix'; readonly socketPath?: string; readonly fd?: number };

export type Transport = NbdBoundAddress['transport'];

export interface Listener {
  readonly address: NbdBoundAddress;
  /** The listening net.Server (a takeover passes its fd to the next process: handover.ts). */
  readonly server: Server;
  close(): Promise<void>;
}

/** sun_path holds 108 bytes on Linux, the terminating NUL included. */
export const UNIX_PATH_BYTES_MAX = 107;
const DEFAULT_SOCKET_MODE = 0o660;
const STALE_PROBE_MS = 1_000;
const PROC_NET_UNIX_BYTES_MAX = 16 * 1024 * 1024;

/** An error with an errno-style code, so callers can tell "in use" from "bad target". */
function listenError(code: string, message: string): NodeJS.ErrnoException {
  const err: NodeJS.ErrnoException = new Error(message);
  err.code = code;
  return err;
}

/** Human text for a target, for log lines and errors. */
export function describeTarget(target: NbdListenTarget | NbdBoundAddress): string {
  if ('socketPath' in target && target.socketPath !== undefined) return `unix:${target.socketPath}${'fd' in target && target.fd !== undefined ? ` (fd ${target.fd})` : ''}`;
  if ('host' in target) {
    const hostPort = target.host.includes(':') ? `[${target.host}]:${target.port}` : `${target.host}:${target.port}`;
    return 'fd' in target && target.fd !== undefined ? `${hostPort} (fd ${target.fd})` : hostPort;
  }
  return 'fd' in target && target.fd !== undefined ? `fd ${target.fd}` : 'a Unix socket';
}

/** Resolves once `server` listens, or rejects with its listen error; later errors are logged. */
function listening(server: Server, log: LogFn, start: (done: () => void) => void): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    start(() => {
      server.off('error', reject);
      server.on('error', (err) => log('error', `nbd: listener error: ${err.message}`));
      resolve();
    });
  });
}

/** Whether something accepts connections on the Unix socket at `path` (bounded by a timeout). */
function socketAnswers(path: string): Promise<boolean> {
  return new Promise((resolve, reject) => {
    const probe: Socket = connect({ path });
    const done = (answer: boolean | Error): void => {
      clearTimeout(timer);
      probe.destroy();
      if (answer instanceof Error) reject(answer);
      else resolve(answer);
    };
    // A listener too busy to accept within the timeout still holds the path: treat it as alive.
    const timer = setTimeout(() => done(true), STALE_PROBE_MS);
    probe.once('connect', () => done(true));
    probe.once('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'ECONNREFUSED' || err.code === 'ENOENT') done(false);
      else done(listenError(err.code ?? 'EIO', `cannot probe the Unix socket ${path}: ${err.message}`));
    });
  });
}

function lstatOrUndefined(path: string): Stats | undefined {
  try {
    return lstatSync(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

function statOrUndefined(path: string): Stats | undefined {
  try {
    return statSync(path);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return undefined;
    throw err;
  }
}

/**
 * Makes `path` free for a new socket: nothing there, or a socket nobody answers on (left by a
 * crash), which is removed. A live socket or any other kind of file is refused, never removed.
 */
async function claimSocketPath(path: string): Promise<void> {
  if (Buffer.byteLength(path) > UNIX_PATH_BYTES_MAX) {
    throw listenError('ENAMETOOLONG', `Unix socket path ${path} is longer than ${UNIX_PATH_BYTES_MAX} bytes`);
  }
  // libuv reports a missing directory as EACCES; say what it is.
  const dir = dirname(path);
  const dirStats = statOrUndefined(dir);
  if (dirStats === undefined) throw listenError('ENOENT', `the directory ${dir} does not exist (for the Unix socket ${path})`);
  if (!dirStats.isDirectory()) throw listenError('ENOTDIR', `${dir} (for the Unix socket ${path}) is not a directory`);
  const stats = lstatOrUndefined(path);
  if (stats === undefined) return;
  if (!stats.isSocket()) {
    throw listenError('EEXIST', `${path} exists and is not a socket; refusing to replace it (remove it or choose another path)`);
  }
  if (await socketAnswers(path)) throw listenError('EADDRINUSE', `another process is listening on the Unix socket ${path}`);
  try {
    unlinkSync(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
}

/**
 * The path an inherited Unix socket is bound to, from /proc/net/unix (Linux), for the banner.
 * Undefined when unknown: another OS, an abstract or unnamed socket.
 */
function boundUnixPath(fd: number): string | undefined {
  try {
    const inode = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/self/fd/${fd}`))?.[1];
    if (inode === undefined) return undefined;
    const table = readFileSync('/proc/net/unix', 'utf8').slice(0, PROC_NET_UNIX_BYTES_MAX);
    for (const line of table.split('\n')) {
      // Num RefCount Protocol Flags Type St Inode Path
      const cols = line.trim().split(/\s+/);
      if (cols[6] === inode && cols[7] !== undefined && cols[7].startsWith('/')) return cols.slice(7).join(' ');
    }
  } catch {
    // not Linux, or /proc not mounted
  }
  return undefined;
}

export type AcceptFn = (socket: Socket, transport: Transport, label: string) => void;

async function listenTcp(target: { host: string; port: number }, accept: AcceptFn, log: LogFn): Promise<Listener> {
  const server = createServer({ noDelay: true, pauseOnConnect: true }, (s) => accept(s, 'tcp', `${s.remoteAddress ?? '?'}`));
  await listening(server, log, (done) => server.listen(target.port, target.host, done));
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('unexpected listen address');
  return { address: { transport: 'tcp', host: address.address, port: address.port }, server, close: () => closeServer(server) };
}

async function listenUnix(target: { socketPath: string; mode?: number }, accept: AcceptFn, log: LogFn): Promise<Listener> {
  const path = target.socketPath;
  await claimSocketPath(path);
  const server = createServer({ pauseOnConnect: true }, (s) => accept(s, 'unix', `unix:${path}`));
  await listening(server, log, (done) => server.listen({ path }, done));
  // Created with the process umask, then narrowed: owner and group may connect. To keep others
  // out even for that instant, put the socket in a directory they cannot enter (docs/nbd.md).
  chmodSync(path, target.mode ?? DEFAULT_SOCKET_MODE);
  const ours = lstatSync(path).ino;
  const close = async (): Promise<void> => {
    await closeServer(server);
    // libuv unlinks the path itself; this covers the rest, and never a newer socket of another process.
    if (lstatOrUndefined(path)?.ino === ours) {
      try { unlinkSync(path); } catch { /* gone meanwhile */ }
    }
  };
  return { address: { transport: 'unix', socketPath: path }, server, close };
}

async function listenFd(fd: number, accept: AcceptFn, log: LogFn): Promise<Listener> {
  if (!Number.isInteger(fd) || fd < 0) throw listenError('EBADF', `fd ${fd} is not a file descriptor number`);
  let stats: Stats;
  try {
    stats = fstatSync(fd);
  } catch (err) {
    throw listenError('EBADF', `fd ${fd} is not open (${(err as Error).message})`);
  }
  if (!stats.isSocket()) throw listenError('ENOTSOCK', `fd ${fd} is not a socket, so it cannot be a listening socket`);
  let label = `fd ${fd}`;
  let transport: Transport = 'tcp'; // settled below, before the first connection can be accepted
  const server = createServer({ noDelay: true, pauseOnConnect: true }, (s) => accept(s, transport, s.remoteAddress ?? label));
  try {
    await listening(server, log, (done) => server.listen({ fd }, done));
  } catch (err) {
    // A datagram socket or a connected one: Node or listen(2) refuses it.
    throw listenError('ENOTSOCK', `fd ${fd} is not a listening stream socket (${(err as Error).message})`);
  }
  const bound = server.address();
  // Node answers an address object for TCP only; a Unix socket's path comes from /proc.
  transport = bound !== null && typeof bound === 'object' ? 'tcp' : 'unix';
  let address: NbdBoundAddress;
  if (bound !== null && typeof bound === 'object') {
    address = { transport: 'tcp', host: bound.address, port: bound.port, fd };
  } else {
    const socketPath = boundUnixPath(fd);
    address = { transport: 'unix', fd, ...(socketPath !== undefined ? { socketPath } : {}) };
    if (socketPath !== undefined) label = `unix:${socketPath}`;
  }
  // The socket belongs to the supervisor (it may hand it to our next start): never unlinked here.
  return { address, server, close: () => closeServer(server) };
}

function closeServer(server: Server): Promise<void> {
  return new Promise((resolve) => server.close(() => resolve()));
}

/** Opens a listener for `target`; rejects with a coded error (EADDRINUSE, EEXIST, ENOTSOCK, ...). */
export function openListener(target: NbdListenTarget, accept: AcceptFn, log: LogFn): Promise<Listener> {
  if ('fd' in target) return listenFd(target.fd, accept, log);
  if ('socketPath' in target) return listenUnix(target, accept, log);
  return listenTcp(target, accept, log);
}
