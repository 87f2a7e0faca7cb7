// Protocol numbers from NetworkBlockDevice/nbd doc/proto.md. Names follow the spec with the
// NBD_ prefix dropped; values that do not fit a JS bitwise int (2^31 and up) stay plain numbers.

export const NBDMAGIC = 0x4e42444d41474943n;
export const IHAVEOPT = 0x49484156454f5054n;
export const OPTION_REPLY_MAGIC = 0x3e889045565a9n;
export const REQUEST_MAGIC = 0x25609513;
export const SIMPLE_REPLY_MAGIC = 0x67446698;
export const STRUCTURED_REPLY_MAGIC = 0x668e33ef;
/** Extended headers (NBD_OPT_EXTENDED_HEADERS): 32-byte requests and reply headers with 64-bit lengths. */
export const EXTENDED_REQUEST_MAGIC = 0x21e41c71;
export const EXTENDED_REPLY_MAGIC = 0x6e8a278c;

/** Handshake flags (server → client, 16 bits). */
export const HandshakeFlag = { FIXED_NEWSTYLE: 1, NO_ZEROES: 2 } as const;
/** Client flags (client → server, 32 bits). */
export const ClientFlag = { FIXED_NEWSTYLE: 1, NO_ZEROES: 2 } as const;

export const Opt = {
  EXPORT_NAME: 1,
  ABORT: 2,
  LIST: 3,
  STARTTLS: 5,
  INFO: 6,
  GO: 7,
  STRUCTURED_REPLY: 8,
  LIST_META_CONTEXT: 9,
  SET_META_CONTEXT: 10,
  EXTENDED_HEADERS: 11,
} as const;

const ERR = 0x80000000;
export const Rep = {
  ACK: 1,
  SERVER: 2,
  INFO: 3,
  META_CONTEXT: 4,
  ERR_UNSUP: ERR + 1,
  ERR_POLICY: ERR + 2,
  ERR_INVALID: ERR + 3,
  ERR_PLATFORM: ERR + 4,
  ERR_TLS_REQD: ERR + 5,
  ERR_UNKNOWN: ERR + 6,
  ERR_SHUTDOWN: ERR + 7,
  ERR_BLOCK_SIZE_REQD: ERR + 8,
  ERR_TOO_BIG: ERR + 9,
  ERR_EXT_HEADER_REQD: ERR + 10,
} as const;

export const Info = { EXPORT: 0, NAME: 1, DESCRIPTION: 2, BLOCK_SIZE: 3 } as const;

export const TransmissionFlag = {
  HAS_FLAGS: 1 << 0,
  READ_ONLY: 1 << 1,
  SEND_FLUSH: 1 << 2,
  SEND_FUA: 1 << 3,
  ROTATIONAL: 1 << 4,
  SEND_TRIM: 1 << 5,
  SEND_WRITE_ZEROES: 1 << 6,
  SEND_DF: 1 << 7,
  CAN_MULTI_CONN: 1 << 8,
  SEND_RESIZE: 1 << 9,
  SEND_CACHE: 1 << 10,
  SEND_FAST_ZERO: 1 << 11,
  BLOCK_STAT_PAYLOAD: 1 << 12,
} as const;

export const Cmd = {
  READ: 0,
  WRITE: 1,
  DISC: 2,
  FLUSH: 3,
  TRIM: 4,
  CACHE: 5,
  WRITE_ZEROES: 6,
  BLOCK_STATUS: 7,
  /** Experimental RESIZE extension: the new size in the offset field, length 0 (docs/nbd.md). */
  RESIZE: 8,
} as const;

export const CmdFlag = { FUA: 1, NO_HOLE: 2, DF: 4, REQ_ONE: 8, FAST_ZERO: 16, PAYLOAD_LEN: 32 } as const;

export const ReplyType = {
  NONE: 0, OFFSET_DATA: 1, OFFSET_HOLE: 2, BLOCK_STATUS: 5, BLOCK_STATUS_EXT: 6, ERROR: 0x8001, ERROR_OFFSET: 0x8002,
} as const;

/** Meta contexts (NBD_OPT_SET_META_CONTEXT) this code knows by name. */
export const MetaContext = {
  BASE_ALLOCATION: 'base:allocation',
  /** qemu's namespace for persistent dirty bitmaps: `qemu:dirty-bitmap:NAME`. */
  DIRTY_BITMAP_PREFIX: 'qemu:dirty-bitmap:',
} as const;
/** base:allocation status flags: HOLE = not allocated, ZERO = reads as zeroes. */
export const AllocationFlag = { HOLE: 1, ZERO: 2 } as const;
/** qemu:dirty-bitmap:* status flag: written since the bitmap (checkpoint) started. */
export const DirtyFlag = { DIRTY: 1 } as const;
export const ReplyFlag = { DONE: 1 } as const;

/** Wire errno values. */
export const Errno = {
  EPERM: 1,
  EIO: 5,
  ENOMEM: 12,
  EINVAL: 22,
  ENOSPC: 28,
  EOVERFLOW: 75,
  ENOTSUP: 95,
  ESHUTDOWN: 108,
} as const;
export type ErrnoName = keyof typeof Errno;

/** Fixed sizes on the wire, in bytes. */
export const Size = {
  GREETING: 18,
  CLIENT_FLAGS: 4,
  OPTION_HEADER: 16,
  OPTION_REPLY_HEADER: 20,
  EXPORT_NAME_REPLY: 10,
  EXPORT_NAME_ZEROES: 124,
  REQUEST: 28,
  SIMPLE_REPLY: 16,
  STRUCTURED_HEADER: 20,
  EXTENDED_REQUEST: 32,
  EXTENDED_REPLY_HEADER: 32,
} as const;

/** Spec: strings (names, messages) MUST be no longer than 4096 bytes. */
export const STRING_MAX_BYTES = 4096;
/** Option payloads larger than this are refused; the largest legal one is far smaller. */
export const OPTION_DATA_MAX_BYTES = 64 * 1024;

// ---- client side ----------------------------------------------------------------------------

/** Second magic of oldstyle negotiation ("cliserv"): the client recognises it only to refuse it. */
export const CLISERV_MAGIC = 0x00420281861253n;
/** IANA port for NBD. */
export const NBD_DEFAULT_PORT = 10809;
/** Structured reply types with bit 15 set are errors, also types this code does not know. */
export const REPLY_TYPE_ERROR_BIT = 0x8000;
/** Spec: a server with no block size constraints accepts payloads up to 32 MiB. */
export const DEFAULT_MAX_PAYLOAD_BYTES = 32 * 1024 * 1024;
