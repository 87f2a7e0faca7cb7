import { randomUUID } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { crc32c, decodeSuperblock, encodeSuperblock, SuperblockError, type Superblock } from '../src/meta/superblock.js';
import { DATA_OFFSET_BYTES, SUPERBLOCK_BYTES, type ReshapeRecord } from '../src/meta/types.js';

const SAMPLE: Omit<Superblock, 'version'> = {
  arrayUuid: randomUUID(), elementUuid: randomUUID(), volumeName: 'défault-é', layout: 'raid1', chunkBytes: 65536, role: 1, count: 2,
  dataOffsetBytes: DATA_OFFSET_BYTES, dataSizeBytes: 1024 ** 3, volumeSizeBytes: 1024 ** 3, eventCount: 2 ** 40 + 7,
  clean: true, needsRebuild: false, createdMs: 1_790_000_000_000, bitmapOffsetBytes: 0, bitmapSizeBytes: 0,
};

function kindOf(bytes: Uint8Array): string {
  try {
    const sb = decodeSuperblock(bytes);
    return 'kind' in sb ? sb.kind : 'ok';
  } catch (err) {
    expect(err).toBeInstanceOf(SuperblockError);
    return (err as SuperblockError).kind;
  }
}

/** Re-seals a modified block with a correct checksum, to reach the field checks. */
function reseal(bytes: Uint8Array): Uint8Array {
  new DataView(bytes.buffer).setUint32(SUPERBLOCK_BYTES - 4, crc32c(bytes.subarray(0, SUPERBLOCK_BYTES - 4)), true);
  return bytes;
}

describe('crc32c', () => {
  it('matches the standard check value', () => {
    expect(crc32c(new TextEncoder().encode('123456789'))).toBe(0xe3069283);
    expect(crc32c(new Uint8Array(0))).toBe(0);
    expect(crc32c(new Uint8Array(32))).toBe(0x8a9136aa);
  });
});

