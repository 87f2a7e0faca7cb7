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
