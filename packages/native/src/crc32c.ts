// CRC32C (Castagnoli, reflected polynomial 0x82F63B78) in pure JS: the superblock, bitmap and
// checkpoint CRCs, and the fallback of the per-block checksums when the addon is not loaded.
//
// Slicing-by-16 over 32-bit words: 16 tables of 256 entries (16 KiB, L1-resident) fold 16 bytes
// per step with 16 independent look-ups, and reading the data as an Int32Array view loads 4 bytes
// at a time. On random 4 KiB blocks here that is ~10x the byte-at-a-time loop it replaces and ~2x
// slicing-by-8 over single bytes (bench/checksum.ts measures it against the addon). Word loads
// assume a little-endian host; a big-endian one takes the byte loop (correct, slower).

const POLY_REFLECTED = 0x82f63b78;
const SLICES = 16;

/** Table t maps a byte to its CRC contribution t bytes further on (t = 0: the usual table). */
function buildTables(): Int32Array[] {
  const t0 = new Int32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ POLY_REFLECTED : c >>> 1;
    t0[n] = c;
  }
  const tables = [t0];
  for (let t = 1; t < SLICES; t++) {
    const prev = tables[t - 1]!;
    const cur = new Int32Array(256);
    for (let n = 0; n < 256; n++) cur[n] = (prev[n]! >>> 8) ^ t0[prev[n]! & 0xff]!;
    tables.push(cur);
  }
  return tables;
}

// Sixteen named bindings, not an array of tables: V8 keeps each one's elements pointer in a
// register instead of re-loading it through the array on every look-up.
const [T0, T1, T2, T3, T4, T5, T6, T7, T8, T9, T10, T11, T12, T13, T14, T15] = buildTables() as [
  Int32Array, Int32Array, Int32Array, Int32Array, Int32Array, Int32Array, Int32Array, Int32Array,
  Int32Array, Int32Array, Int32Array, Int32Array, Int32Array, Int32Array, Int32Array, Int32Array,
];

const LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

/** Folds bytes[from, to) into the running (un-finished) state `crc`, one byte per step. */
function updateBytes(crc: number, bytes: Uint8Array, from: number, to: number): number {
  let c = crc;
  for (let i = from; i < to; i++) c = (c >>> 8) ^ T0[(c ^ bytes[i]!) & 0xff]!;
  return c;
}

/** Folds words[from, to) (little-endian 32-bit words) into `crc`, 16 bytes per step. */
export function crc32cUpdateWords(crc: number, words: Int32Array, from: number, to: number): number {
  let c = crc;
  let i = from;
  for (const end16 = to - ((to - from) & 3); i < end16; i += 4) {
    const a = c ^ words[i]!;
    const b = words[i + 1]!;
    const d = words[i + 2]!;
    const e = words[i + 3]!;
    c = T15[a & 0xff]! ^ T14[(a >>> 8) & 0xff]! ^ T13[(a >>> 16) & 0xff]! ^ T12[a >>> 24]! ^
      T11[b & 0xff]! ^ T10[(b >>> 8) & 0xff]! ^ T9[(b >>> 16) & 0xff]! ^ T8[b >>> 24]! ^
      T7[d & 0xff]! ^ T6[(d >>> 8) & 0xff]! ^ T5[(d >>> 16) & 0xff]! ^ T4[d >>> 24]! ^
      T3[e & 0xff]! ^ T2[(e >>> 8) & 0xff]! ^ T1[(e >>> 16) & 0xff]! ^ T0[e >>> 24]!;
  }
  // Up to three words left: byte by byte, lowest byte first (little-endian).
  for (; i < to; i++) {
    const w = words[i]!;
    c = (c >>> 8) ^ T0[(c ^ w) & 0xff]!;
    c = (c >>> 8) ^ T0[(c ^ (w >>> 8)) & 0xff]!;
    c = (c >>> 8) ^ T0[(c ^ (w >>> 16)) & 0xff]!;
    c = (c >>> 8) ^ T0[(c ^ (w >>> 24)) & 0xff]!;
  }
  return c;
}

/** Whether `bytes` can be read as whole 32-bit words in place (crc32cUpdateWords). */
export function wordReadable(bytes: Uint8Array): boolean {
  return LITTLE_ENDIAN && (bytes.byteOffset & 3) === 0;
}

/**
 * Folds `bytes` into a running (un-finished) state: bytes up to a 4-byte boundary, words, tail.
 * Start from 0xffffffff and finish with `~state >>> 0` (iSCSI digests stream this way).
 */
export function crc32cUpdate(crc: number, bytes: Uint8Array): number {
  const n = bytes.length;
  if (!LITTLE_ENDIAN || n < 32) return updateBytes(crc, bytes, 0, n);
  const head = Math.min(n, (4 - (bytes.byteOffset & 3)) & 3);
  const wordCount = (n - head) >>> 2;
  const words = new Int32Array(bytes.buffer, bytes.byteOffset + head, wordCount);
  const c = crc32cUpdateWords(updateBytes(crc, bytes, 0, head), words, 0, wordCount);
  return updateBytes(c, bytes, head + wordCount * 4, n);
}

/**
 * CRC32C of `bytes`, as in iSCSI and ext4: crc32c("123456789") = 0xe3069283. `seed` is the CRC
 * of what came before, so crc32c(b, crc32c(a)) === crc32c(a followed by b).
 */
export function crc32c(bytes: Uint8Array, seed = 0): number {
  return ~crc32cUpdate(~seed, bytes) >>> 0;
}
