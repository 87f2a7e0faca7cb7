// The integrity format (issue 10, docs/integrity.md): superblock fields at 192..216, the element
// geometry (header | data | checksum area), config and assembly refusals, old superblocks.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { ElementConfig, Layout, VolumeConfig } from '../src/config/types.js';
import { normalizeElement, normalizeVolume } from '../src/config/validate.js';
import { assembleVolume } from '../src/meta/assemble.js';
import { readSuperblockFile, writeSuperblockFile } from '../src/meta/element-io.js';
import { integrityAreaBytes, integrityAreaFor, integrityDataBytes } from '../src/meta/layout.js';
import { crc32c, decodeSuperblock, encodeSuperblock, SuperblockError, type Superblock } from '../src/meta/superblock.js';
import { DATA_OFFSET_BYTES } from '../src/meta/types.js';
import { refusal } from './meta-helpers.js';

const MiB = 1024 * 1024;
const KiB = 1024;

const BASE: Omit<Superblock, 'version'> = {
  arrayUuid: '01234567-89ab-cdef-0123-456789abcdef', elementUuid: 'fedcba98-7654-3210-fedc-ba9876543210', volumeName: 'v', layout: 'raid1',
  chunkBytes: 65536, role: 0, count: 2, dataOffsetBytes: DATA_OFFSET_BYTES, dataSizeBytes: 8 * MiB - 64 * KiB, volumeSizeBytes: 8 * MiB - 64 * KiB,
  eventCount: 3, createdMs: 1_700_000_000_000, bitmapOffsetBytes: 65536, bitmapSizeBytes: 983040, clean: true, needsRebuild: false,
};
const AREA = { offsetBytes: DATA_OFFSET_BYTES + 8 * MiB - 64 * KiB, sizeBytes: 8192, blockBytes: 4096, algo: 1 };

function withCrc(bytes: Uint8Array): Uint8Array {
  new DataView(bytes.buffer, bytes.byteOffset).setUint32(4092, crc32c(bytes.subarray(0, 4092)), true);
  return bytes;
}

describe('superblock integrity fields', () => {
  it('round-trips the area at 192..216 and decodes zeros (an older superblock) as no integrity', () => {
    const bytes = encodeSuperblock({ ...BASE, integrity: AREA });
    const view = new DataView(bytes.buffer);
    expect([Number(view.getBigUint64(192, true)), Number(view.getBigUint64(200, true)), view.getUint32(208, true), view.getUint32(212, true)])
      .toEqual([AREA.offsetBytes, AREA.sizeBytes, 4096, 1]);
    expect(decodeSuperblock(bytes)).toEqual({ ...BASE, integrity: AREA, version: 1 });
    const old = encodeSuperblock(BASE);
    expect(old.subarray(192, 4092).every((b) => b === 0)).toBe(true);
    const decoded = decodeSuperblock(old);
    expect(decoded).toEqual({ ...BASE, version: 1 });
    expect('integrity' in decoded).toBe(false);
  });

  it('refuses a bad area when encoding and when decoding (checksum valid)', () => {
    const bad = [
      { ...AREA, algo: 2 }, { ...AREA, blockBytes: 512 }, { ...AREA, offsetBytes: DATA_OFFSET_BYTES }, { ...AREA, offsetBytes: AREA.offsetBytes + 1 },
      { ...AREA, sizeBytes: 0 }, { ...AREA, sizeBytes: 100 },
    ];
    for (const area of bad) expect(() => encodeSuperblock({ ...BASE, integrity: area })).toThrow(SuperblockError);
    const bytes = encodeSuperblock({ ...BASE, integrity: AREA });
    new DataView(bytes.buffer).setUint32(212, 7, true);
    expect(() => decodeSuperblock(withCrc(bytes))).toThrow(/unknown integrity algorithm 7/);
    const partial = encodeSuperblock(BASE);
    new DataView(partial.buffer).setUint32(208, 4096, true); // a block size without an area: not "no integrity"
    expect(() => decodeSuperblock(withCrc(partial))).toThrow(SuperblockError);
  });
});

