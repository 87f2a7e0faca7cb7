// Two kinds of failure: IscsiProtocolError for bytes that break the protocol (thrown by the pure
// codecs, so a fuzzer can tell "rejected cleanly" from "crashed"), and RemoteError for what the
// block-device API reports to its callers: one line, errno-like code, never a secret.

export type IscsiProtocolErrorCode =
  | 'short-buffer'
  | 'unknown-opcode'
  | 'segment-too-large'
  | 'header-digest'
  | 'data-digest'
  | 'bad-text'
  | 'text-too-large'
  | 'bad-field'
  | 'reassembler-failed';

export class IscsiProtocolError extends Error {
  readonly code: IscsiProtocolErrorCode;
  constructor(code: IscsiProtocolErrorCode, message: string) {
    super(message);
    this.name = 'IscsiProtocolError';
    this.code = code;
  }
}

export type RemoteErrorCode =
  | 'ETIMEDOUT'
  | 'ECONNREFUSED'
  | 'ECONNRESET'
  | 'EPROTO'
  | 'ETLS'
  | 'EAUTH'
  | 'ENOENT'
  | 'EIO'
  | 'EPERM'
  | 'ENOSPC'
  | 'EINVAL'
  | 'ENOTSUP'
  | 'ESHUTDOWN'
  | 'EOVERFLOW'
  | 'ENOMEM';

export class RemoteError extends Error {
  readonly code: RemoteErrorCode;
  constructor(code: RemoteErrorCode, message: string) {
    super(message);
    this.name = 'RemoteError';
    this.code = code;
  }
}

/** Maps a socket-level error (connect, reset) onto a RemoteErrorCode. */
export function socketErrorCode(err: unknown): RemoteErrorCode {
  const code = (err as NodeJS.ErrnoException | null)?.code;
  switch (code) {
    case 'ECONNREFUSED': return 'ECONNREFUSED';
    case 'ETIMEDOUT': return 'ETIMEDOUT';
    case 'ENOTFOUND':
    case 'EAI_AGAIN': return 'ENOENT';
    case 'ECONNRESET':
    case 'EPIPE':
    case 'ECONNABORTED':
    case 'EHOSTUNREACH':
    case 'ENETUNREACH': return 'ECONNRESET';
    default: return 'ECONNRESET';
  }
}
