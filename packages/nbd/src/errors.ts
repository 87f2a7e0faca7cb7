// Typed failures of the codecs. A codec never throws on bad input: it returns one of these.

export type NbdProtocolErrorCode =
  | 'bad-magic'
  | 'bad-client-flags'
  | 'option-too-large'
  | 'option-malformed'
  | 'bad-reply-magic'
  | 'reply-malformed';

export class NbdProtocolError extends Error {
  readonly code: NbdProtocolErrorCode;
  constructor(code: NbdProtocolErrorCode, message: string) {
    super(message);
    this.name = 'NbdProtocolError';
    this.code = code;
  }
}

/** Outcome of decoding from a byte prefix: a value, "need N more bytes", or a typed error. */
export type Decoded<T> =
  | { readonly kind: 'value'; readonly value: T; readonly consumedBytes: number }
  | { readonly kind: 'need'; readonly needBytes: number }
  | { readonly kind: 'error'; readonly error: NbdProtocolError };

export function need(needBytes: number): { kind: 'need'; needBytes: number } {
  return { kind: 'need', needBytes };
}

export function fail(code: NbdProtocolErrorCode, message: string): { kind: 'error'; error: NbdProtocolError } {
  return { kind: 'error', error: new NbdProtocolError(code, message) };
}