describe('integrity geometry', () => {
  /** The definition, by brute force: the largest 4 KiB multiple D with 4 MiB + D + area(D) <= raw. */
  function reference(raw: number): number {
    for (let d = Math.floor((raw - DATA_OFFSET_BYTES) / 4096) * 4096; d > 0; d -= 4096) if (DATA_OFFSET_BYTES + d + integrityAreaBytes(d) <= raw) return d;
    return 0;
  }

  it('gives exact data sizes for a few raw sizes', () => {
    expect(integrityAreaBytes(4 * MiB)).toBe(4096); // 1024 blocks × 4 bytes = one page
    expect(integrityAreaBytes(4 * MiB + 4096)).toBe(8192);
    expect(integrityDataBytes(DATA_OFFSET_BYTES + 4 * MiB + 4096)).toBe(4 * MiB); // 4 MiB data + 1 page of sums, exactly
    expect(integrityDataBytes(DATA_OFFSET_BYTES + 4 * MiB)).toBe(4 * MiB - 4096);
    expect(integrityDataBytes(DATA_OFFSET_BYTES + 4 * MiB + 100)).toBe(4 * MiB - 4096);
    expect(integrityDataBytes(DATA_OFFSET_BYTES + 8 * MiB)).toBe(8 * MiB - 8192);
    expect(integrityDataBytes(DATA_OFFSET_BYTES)).toBe(0);
    expect(integrityDataBytes(100)).toBe(0);
    for (const raw of [DATA_OFFSET_BYTES + 1 * MiB, DATA_OFFSET_BYTES + 8 * MiB + 12345, 64 * MiB, 1024 * MiB + 4096 * 7, 10 * 1024 ** 3 + 1]) {
      const d = integrityDataBytes(raw);
      expect(d).toBe(reference(raw));
      expect(DATA_OFFSET_BYTES + d + integrityAreaBytes(d)).toBeLessThanOrEqual(raw);
    }
    expect(integrityAreaFor(8 * MiB)).toEqual({ offsetBytes: DATA_OFFSET_BYTES + 8 * MiB, sizeBytes: 8192, blockBytes: 4096, algo: 1 });
  });
});

describe('integrity config', () => {
  const names = new Set(['a', 'b', 'c', 'd']);
  it('defaults to off, takes true on raid1/raid10, refuses other layouts and non-booleans with the field named', () => {
    expect(normalizeVolume({ name: 'v', layout: 'raid1', elements: ['a', 'b'] }, 'volumes[0]', names).integrity).toBeUndefined();
    expect(normalizeVolume({ name: 'v', layout: 'raid1', elements: ['a', 'b'], integrity: false }, 'volumes[0]', names).integrity).toBeUndefined();
    expect(normalizeVolume({ name: 'v', layout: 'raid1', elements: ['a', 'b'], integrity: true }, 'volumes[0]', names).integrity).toBe(true);
    expect(normalizeVolume({ name: 'v', layout: 'raid10', elements: ['a', 'b', 'c', 'd'], integrity: true }, 'volumes[0]', names).integrity).toBe(true);
    expect(normalizeVolume({ name: 'v', layout: 'raid5', elements: ['a', 'b', 'c'], integrity: true }, 'volumes[0]', names).integrity).toBe(true);
    expect(normalizeVolume({ name: 'v', layout: 'raid6', elements: ['a', 'b', 'c', 'd'], integrity: true }, 'volumes[0]', names).integrity).toBe(true);
    for (const [layout, elements] of [['raid0', ['a', 'b']], ['linear', ['a']]] as const) {
      expect(() => normalizeVolume({ name: 'v', layout, elements, integrity: true }, 'volumes[0]', names))
        .toThrow(/volumes\[0\]\.integrity.*integrity needs a layout that can repair a bad block/);
    }
    expect(() => normalizeVolume({ name: 'v', layout: 'raid1', elements: ['a', 'b'], integrity: 'yes' }, 'volumes[0]', names)).toThrow(/volumes\[0\]\.integrity/);
  });
});

