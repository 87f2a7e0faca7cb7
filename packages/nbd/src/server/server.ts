// The listening side: accepts TCP connections, refuses those from outside the allowlist and
// those beyond the connection limit, and tracks the rest so that close() ends every connection
// and waits until no request is left at the backend. Limits are resolved once (limits.ts);
// hitting one is logged through a shared rate-limited log.

import { type Server, type Socket, createServer } from 'node:net';
import type { NbdExport, NbdExportProvider } from '../backend.js';
import { OPTION_DATA_MAX_BYTES } from '../constants.js';
import { createAllowList } from './allow.js';
import type { NbdCopyCounters } from './connection-config.js';
import { NbdConnection } from './connection.js';
import { type LogFn, LimitLog, type NbdLimits, resolveLimits } from './limits.js';
import { type NbdServerTlsOptions, prepareServerTls } from './tls.js';

export interface NbdServerOptions extends Partial<NbdLimits> {
  /**
   * Client networks allowed to connect, as CIDR blocks or single addresses, IPv4 or IPv6
   * ("127.0.0.0/8", "::1", "fd00::/8"). Others are closed at accept. Empty or absent: everyone.
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
  listen(host: string, port: number): Promise<{ host: string; port: number }>;
  close(): Promise<void>;
  readonly connectionCount: number;
  /** Counters over every connection so far, closed ones included. */
  stats(): NbdServerStats;
  /** 'none' without TLS material, else whether clients must upgrade before anything else. */
  readonly tls: 'none' | 'optional' | 'required';
  /** The limits in force (defaults filled in). */
  readonly limits: NbdLimits;
}

// Oversized writes up to this are read and dropped (EOVERFLOW); larger ones close the connection.
const WRITE_DISCARD_MAX_BYTES = 64 * 1024 * 1024;
const OPTIONS_MAX = 256;

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
  const allowed = createAllowList(options.allow ?? []);
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
  let listener: Server | undefined;

  const refuse = (socket: Socket): boolean => {
    const peer = socket.remoteAddress;
    if (closing) {
      log('info', `nbd: refusing connection from ${peer ?? '?'}: shutting down`);
    } else if (!allowed(peer)) {
      limitLog.note('allow', 'warn', `nbd: refusing connection from ${peer ?? '?'}: not in nbd.allow`);
    } else if (connections.size >= limits.maxConnections) {
      limitLog.note('max-connections', 'warn', `nbd: refusing connection from ${peer ?? '?'}: ${limits.maxConnections} connections open (nbd.maxConnections)`);
    } else {
      return false;
    }
    socket.on('error', () => {});
    socket.destroy(); // before the greeting: NBD has no way to say why, so the client sees a close
    return true;
  };

  const accept = (socket: Socket): void => {
    if (refuse(socket)) return;
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
      directRead: options.directRead !== false,
      ...(tls !== undefined ? { tls } : {}),
    });
    connections.add(connection);
    void connection.drained.then(() => connections.delete(connection));
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

    listen(host: string, port: number): Promise<{ host: string; port: number }> {
      if (listener !== undefined) return Promise.reject(new Error('NbdServer is already listening'));
      // Accepted paused so a plaintext connection can move to the zero-copy reader first.
      const server = createServer({ noDelay: true, pauseOnConnect: true }, accept);
      listener = server;
      return new Promise((resolve, reject) => {
        server.once('error', reject);
        server.listen(port, host, () => {
          server.off('error', reject);
          server.on('error', (err) => log('error', `nbd: listener error: ${err.message}`));
          const address = server.address();
          if (address === null || typeof address === 'string') return reject(new Error('unexpected listen address'));
          const allowText = (options.allow ?? []).length === 0 ? 'any' : (options.allow ?? []).join(' ');
          log('info', `nbd: listening on ${address.address}:${address.port} (tls: ${tlsMode === 'none' ? 'off' : tlsMode}, allow: ${allowText}, `
            + `maxConnections ${limits.maxConnections}, maxRequestBytes ${limits.maxRequestBytes}, inFlightMax ${limits.inFlightMax})`);
          resolve({ host: address.address, port: address.port });
        });
      });
    },

    async close(): Promise<void> {
      closing = true;
      const stopped = new Promise<void>((resolve) => (listener ? listener.close(() => resolve()) : resolve()));
      for (const connection of connections) connection.destroy();
      await Promise.all([stopped, ...[...connections].map((c) => c.drained)]);
      limitLog.close();
    },
  };
}
