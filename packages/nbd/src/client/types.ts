// The client's public shapes. Other packages (the engine) code against exactly these.

export interface NbdClientTlsOptions {
  /** PEM text or bytes of the CA(s) that sign the server's certificate; absent = the system CAs. */
  readonly ca?: string | Buffer;
  /** Client certificate and key (PEM), for servers that verify peers. */
  readonly cert?: string | Buffer;
  readonly key?: string | Buffer;
  /** Name to verify the server's certificate against (default: the host, or 'localhost' over a unix socket). */
  readonly servername?: string;
}

export interface NbdClientOptions {
  /** Transport: exactly one of host (with optional port) or socketPath. */
  readonly host?: string;
  /** Default 10809. */
  readonly port?: number;
  /** nbd+unix: a unix domain socket. */
  readonly socketPath?: string;
  /** '' selects the server's default export. */
  readonly exportName: string;
  /** Present = nbds: NBD_OPT_STARTTLS first, then TLS with certificate verification. */
  readonly tls?: NbdClientTlsOptions;
  /** Deadline of every request, and of connecting plus the handshake. */
  readonly timeoutMs: number;
  /** Connections wanted (default 1); more than one only when the server advertises CAN_MULTI_CONN. */
  readonly connections?: number;
  /**
   * Meta contexts to select (NBD_OPT_SET_META_CONTEXT) on every connection, e.g. 'base:allocation'.
   * The server may select fewer, or none; NbdClient.metaContexts says which it did.
   */
  readonly metaContexts?: readonly string[];
  /** Negotiate extended headers (64-bit lengths) when the server offers them; default true. */
  readonly extendedHeaders?: boolean;
  /**
   * Poll the export's size this often (ms) on a short side connection (refreshSize), so a grow
   * made elsewhere is seen without reconnecting; absent = never. NBD has no server-to-client
   * notification, so polling is the only protocol-compliant way.
   */
  readonly watchSizeMs?: number;
  /** One-line events (connection lost, reconnected); never secrets. */
  readonly log?: (line: string) => void;
}

export interface BlockDeviceInfo {
  readonly sizeBytes: number;
  /** Minimum block size from NBD_INFO_BLOCK_SIZE (1 if none): offsets and lengths must be multiples. */
  readonly blockSizeBytes: number;
  /** Largest payload of one request: the server's maximum block size (capped at 32 MiB), else 32 MiB. */
  readonly maxRequestBytes: number;
  readonly readOnly: boolean;
  readonly canFlush: boolean;
  readonly canFua: boolean;
  readonly canTrim: boolean;
  readonly canWriteZeroes: boolean;
  readonly canMultiConn: boolean;
  /** NBD_FLAG_SEND_RESIZE: the server takes NBD_CMD_RESIZE (NbdClient.resize). */
  readonly canResize?: boolean;
}

export interface NbdExportListing {
  name: string;
  description?: string;
}