describe('integrity assembly', () => {
  let dir: string;
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'onestack-integrity-'));
  });
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  function elements(names: readonly string[], createMiB = 8): Map<string, ElementConfig> {
    return new Map(names.map((name) => [name, normalizeElement({ name, uri: `${name}.img`, createSizeBytes: createMiB * MiB }, name, dir)]));
  }
  function volume(layout: Layout, names: readonly string[], extra: Partial<VolumeConfig> = {}): VolumeConfig {
    return { name: 'v', layout, elements: names, chunkKiB: 64, order: 'fifo', boot: false, integrity: true, ...extra };
  }
  async function sb(name: string): Promise<Superblock> {
    const s = await readSuperblockFile(path.join(dir, `${name}.img`));
    if (!('arrayUuid' in s)) throw new Error(`no superblock on ${name}`);
    return s;
  }
  // 8 MiB after the header: D = 8 MiB - 8 KiB (area 8 KiB), rounded down to the 64 KiB chunk.
  const LEG = 8 * MiB - 64 * KiB;

  it('raid1: the data area shrinks by the checksum area, recorded in every superblock, and reassembles the same', async () => {
    const els = elements(['d0', 'd1']);
    const vol = await assembleVolume(volume('raid1', ['d0', 'd1']), els, { create: true });
    expect(vol.sizeBytes).toBe(LEG);
    const area = { offsetBytes: DATA_OFFSET_BYTES + LEG, sizeBytes: 8192, blockBytes: 4096, algo: 1 };
    expect(vol.elements.map((e) => [e.dataSizeBytes, e.integrity])).toEqual([[LEG, area], [LEG, area]]);
    expect((await sb('d0')).integrity).toEqual(area);
    expect((await sb('d1')).integrity).toEqual(area);
    const again = await assembleVolume(volume('raid1', ['d0', 'd1']), els, { create: false });
    expect(again.sizeBytes).toBe(LEG);
    expect(again.elements.map((e) => e.integrity)).toEqual([area, area]);
  });

  it('raid10: n/2 legs of the smaller data area; without integrity nothing changes', async () => {
    const vol = await assembleVolume(volume('raid10', ['d0', 'd1', 'd2', 'd3']), elements(['d0', 'd1', 'd2', 'd3']), { create: true });
    expect(vol.sizeBytes).toBe(2 * LEG);
    expect(vol.elements.every((e) => e.integrity?.offsetBytes === DATA_OFFSET_BYTES + LEG)).toBe(true);
    const plain = await assembleVolume(volume('raid10', ['e0', 'e1', 'e2', 'e3'], { name: 'p', integrity: undefined }), elements(['e0', 'e1', 'e2', 'e3']), { create: true });
    expect(plain.sizeBytes).toBe(2 * 8 * MiB);
    expect(plain.elements.every((e) => e.integrity === undefined && e.dataSizeBytes === 8 * MiB)).toBe(true);
    expect((await sb('e0')).integrity).toBeUndefined();
  });

  it('refuses other layouts, a config that changes integrity, and elements whose areas disagree', async () => {
    const e5 = await refusal(assembleVolume(volume('raid0', ['r0', 'r1', 'r2']), elements(['r0', 'r1', 'r2']), { create: true }));
    expect(e5.message).toMatch(/integrity needs a layout that can repair a bad block/);
    expect(fs.existsSync(path.join(dir, 'r0.img'))).toBe(false); // refused before touching anything

    const els = elements(['d0', 'd1']);
    await assembleVolume(volume('raid1', ['d0', 'd1']), els, { create: true });
    const off = await refusal(assembleVolume(volume('raid1', ['d0', 'd1'], { integrity: undefined }), els, { create: false }));
    expect(off.code).toBe('conflict');
    expect(off.message).toMatch(/created with integrity; the config says integrity: false/);

    const plainEls = elements(['p0', 'p1']);
    await assembleVolume(volume('raid1', ['p0', 'p1'], { name: 'p', integrity: undefined }), plainEls, { create: true });
    const on = await refusal(assembleVolume(volume('raid1', ['p0', 'p1'], { name: 'p' }), plainEls, { create: false }));
    expect(on.message).toMatch(/created without integrity; the config says integrity: true/);

    const s1 = await sb('d1');
    await writeSuperblockFile(path.join(dir, 'd1.img'), encodeSuperblock({ ...s1, integrity: { ...s1.integrity!, offsetBytes: s1.integrity!.offsetBytes + 4096 } }));
    const clash = await refusal(assembleVolume(volume('raid1', ['d0', 'd1']), els, { create: false }));
    expect(clash.code).toBe('conflict');
    expect(clash.message).toMatch(/element d1 keeps checksums at \d+ .*the freshest element says at \d+/);
  });

  it('a blank leg rejoining gets the volume area (written with its rebuild mark)', async () => {
    const els = elements(['d0', 'd1']);
    await assembleVolume(volume('raid1', ['d0', 'd1']), els, { create: true });
    await writeSuperblockFile(path.join(dir, 'd1.img'), new Uint8Array(4096));
    const vol = await assembleVolume(volume('raid1', ['d0', 'd1']), els, { create: false });
    expect(vol.elements[1]).toMatchObject({ state: 'stale', integrity: { offsetBytes: DATA_OFFSET_BYTES + LEG, sizeBytes: 8192 } });
    expect((await sb('d1'))).toMatchObject({ needsRebuild: true, integrity: { offsetBytes: DATA_OFFSET_BYTES + LEG, sizeBytes: 8192 } });
  });
});
