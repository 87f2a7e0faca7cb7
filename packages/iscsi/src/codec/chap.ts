// CHAP with MD5 (RFC 1994; iSCSI binding in RFC 7143 section 12.1.3): response =
// MD5(identifier || secret || challenge). Binary values travel as "0x" hex or "0b" base64.

import { createHash, randomBytes } from 'node:crypto';
import { IscsiProtocolError } from '../errors.js';

export const CHAP_MD5 = 5;
export const CHAP_CHALLENGE_BYTES = 16;
/** A target's challenge larger than this is refused (RFC 7143 caps binary values at 1024 bytes). */
export const CHAP_CHALLENGE_BYTES_MAX = 1024;

const enc = new TextEncoder();

export function chapResponse(identifier: number, secret: string | Uint8Array, challenge: Uint8Array): Uint8Array {
  if (!Number.isInteger(identifier) || identifier < 0 || identifier > 255) throw new IscsiProtocolError('bad-field', `CHAP identifier ${identifier} is not a byte`);
  const h = createHash('md5');
  h.update(Uint8Array.of(identifier));
  h.update(typeof secret === 'string' ? enc.encode(secret) : secret);
  h.update(challenge);
  return new Uint8Array(h.digest());
}

export function encodeBinary(bytes: Uint8Array): string {
  return '0x' + Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('hex');
}

/** Decodes "0x…" (hex) or "0b…" (base64); throws IscsiProtocolError otherwise or when too big. */
export function decodeBinary(value: string, bytesMax = CHAP_CHALLENGE_BYTES_MAX): Uint8Array {
  const prefix = value.slice(0, 2).toLowerCase();
  const body = value.slice(2);
  let bytes: Uint8Array;
  if (prefix === '0x' && /^[0-9a-fA-F]+$/.test(body)) {
    bytes = new Uint8Array(Buffer.from(body.length % 2 === 1 ? '0' + body : body, 'hex'));
  } else if (prefix === '0b' && /^[A-Za-z0-9+/]+=*$/.test(body)) {
    bytes = new Uint8Array(Buffer.from(body, 'base64'));
  } else {
    throw new IscsiProtocolError('bad-text', `'${value.slice(0, 12)}…' is not a 0x/0b binary value`);
  }
  if (bytes.length === 0 || bytes.length > bytesMax) throw new IscsiProtocolError('bad-text', `binary value of ${bytes.length} bytes (1..${bytesMax} allowed)`);
  return bytes;
}

/** A fresh challenge and identifier for mutual CHAP. */
export function newChallenge(): { identifier: number; challenge: Uint8Array } {
  const r = randomBytes(CHAP_CHALLENGE_BYTES + 1);
  return { identifier: r[0]!, challenge: new Uint8Array(r.subarray(1)) };
}

/** Constant-time comparison, so a wrong response leaks nothing through timing. */
export function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a[i]! ^ b[i]!;
  return diff === 0;
}
