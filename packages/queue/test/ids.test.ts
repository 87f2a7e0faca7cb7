import { describe, expect, it } from 'vitest';
import {
  makeRequestId,
  Op,
  parseRequestId,
  QueueError,
  requestIdFromWords,
  requestIdHi,
  requestIdLo,
  SEQUENCE_MODULUS,
  VOLUME_INDEX_MAX,
  type RequestIdParts,
} from '../src/index.js';

describe('request ids', () => {
  const edges: RequestIdParts[] = [
    { cls: 'local', op: Op.READ, volumeIndex: 0, sequence: 0 },
    { cls: 'remote', op: Op.CACHE, volumeIndex: VOLUME_INDEX_MAX, sequence: SEQUENCE_MODULUS - 1 },
    { cls: 'remote', op: Op.WRITE, volumeIndex: 1, sequence: 2 ** 32 - 1 },
    { cls: 'local', op: Op.WRITE_ZEROES, volumeIndex: 2048, sequence: 2 ** 32 },
    { cls: 'remote', op: Op.TRIM, volumeIndex: 7, sequence: 2 ** 31 },
    { cls: 'local', op: Op.FLUSH, volumeIndex: 4094, sequence: 123_456_789_012 },
  ];

  it('round-trips edge values through bigint and through the two words', () => {
    for (const parts of edges) {
      const id = makeRequestId(parts);
      expect(parseRequestId(id)).toEqual(parts);
      const hi = requestIdHi(parts.cls, parts.op, parts.volumeIndex, parts.sequence);
      const lo = requestIdLo(parts.sequence);
      expect(hi).toBeGreaterThanOrEqual(0);
      expect(hi).toBeLessThan(2 ** 32);
      expect(lo).toBeGreaterThanOrEqual(0);
      expect(lo).toBeLessThan(2 ** 32);
      expect(requestIdFromWords(hi, lo)).toBe(id);
      // Words stored in Int32Array descriptor fields come back signed; still the same id.
      expect(requestIdFromWords(hi | 0, lo | 0)).toBe(id);
    }
  });

  it('puts each field in its documented bits', () => {
    expect(makeRequestId({ cls: 'remote', op: Op.READ, volumeIndex: 0, sequence: 0 })).toBe(1n << 63n);
    expect(makeRequestId({ cls: 'local', op: Op.CACHE, volumeIndex: 0, sequence: 0 })).toBe(5n << 56n);
    expect(makeRequestId({ cls: 'local', op: Op.READ, volumeIndex: VOLUME_INDEX_MAX, sequence: 0 })).toBe(0xfffn << 44n);
    expect(makeRequestId({ cls: 'local', op: Op.READ, volumeIndex: 0, sequence: SEQUENCE_MODULUS - 1 })).toBe((1n << 44n) - 1n);
    const all = makeRequestId({ cls: 'remote', op: Op.CACHE, volumeIndex: VOLUME_INDEX_MAX, sequence: SEQUENCE_MODULUS - 1 });
    expect(all).toBe(0x85ff_ffff_ffff_ffffn);
  });

  it('wraps the sequence modulo 2^44', () => {
    const wrapped = makeRequestId({ cls: 'local', op: Op.READ, volumeIndex: 3, sequence: SEQUENCE_MODULUS + 5 });
    expect(parseRequestId(wrapped)).toEqual({ cls: 'local', op: Op.READ, volumeIndex: 3, sequence: 5 });
  });

  it('rejects out-of-range parts with a QueueError', () => {
    const bad: Array<() => unknown> = [
      () => makeRequestId({ cls: 'local', op: Op.READ, volumeIndex: VOLUME_INDEX_MAX + 1, sequence: 0 }),
      () => makeRequestId({ cls: 'local', op: Op.READ, volumeIndex: -1, sequence: 0 }),
      () => makeRequestId({ cls: 'local', op: Op.READ, volumeIndex: 0, sequence: -1 }),
      () => makeRequestId({ cls: 'local', op: Op.READ, volumeIndex: 0, sequence: 1.5 }),
      () => makeRequestId({ cls: 'local', op: 99 as never, volumeIndex: 0, sequence: 0 }),
      () => makeRequestId({ cls: 'neither' as never, op: Op.READ, volumeIndex: 0, sequence: 0 }),
      () => parseRequestId(-1n),
      () => parseRequestId(1n << 64n),
      () => parseRequestId(0x7fn << 56n), // op 127 is not a known op
      () => requestIdFromWords(2 ** 32, 0),
      () => requestIdLo(Number.MAX_SAFE_INTEGER + 1),
    ];
    for (const fn of bad) expect(fn).toThrow(QueueError);
  });
});
