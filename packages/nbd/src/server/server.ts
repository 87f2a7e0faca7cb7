// The listening side: accepts connections on TCP addresses, Unix sockets and inherited
// listening sockets (listener.ts), refuses TCP peers outside the allowlist and connections beyond
// the limit, and tracks the rest so that close() ends every connection and waits until no request
// is left at the backend. Limits are resolved once (limits.ts); hitting one is logged through a
// shared rate-limited log.

import type { Socket } from 'node:net';
import type { NbdExport, NbdExportProvider } from '../backend.js';
import { OPTION_DATA_MAX_BYTES } from '../constants.js';
import { createPeerFilter } from './allow.js';
import type { NbdCopyCounters } from './connection-config.js';
import { NbdConnection } from './connection.js';
import {
  type DetachedConnection, type HeldConnection, type NbdServerHandover, handoverOf, listenerFd, resumeFor, socketFromHandle, takeHandle,
} from './handover.js';
import { type LogFn, LimitLog, type NbdLimits, resolveLimits } from './limits.js';
import { type Listener, type NbdBoundAddress, type NbdListenTarget, type Transport, describeTarget, openListener } from './listener.js';
import { type NbdServerTlsOptions, prepareServerTls } from './tls.js';

export type { NbdBoundAddress, NbdListenTarget } from './listener.js';

export type { NbdServerHandover } from './handover.js';

export interface NbdServerOptions extends Partial<NbdLimits> {
  /**
   * Client networks allowed to connect over TCP, as CIDR blocks or single addresses, IPv4 or IPv6
   * ("127.0.0.0/8", "::1", "fd00::/8"). Others are closed at accept. Empty or absent: everyone.
   * Unix-socket connections have no address and are not filtered: the socket's file permissions are their guard.
   */
  allow?: readonly string[];
  /** Plaintext WRITE payloads read by the kernel straight into the backend's buffers (default true). */
  directRead?: boolean;
  /** Offer NBD_OPT_STARTTLS (see NbdServerTlsOptions.require for FORCEDTLS). Absent: no TLS. */
  tls?: NbdServerTlsOptions;
  log?: LogFn;
  /** Repeated hits of one limit are summed up in one line per this interval (default 10 s). */
  limitLogIntervalMs?: number;
}

/** Payload bytes the server copied in user space since it started (READ replies copy none). */
export type NbdServerStats = Readonly<NbdCopyCounters>;

export interface NbdServer {
  /** The fds of the listening sockets (a takeover passes them to the next process). */
  listenerFds(): { address: NbdBoundAddress; fd: number | undefined }[];
  /** Adds a TCP listener (port 0 picks a free port). */
  listen(host: string, port: number): Promise<{ host: string; port: number }>;
  /** Adds a listener of any kind: TCP, a Unix socket path, or an inherited listening fd. */
  listenOn(target: NbdListenTarget): Promise<NbdBoundAddress>;
  close(): Promise<void>;
  readonly connectionCount: number;
  /** Counters over every connection so far, closed ones included. */
  stats(): NbdServerStats;
  /**
   * Takeover: stop serving without dropping clients. Listeners stay open but hold what they
   * accept; every connection finishes its current request and replies and gives up its socket
   * (or closes: TLS, mid-handshake past the deadline). The server is then empty.
   */
  handOver(opts: { timeoutMs: number }): Promise<NbdServerHandover>;
  /** Resumes a connection another server handed over; false (and the socket closed) if it cannot go on here. */
  adopt(connection: DetachedConnection): boolean;
  /** Serves a connection another server accepted but never greeted. */
  adoptHeld(held: HeldConnection): void;
  /** 'none' without TLS material, else whether clients must upgrade before anything else. */
  readonly tls: 'none' | 'optional' | 'required';
  /** The limits in force (defaults filled in). */
  readonly limits: NbdLimits;
}

// Oversized writes up to this are read and dropped (EOVERFLOW); larger ones close the connection.
const WRITE_DISCARD_MAX_BYTES = 64 * 1024 * 1024;
const OPTIONS_MAX = 256;
const DRAIN_AFTER_HANDOVER_MS = 5_000;