describe('superblock codec', () => {
  it('round-trips every field', () => {
    const bytes = encodeSuperblock(SAMPLE);
    expect(bytes.length).toBe(SUPERBLOCK_BYTES);
    expect(new TextDecoder().decode(bytes.subarray(0, 8))).toBe('ONESTACK');
    expect(decodeSuperblock(bytes)).toEqual({ ...SAMPLE, version: 1 });
    const dirty = { ...SAMPLE, clean: false, needsRebuild: true, layout: 'raid6' as const, count: 6, role: 5 };
    expect(decodeSuperblock(encodeSuperblock(dirty))).toEqual({ ...dirty, version: 1 });
  });

  it('keeps a history id at bytes 284..292 (zero = none, as older superblocks hold) and refuses a malformed one', () => {
    const withId = { ...SAMPLE, historyId: '8000000000000001' };
    const bytes = encodeSuperblock(withId);
    expect(new DataView(bytes.buffer).getBigUint64(284, true)).toBe(0x8000000000000001n);
    expect(decodeSuperblock(bytes)).toEqual({ ...withId, version: 1 });
    const old = encodeSuperblock(SAMPLE);
    expect(old.subarray(284, 292).every((b) => b === 0)).toBe(true);
    expect(decodeSuperblock(old)).not.toHaveProperty('historyId');
    for (const bad of ['0000000000000000', '8000000000000001a', 'ABCDEF0123456789', 'xyz']) expect(() => encodeSuperblock({ ...SAMPLE, historyId: bad })).toThrow(/history id/);
  });

  it('decodes all-zero as blank and a longer buffer by its first 4096 bytes', () => {
    expect(decodeSuperblock(new Uint8Array(SUPERBLOCK_BYTES))).toEqual({ kind: 'blank' });
    const longer = new Uint8Array(SUPERBLOCK_BYTES * 2);
    longer.set(encodeSuperblock(SAMPLE));
    longer.fill(0xff, SUPERBLOCK_BYTES);
    expect(kindOf(longer)).toBe('ok');
  });

  it('names each kind of damage', () => {
    expect(kindOf(new Uint8Array(100))).toBe('truncated');
    expect(kindOf(encodeSuperblock(SAMPLE).subarray(0, 4095))).toBe('truncated');
    const magic = encodeSuperblock(SAMPLE);
    magic[0] = 0x58;
    expect(kindOf(magic)).toBe('bad-magic');
    const flipped = encodeSuperblock(SAMPLE);
    flipped[40] = (flipped[40] ?? 0) ^ 1;
    expect(kindOf(flipped)).toBe('bad-checksum');
    const version = encodeSuperblock(SAMPLE);
    new DataView(version.buffer).setUint32(8, 2, true);
    expect(kindOf(version)).toBe('bad-version');
    const layout = encodeSuperblock(SAMPLE);
    new DataView(layout.buffer).setUint32(100, 9, true);
    expect(kindOf(reseal(layout))).toBe('invalid-field');
    const role = encodeSuperblock(SAMPLE);
    new DataView(role.buffer).setUint32(108, 2, true);
    expect(kindOf(reseal(role))).toBe('invalid-field');
    const name = encodeSuperblock(SAMPLE);
    name[36] = 0xff;
    expect(kindOf(reseal(name))).toBe('invalid-field');
    const huge = encodeSuperblock(SAMPLE);
    new DataView(huge.buffer).setBigUint64(144, 2n ** 63n, true);
    expect(kindOf(reseal(huge))).toBe('invalid-field');
  });

  it('refuses to encode invalid fields', () => {
    expect(() => encodeSuperblock({ ...SAMPLE, volumeName: 'x'.repeat(65) })).toThrow(SuperblockError);
    expect(() => encodeSuperblock({ ...SAMPLE, chunkBytes: 3000 })).toThrow(/chunk/);
    expect(() => encodeSuperblock({ ...SAMPLE, arrayUuid: 'nope' })).toThrow(/UUID/);
    expect(() => encodeSuperblock({ ...SAMPLE, role: 2 })).toThrow(/role/);
    expect(() => encodeSuperblock({ ...SAMPLE, eventCount: -1 })).toThrow(/event/);
  });

  it('throws nothing but SuperblockError for random and mutated input', () => {
    let seed = 0x9e3779b9;
    const rand = (): number => {
      seed ^= seed << 13; seed ^= seed >>> 17; seed ^= seed << 5;
      return (seed >>> 0) / 2 ** 32;
    };
    const valid = encodeSuperblock(SAMPLE);
    const kinds = new Map<string, number>();
    for (let i = 0; i < 4000; i++) {
      let bytes: Uint8Array;
      if (i % 2 === 0) {
        bytes = new Uint8Array(Math.floor(rand() * (SUPERBLOCK_BYTES + 64)));
        for (let j = 0; j < bytes.length; j++) bytes[j] = Math.floor(rand() * 256);
        if (i % 8 === 0 && bytes.length >= 12) bytes.set(valid.subarray(0, 12)); // right magic + version, random rest
      } else {
        bytes = valid.slice();
        for (let k = 0; k < 1 + Math.floor(rand() * 8); k++) bytes[Math.floor(rand() * 200)] = Math.floor(rand() * 256);
        if (i % 4 === 1) reseal(bytes); // valid checksum over random fields
      }
      const kind = kindOf(bytes);
      kinds.set(kind, (kinds.get(kind) ?? 0) + 1);
    }
    // The fuzz reached every rejection path, not only the magic check.
    for (const kind of ['truncated', 'bad-magic', 'bad-checksum', 'invalid-field']) expect(kinds.get(kind) ?? 0).toBeGreaterThan(0);
  });
});

