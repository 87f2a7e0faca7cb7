// The contract between the NBD server (this package) and whatever serves the bytes.
// The engine implements it over volumes; tests implement it over memory. This package never
// imports the engine: dependencies point one way.

/** NBD errno values a backend may raise; the server maps them to the protocol's numbers. */
export type NbdErrno = 'EPERM' | 'EIO' | 'ENOMEM' | 'EINVAL' | 'ENOSPC' | 'EOVERFLOW' | 'ENOTSUP' | 'ESHUTDOWN';

/** Raised by a backend to fail one request with a given NBD error; the connection stays up. */
export class NbdError extends Error {
  readonly errno: NbdErrno;
  constructor(errno: NbdErrno, message: string) {
    super(message);
    this.name = 'NbdError';
    this.errno = errno;
  }
}

/** Bytes produced by a read. `chunks` are views (often over a shared slab); call release() once written. */
export interface NbdReadResult {
  readonly chunks: readonly Uint8Array[];
  release(): void;
}

/** Space for a write's payload; the server fills `chunks` in order from the socket, then passes it to write(). */
export interface NbdWriteBuffer {
  readonly chunks: readonly Uint8Array[];
  /** Gives the space back without writing (e.g. the client vanished mid-payload). */
  release(): void;
}

export interface NbdBlockSize {
  readonly minimumBytes: number;
  readonly preferredBytes: number;
  readonly maximumBytes: number;
}

/** One extent of a block status reply: `lengthBytes` > 0, `flags` as the context defines them. */
export interface NbdExtent {
  readonly lengthBytes: number;
  readonly flags: number;
}

/**
 * The meta contexts an export offers for NBD_CMD_BLOCK_STATUS (e.g. "base:allocation",
 * "qemu:dirty-bitmap:NAME"). The server matches the client's queries against names() and
 * assigns context ids; the backend only answers status questions.
 */
export interface NbdMetaContexts {
  /** Full names of every context offered now. */
  names(): readonly string[];
  /**
   * Status of [offset, offset + length) in one offered context: extents in order starting at
   * `offsetBytes`, each nonzero, at least one and at most `extentsMax`, together covering no more
   * than `lengthBytes` (they may cover less; the client asks again for the rest).
   * Rejects with NbdError (e.g. EINVAL for a context that went away, EIO when the status cannot be
   * read) — never with a guess that would make a client skip data.
   */
  blockStatus(context: string, offsetBytes: number, lengthBytes: number, extentsMax: number): Promise<readonly NbdExtent[]>;
}

/** One export, as seen by one connection. All offsets/lengths are already range-checked by the server. */
export interface NbdExport {
  readonly name: string;
  readonly description?: string;
  readonly sizeBytes: number;
  readonly readOnly: boolean;
  readonly canFlush: boolean;
  readonly canFua: boolean;
  readonly canTrim: boolean;
  readonly canWriteZeroes: boolean;
  readonly canCache: boolean;
  /** Only true when every connection sees every other connection's completed writes (and flush covers all). */
  readonly canMultiConn: boolean;
  readonly blockSize: NbdBlockSize;
  read(offsetBytes: number, lengthBytes: number): Promise<NbdReadResult>;
  /** May wait (back-pressure) until buffer space is free; never drops the request. */
  acquireWriteBuffer(lengthBytes: number): Promise<NbdWriteBuffer>;
  /** Writes and releases `buffer`, also on failure. */
  write(offsetBytes: number, buffer: NbdWriteBuffer, flags: { fua: boolean }): Promise<void>;
  flush(): Promise<void>;
  trim(offsetBytes: number, lengthBytes: number, flags: { fua: boolean }): Promise<void>;
  writeZeroes(offsetBytes: number, lengthBytes: number, flags: { fua: boolean; noHole: boolean }): Promise<void>;
  cache(offsetBytes: number, lengthBytes: number): Promise<void>;
  /** Block status contexts; absent = none (BLOCK_STATUS is then refused). */
  readonly metaContexts?: NbdMetaContexts;
  /**
   * NBD_CMD_RESIZE (the experimental RESIZE extension): make the export `sizeBytes` large; once
   * it resolves, sizeBytes says so and requests up to the new end are served. Rejects with
   * NbdError (ENOSPC: no room, EINVAL: refused). Absent = NBD_FLAG_SEND_RESIZE not advertised.
   */
  resize?(sizeBytes: number): Promise<void>;
}

export interface NbdExportInfo {
  readonly name: string;
  readonly description?: string;
}

/** What the server exports. The empty name selects the default (boot) export. */
export interface NbdExportProvider {
  list(): readonly NbdExportInfo[];
  open(name: string): NbdExport | undefined;
}
