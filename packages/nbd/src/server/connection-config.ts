// What a server hands each of its connections: the limits in force, the shared log and
// rate-limited limit log, TLS material, and the counters the connections add to.

import type { HandshakeConfig } from './handshake.js';
import type { LimitLog, LogFn } from './limits.js';
import type { ServerTls } from './tls.js';

/** User-space copies of request payload bytes, shared by a server's connections (NbdServer.stats()). */
export interface NbdCopyCounters {
  /** WRITE payloads copied from the socket's buffers into the backend's write buffer: one per request that needed it. */
  payloadCopies: number;
  payloadBytesCopied: number;
}

export interface ConnectionConfig {
  readonly id: number;
  readonly handshake: HandshakeConfig;
  readonly handshakeTimeoutMs: number;
  readonly inFlightMax: number;
  /** A WRITE payload must arrive within this of its buffer being ready (pending-write.ts). */
  readonly payloadTimeoutMs: number;
  /** Oversized writes up to this are read and dropped (EOVERFLOW); beyond it the connection closes. */
  readonly writeDiscardMaxBytes: number;
  readonly log: LogFn;
  /** Shared by the server's connections: one line per limit per interval. */
  readonly limitLog: LimitLog;
  /** Present when STARTTLS is offered (handshake.tls is not 'none'). */
  readonly tls?: ServerTls;
  /** Where payload copies are counted (READ replies go out as the backend's views: no copy to count). */
  readonly copies?: NbdCopyCounters;
  /** Accepted paused; may move to the zero-copy reader (direct-read.ts). Plaintext only. */
  readonly directRead?: boolean;
}
