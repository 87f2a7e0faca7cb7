// Small big-endian helpers shared by the codecs.

export function view(bytes: Uint8Array): DataView {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/** Reads a u64 as a JS number; values past 2^53 saturate to MAX_SAFE_INTEGER (always out of range). */
export function readU64(dv: DataView, at: number): number {
  const hi = dv.getUint32(at);
  const lo = dv.getUint32(at + 4);
  if (hi >= 0x200000) return Number.MAX_SAFE_INTEGER;
  return hi * 0x100000000 + lo;
}

export function writeU64(dv: DataView, at: number, value: number): void {
  if (!(Number.isSafeInteger(value) && value >= 0)) throw new RangeError(`not a u64: ${value}`);
  dv.setUint32(at, Math.floor(value / 0x100000000));
  dv.setUint32(at + 4, value >>> 0);
}

/**
 * The 16 bytes every request and reply header starts with (but the simple reply): magic, u16
 * flags, u16 type, the cookie's two u32 halves. The caller writes the rest.
 */
export function writeHead(dv: DataView, at: number, magic: number, flags: number, type: number, cookieHi: number, cookieLo: number): void {
  dv.setUint32(at, magic);
  dv.setUint16(at + 4, flags);
  dv.setUint16(at + 6, type);
  dv.setUint32(at + 8, cookieHi);
  dv.setUint32(at + 12, cookieLo);
}

const utf8Decoder = new TextDecoder('utf-8', { fatal: true });
const utf8Encoder = new TextEncoder();

/** Decodes strict UTF-8 without NUL; undefined when invalid. */
export function decodeString(bytes: Uint8Array): string | undefined {
  if (bytes.includes(0)) return undefined;
  try {
    return utf8Decoder.decode(bytes);
  } catch {
    return undefined;
  }
}

export function encodeString(text: string): Uint8Array {
  return utf8Encoder.encode(text);
}
