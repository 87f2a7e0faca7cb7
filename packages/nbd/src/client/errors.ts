// The client's one error type, and the mappings into it: socket errors, TLS failures, option
// replies and wire errno values. Messages are one line — what went wrong and where — and never
// hold key material (only names of the peer, the export, and Node's/the server's reason text).

import { Rep } from '../constants.js';
import { errnoName } from '../codec/client-replies.js';
import { optionErrorName } from '../codec/client-handshake.js';

export type RemoteErrorCode =
  | 'ETIMEDOUT' | 'ECONNREFUSED' | 'ECONNRESET' | 'EPROTO' | 'ETLS' | 'EAUTH' | 'ENOENT'
  | 'EIO' | 'EPERM' | 'ENOSPC' | 'EINVAL' | 'ENOTSUP' | 'ESHUTDOWN' | 'EOVERFLOW' | 'ENOMEM';

export class RemoteError extends Error {
  readonly code: RemoteErrorCode;
  constructor(code: RemoteErrorCode, message: string) {
    super(message);
    this.name = 'RemoteError';
    this.code = code;
  }
}

/** `what (where)`: the shape of every client message. */
export function remoteError(code: RemoteErrorCode, what: string, where: string): RemoteError {
  return new RemoteError(code, `${what} (${where})`);
}

/** A request's failure from the server's errno. */
export function errnoError(errno: number, what: string, where: string, serverMessage = ''): RemoteError {
  const code = errnoName(errno);
  const detail = serverMessage === '' ? code : `${code}: ${serverMessage}`;
  return remoteError(code, `${what} failed on the server (${detail})`, where);
}

// Node's certificate verification failures: the server's certificate is not trusted.
const SERVER_CERT_CODES = new Set([
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE', 'SELF_SIGNED_CERT_IN_CHAIN', 'DEPTH_ZERO_SELF_SIGNED_CERT', 'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY', 'CERT_HAS_EXPIRED', 'CERT_NOT_YET_VALID', 'CERT_SIGNATURE_FAILURE', 'CERT_REVOKED',
  'ERR_TLS_CERT_ALTNAME_INVALID', 'CERT_UNTRUSTED', 'CERT_REJECTED', 'INVALID_CA',
]);

/** Alerts a server sends when it does not accept (or did not get) our client certificate. */
function isClientCertAlert(code: string): boolean {
  return /ALERT_(CERTIFICATE_REQUIRED|BAD_CERTIFICATE|UNKNOWN_CA|CERTIFICATE_UNKNOWN|ACCESS_DENIED|UNSUPPORTED_CERTIFICATE|DECRYPT_ERROR)/.test(code);
}

/** Maps a socket or TLS error (Node's `code`) to a RemoteError. */
export function socketError(err: unknown, phase: string, where: string): RemoteError {
  if (err instanceof RemoteError) return err;
  const e = err as NodeJS.ErrnoException | undefined;
  const code = typeof e?.code === 'string' ? e.code : '';
  const reason = e instanceof Error ? e.message.split('\n')[0] ?? '' : String(err);
  if (SERVER_CERT_CODES.has(code)) return remoteError('ETLS', `TLS: the server's certificate is not trusted: ${reason}`, where);
  if (isClientCertAlert(code)) return remoteError('EAUTH', `TLS: the server refused the client certificate (${reason})`, where);
  if (code.startsWith('ERR_SSL') || code.startsWith('ERR_TLS') || code.startsWith('ERR_OSSL')) {
    return remoteError('ETLS', `TLS failed ${phase}: ${reason}`, where);
  }
  switch (code) {
    case 'ECONNREFUSED':
    case 'ENOENT': // a unix socket path nobody listens on
    case 'EHOSTUNREACH':
    case 'ENETUNREACH':
    case 'EADDRNOTAVAIL':
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return remoteError('ECONNREFUSED', `cannot connect: ${reason}`, where);
    case 'ETIMEDOUT':
      return remoteError('ETIMEDOUT', `timed out ${phase}`, where);
    default:
      return remoteError('ECONNRESET', `connection lost ${phase}: ${reason || code || 'closed'}`, where);
  }
}

/** Maps an option error reply during haggling to a RemoteError. */
export function optionError(replyType: number, serverMessage: string, what: string, where: string): RemoteError {
  const said = serverMessage === '' ? optionErrorName(replyType) : `${optionErrorName(replyType)}: ${serverMessage}`;
  switch (replyType) {
    case Rep.ERR_TLS_REQD:
      return remoteError('ETLS', `the server requires TLS (use nbds://) [${said}]`, where);
    case Rep.ERR_UNKNOWN:
      return remoteError('ENOENT', `${what} not found [${said}]`, where);
    case Rep.ERR_POLICY:
      return remoteError('EPERM', `${what}: refused by server policy [${said}]`, where);
    case Rep.ERR_SHUTDOWN:
      return remoteError('ESHUTDOWN', `${what}: the server is shutting down [${said}]`, where);
    case Rep.ERR_UNSUP:
    case Rep.ERR_PLATFORM:
      return remoteError('ENOTSUP', `${what}: not supported by the server [${said}]`, where);
    case Rep.ERR_TOO_BIG:
      return remoteError('EOVERFLOW', `${what}: too big for the server [${said}]`, where);
    default:
      return remoteError('EPROTO', `${what}: the server answered ${said}`, where);
  }
}