describe('superblock reshape record (bytes 216..284)', () => {
  // A raid5 over 4 growing to 5: the superblock carries the NEW geometry; volume size = C0.
  const NEW = { ...SAMPLE, layout: 'raid5' as const, count: 5, role: 4, volumeSizeBytes: 3 * 1024 ** 3 };
  const RECORD: ReshapeRecord = {
    fromLayout: 'raid5', fromCount: 4, fromChunkBytes: 65536, fromSizeBytes: 3 * 1024 ** 3, toSizeBytes: 4 * 1024 ** 3,
    positionBytes: 8 * 65536, backup: { startBytes: 8 * 65536, lengthBytes: 3 * 65536, crc: 0xdeadbeef }, startedMs: 1_790_000_000_123,
  };

  it('round-trips with and without a backup; older superblocks (zeros there) have none', () => {
    expect(decodeSuperblock(encodeSuperblock({ ...NEW, reshape: RECORD }))).toEqual({ ...NEW, reshape: RECORD, version: 1 });
    const { backup: _b, ...noBackup } = RECORD;
    const bytes = encodeSuperblock({ ...NEW, reshape: noBackup });
    expect(decodeSuperblock(bytes)).toEqual({ ...NEW, reshape: noBackup, version: 1 });
    const view = new DataView(bytes.buffer);
    expect(view.getUint32(216, true)).toBe(0x50485352);
    expect([view.getUint32(220, true), view.getUint32(224, true), view.getUint32(228, true)]).toEqual([4, 4, 65536]);
    expect([232, 240, 248, 256].map((o) => Number(view.getBigUint64(o, true)))).toEqual([RECORD.fromSizeBytes, RECORD.toSizeBytes, RECORD.positionBytes, 0]);
    expect([view.getUint32(264, true), view.getUint32(268, true), view.getUint32(280, true)]).toEqual([0, 0, 0]);
    const plain = encodeSuperblock(SAMPLE);
    expect(plain.subarray(216, 4092).every((b) => b === 0)).toBe(true);
    expect(decodeSuperblock(plain)).not.toHaveProperty('reshape');
  });

  it('refuses an inconsistent record on encode', () => {
    const bad: Array<[Partial<ReshapeRecord>, RegExp]> = [
      [{ positionBytes: RECORD.fromSizeBytes + 1 }, /position/],
      [{ toSizeBytes: RECORD.fromSizeBytes - 1 }, /new size/],
      [{ fromCount: 6 }, /from count/],
      [{ fromCount: 0 }, /from count/],
      [{ fromSizeBytes: 1024 ** 3 }, /volume size/],
      [{ fromLayout: 'raid7' as never }, /from layout/],
      [{ fromChunkBytes: 1000 }, /chunk/],
      [{ backup: { startBytes: 0, lengthBytes: 4096, crc: 1 } }, /backup/],
      [{ backup: { startBytes: RECORD.fromSizeBytes - 4096, lengthBytes: 8192, crc: 1 } }, /backup/],
      [{ backup: { startBytes: RECORD.positionBytes, lengthBytes: 0, crc: 1 } }, /backup/],
    ];
    for (const [patch, message] of bad) expect(() => encodeSuperblock({ ...NEW, reshape: { ...RECORD, ...patch } }), JSON.stringify(patch)).toThrow(message);
  });

  it('decode names a damaged record invalid-field (magic, layout code, reserved, stray backup fields, position)', () => {
    const edits: Array<(v: DataView) => void> = [
      (v) => v.setUint32(216, 0x12345678, true),
      (v) => v.setUint32(216, 0, true),
      (v) => v.setUint32(220, 6, true),
      (v) => v.setUint32(280, 1, true),
      (v) => { v.setUint32(264, 0, true); }, // backup start and crc left without a length
      (v) => v.setBigUint64(248, BigInt(RECORD.fromSizeBytes + 1), true),
      (v) => v.setBigUint64(240, 2n ** 60n, true),
    ];
    for (const edit of edits) {
      const bytes = encodeSuperblock({ ...NEW, reshape: RECORD });
      edit(new DataView(bytes.buffer));
      expect(kindOf(reseal(bytes))).toBe('invalid-field');
    }
    // Stray bytes in an otherwise empty record area are damage, not "no reshape".
    const stray = encodeSuperblock(NEW);
    stray[250] = 1;
    expect(kindOf(reseal(stray))).toBe('invalid-field');
  });
});
