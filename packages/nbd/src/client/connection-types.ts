// The shapes a ClientConnection works with: one request (Part) as its owner hands it over, the
// events it reports back, and its configuration from the handshake.

import type { NbdExtent } from '../backend.js';
import type { RemoteError } from './errors.js';

/** A BLOCK_STATUS request's context, and where its (checked, clamped) extents go. */
export interface StatusWanted {
  readonly context: string;
  deliver(extents: NbdExtent[]): void;
}

/** One NBD request. The owner creates it; a connection carries it until its reply or its death. */
export interface Part {
  readonly type: number;
  readonly flags: number;
  readonly offsetBytes: number;
  readonly lengthBytes: number;
  /** WRITE: the bytes to send (a view; it stays valid until the part is done). */
  readonly payload: Uint8Array | undefined;
  /** READ: where the data goes (exactly lengthBytes long). */
  readonly target: Uint8Array | undefined;
  /** The caller has gone (deadline, close): read its reply but write nothing into its buffer. */
  readonly abandoned: boolean;
  readonly what: string;
  /** BLOCK_STATUS: the context whose extents the caller wants. */
  readonly status?: StatusWanted | undefined;
}

export interface ConnectionEvents<P extends Part> {
  /** The part's reply arrived; `err` is its failure. Called synchronously from the socket's data handler. */
  onReply(part: P, err: RemoteError | undefined): void;
  /** One batch of socket data was handled; slots may have come free. */
  onProgress(): void;
  /** The connection is gone; `parts` were in flight on it (abandoned ones included). */
  onDown(err: RemoteError, parts: P[]): void;
}

export interface ConnectionConfig {
  readonly id: number;
  readonly where: string;
  readonly structuredReplies: boolean;
  /** 32-byte requests and reply headers (NBD_OPT_EXTENDED_HEADERS agreed). */
  readonly extendedHeaders?: boolean;
  /** Meta contexts selected on this connection: name → context id. */
  readonly metaContexts?: ReadonlyMap<string, number>;
  /** The export's size: block status extents past it are refused. */
  readonly exportSizeBytes?: number;
  readonly maxRequestBytes: number;
  readonly inFlightMax: number;
}
