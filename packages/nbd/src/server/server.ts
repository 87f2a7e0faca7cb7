// The listening side: accepts TCP connections, bounds their number, and tracks them so that
// close() ends every connection and waits until no request is left at the backend.

import { type Server, type Socket, createServer } from 'node:net';
import type { NbdExportProvider } from '../backend.js';
import { OPTION_DATA_MAX_BYTES } from '../constants.js';
import { type LogFn, type NbdCopyCounters, NbdConnection } from './connection.js';
import { type NbdServerTlsOptions, prepareServerTls } from './tls.js';

export interface NbdServerOptions {
  /** Connections beyond this are closed on accept. Default 64. */
  maxConnections?: number;
  /** A client that has not finished option haggling by then is dropped. Default 10 s. */
  handshakeTimeoutMs?: number;
  /** Requests in flight per connection; the socket is not read while at the cap. Default 64. */
  inFlightMax?: number;
  /** Plaintext WRITE payloads read by the kernel straight into the backend's buffers (default true). */
  directRead?: boolean;
  /** Offer NBD_OPT_STARTTLS (see NbdServerTlsOptions.require for FORCEDTLS). Absent: no TLS. */
  tls?: NbdServerTlsOptions;
  log?: LogFn;
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
}

const WRITE_DISCARD_MAX_BYTES = 64 * 1024 * 1024;
const OPTIONS_MAX = 256;

export function createNbdServer(provider: NbdExportProvider, options: NbdServerOptions = {}): NbdServer {
  const maxConnections = options.maxConnections ?? 64;
  const handshakeTimeoutMs = options.handshakeTimeoutMs ?? 10_000;
  const inFlightMax = options.inFlightMax ?? 64;
  const log: LogFn = options.log ?? (() => {});
  if (!(maxConnections > 0 && handshakeTimeoutMs > 0 && inFlightMax > 0)) throw new RangeError('NbdServerOptions must be positive');
  // Built once: a bad certificate or key fails here, at start-up, not on the first client.
  const tls = options.tls === undefined ? undefined : prepareServerTls(options.tls);
  const tlsMode = tls?.mode ?? 'none';

  const connections = new Set<NbdConnection>();
  const copies: NbdCopyCounters = { payloadCopies: 0, payloadBytesCopied: 0 };
  let nextId = 1;
  let closing = false;
  let listener: Server | undefined;

  const accept = (socket: Socket): void => {
    if (closing || connections.size >= maxConnections) {
      log('warn', `nbd: refusing connection from ${socket.remoteAddress ?? '?'}: ${closing ? 'shutting down' : `${maxConnections} connections open`}`);
      socket.on('error', () => {});
      socket.destroy();
      return;
    }
    const connection = new NbdConnection(socket, {
      id: nextId++,
      handshake: { provider, optionDataMaxBytes: OPTION_DATA_MAX_BYTES, optionsMax: OPTIONS_MAX, tls: tlsMode },
      handshakeTimeoutMs,
      inFlightMax,
      writeDiscardMaxBytes: WRITE_DISCARD_MAX_BYTES,
      log,
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
          log('info', `nbd: listening on ${address.address}:${address.port} (tls: ${tlsMode === 'none' ? 'off' : tlsMode})`);
          resolve({ host: address.address, port: address.port });
        });
      });
    },

    async close(): Promise<void> {
      closing = true;
      const stopped = new Promise<void>((resolve) => (listener ? listener.close(() => resolve()) : resolve()));
      for (const connection of connections) connection.destroy();
      await Promise.all([stopped, ...[...connections].map((c) => c.drained)]);
    },
  };
}