/**
 * The export as this server offers it: its maximum block size lowered to the server's request
 * limit, so clients learn the limit in NBD_INFO_BLOCK_SIZE and checkRequest enforces it.
 */
function clampExport(exp: NbdExport, maxRequestBytes: number): NbdExport {
  const bs = exp.blockSize;
  if (bs.maximumBytes <= maxRequestBytes) return exp;
  // The maximum must stay a multiple of the minimum (proto.md); both are powers of two here.
  const maximumBytes = Math.max(bs.minimumBytes, maxRequestBytes);
  const blockSize = { minimumBytes: bs.minimumBytes, preferredBytes: Math.min(bs.preferredBytes, maximumBytes), maximumBytes };
  // Everything else (getters such as sizeBytes, the methods) is the backend's own, by prototype.
  return Object.create(exp, { blockSize: { value: blockSize, enumerable: true } }) as NbdExport;
}

export function createNbdServer(provider: NbdExportProvider, options: NbdServerOptions = {}): NbdServer {
  const limits = resolveLimits(options);
  const allowed = createPeerFilter(options.allow ?? []);
  const log: LogFn = options.log ?? (() => {});
  const limitLog = new LimitLog(log, options.limitLogIntervalMs);
  const clamped: NbdExportProvider = {
    list: () => provider.list(),
    open: (name) => {
      const exp = provider.open(name);
      return exp === undefined ? undefined : clampExport(exp, limits.maxRequestBytes);
    },
  };
  // Built once: a bad certificate or key fails here, at start-up, not on the first client.
  const tls = options.tls === undefined ? undefined : prepareServerTls(options.tls);
  const tlsMode = tls?.mode ?? 'none';

  const connections = new Set<NbdConnection>();
  const copies: NbdCopyCounters = { payloadCopies: 0, payloadBytesCopied: 0 };
  let nextId = 1;
  let closing = false;
  const listeners = new Set<Listener>();
  // During a handover, accepted sockets wait here (paused, no greeting) for the next server.
  let held: HeldConnection[] | undefined;

  const newConnection = (socket: Socket, transport: Transport, peer: string,
    resume?: ConstructorParameters<typeof NbdConnection>[2]): NbdConnection => {
    const connection = new NbdConnection(socket, {
      id: nextId++,
      handshake: { provider: clamped, optionDataMaxBytes: OPTION_DATA_MAX_BYTES, optionsMax: OPTIONS_MAX, tls: tlsMode },
      handshakeTimeoutMs: limits.handshakeTimeoutMs,
      inFlightMax: limits.inFlightMax,
      payloadTimeoutMs: limits.payloadTimeoutMs,
      writeDiscardMaxBytes: WRITE_DISCARD_MAX_BYTES,
      log,
      limitLog,
      copies,
      // Unix-socket handles take the in-place reader as TCP ones do (test/nbd-unix.test.ts counts the copies).
      directRead: options.directRead !== false,
      ...(tls !== undefined ? { tls } : {}),
    }, resume, { transport, peer });
    connections.add(connection);
    void connection.drained.then(() => connections.delete(connection));
    return connection;
  };

  const refuse = (socket: Socket, transport: Transport, peer: string): boolean => {
    if (closing) {
      log('info', `nbd: refusing connection from ${peer}: shutting down`);
    } else if (!allowed(transport, socket.remoteAddress)) {
      limitLog.note('allow', 'warn', `nbd: refusing connection from ${peer}: not in nbd.allow`);
    } else if (connections.size >= limits.maxConnections) {
      limitLog.note('max-connections', 'warn', `nbd: refusing connection from ${peer}: ${limits.maxConnections} connections open (nbd.maxConnections)`);
    } else {
      return false;
    }
    socket.on('error', () => {});
    socket.destroy(); // before the greeting: NBD has no way to say why, so the client sees a close
    return true;
  };

  const accept = (socket: Socket, transport: Transport, peer: string): void => {
    if (held !== undefined) {
      // Handing over (also once close() ran: the listeners belong to the handover): the next
      // server greets it. Bounded like served connections.
      const handle = held.length < limits.maxConnections && allowed(transport, socket.remoteAddress) ? takeHandle(socket) : null;
      if (handle === null) log('warn', `nbd: refusing connection from ${peer}: restarting, and ${held.length} connections wait already`);
      else held.push({ handle, transport, peer });
      socket.on('error', () => {});
      socket.destroy(); // without its handle this closes nothing
      return;
    }
    if (refuse(socket, transport, peer)) return;
    newConnection(socket, transport, peer);
  };

  const adopt = (moved: DetachedConnection): boolean => {
    const { state } = moved;
    const socket = socketFromHandle(moved.handle);
    const resume = resumeFor(closing ? undefined : clamped.open(state.exportName), state);
    if ('problem' in resume) {
      log('warn', `nbd: closing a connection from ${state.peer} handed over by the previous process: ${resume.problem}`);
      socket.on('error', () => {});
      socket.destroy();
      return false;
    }
    newConnection(socket, state.transport, state.peer, resume);
    return true;
  };

  const handOver = async (opts: { timeoutMs: number }): Promise<NbdServerHandover> => {
    if (closing || held !== undefined) throw new Error('NbdServer is closed or already handing over');
    const heldNow: HeldConnection[] = [];
    held = heldNow;
    const mine = [...listeners];
    listeners.clear(); // close() no longer closes them: they belong to the handover now
    const deadlineMs = Date.now() + opts.timeoutMs;
    const results = await Promise.all([...connections].map((c) => c.handOver(deadlineMs)));
    // The ones that closed instead, once their backend work settled (bounded: a stuck backend must not stop the takeover).
    await Promise.race([Promise.all([...connections].map((c) => c.drained)), new Promise((resolve) => setTimeout(resolve, DRAIN_AFTER_HANDOVER_MS).unref())]);
    const moved = results.filter((r): r is DetachedConnection => r !== null);
    log('info', `nbd: handing over ${moved.length} connection(s); ${results.length - moved.length} closed`);
    return handoverOf(mine, moved, heldNow);
  };

  const listenOn = async (target: NbdListenTarget): Promise<NbdBoundAddress> => {
    if (closing) throw new Error('NbdServer is closed');
    const listener = await openListener(target, accept, log);
    if (closing) { // closed while the listener was being opened
      await listener.close();
      throw new Error('NbdServer is closed');
    }
    listeners.add(listener);
    const allowText = listener.address.transport === 'unix' ? 'not applied (Unix socket: file permissions)'
      : (options.allow ?? []).length === 0 ? 'any' : (options.allow ?? []).join(' ');
    log('info', `nbd: listening on ${describeTarget(listener.address)} (tls: ${tlsMode === 'none' ? 'off' : tlsMode}, allow: ${allowText}, `
      + `maxConnections ${limits.maxConnections}, maxRequestBytes ${limits.maxRequestBytes}, inFlightMax ${limits.inFlightMax})`);
    return listener.address;
  };

  return {
    get connectionCount(): number {
      return connections.size;
    },

    tls: tlsMode,
    limits,

    stats(): NbdServerStats {
      return { ...copies };
    },

    async listen(host: string, port: number): Promise<{ host: string; port: number }> {
      const bound = await listenOn({ host, port });
      if (bound.transport !== 'tcp') throw new Error('unexpected listen address');
      return { host: bound.host, port: bound.port };
    },

    listenOn,
    handOver,
    listenerFds: () => [...listeners].map((l) => ({ address: l.address, fd: listenerFd(l.server) })),
    adopt,

    adoptHeld(h: HeldConnection): void {
      accept(socketFromHandle(h.handle), h.transport, h.peer);
    },

    async close(): Promise<void> {
      closing = true;
      const stopped = [...listeners].map((l) => l.close());
      listeners.clear();
      for (const connection of connections) connection.destroy();
      await Promise.all([...stopped, ...[...connections].map((c) => c.drained)]);
      limitLog.close();
    },
  };
}
