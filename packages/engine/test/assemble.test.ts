import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { ElementConfig, Layout, VolumeConfig } from '../src/config/types.js';
import { normalizeElement } from '../src/config/validate.js';
import { assembleVolume, markClean } from '../src/meta/assemble.js';
import { readSuperblockFile, wipeSuperblocks } from '../src/meta/element-io.js';
import { layoutCapacityBytes, layoutSurvives } from '../src/meta/layout.js';
import type { Superblock } from '../src/meta/superblock.js';
import { DATA_OFFSET_BYTES, type AssembledVolume } from '../src/meta/types.js';
import { refusal, superblockIn } from './meta-helpers.js';

const MiB = 1024 * 1024;
let dir: string;
beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'onestack-assemble-'));
});
afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

function elements(names: readonly string[], createMiB: number | null = 8): Map<string, ElementConfig> {
  const map = new Map<string, ElementConfig>();
  for (const name of names) {
    const raw = { name, uri: `${name}.img`, ...(createMiB !== null ? { createSizeBytes: createMiB * MiB } : {}) };
    map.set(name, normalizeElement(raw, name, dir));
  }
  return map;
}

function volume(name: string, layout: Layout, names: readonly string[], extra: Partial<VolumeConfig> = {}): VolumeConfig {
  return { name, layout, elements: names, chunkKiB: 64, order: 'fifo', boot: false, ...extra };
}

function superblock(name: string): Promise<Superblock> {
  return superblockIn(dir, name);
}

describe('assembleVolume', () => {
  it('creates a fresh array on new sparse files, then reassembles it', async () => {
    const els = elements(['d0', 'd1']);
    const vol = volume('default', 'raid1', ['d0', 'd1']);
    const fresh = await assembleVolume(vol, els, { create: true });
    expect(fs.statSync(path.join(dir, 'd0.img')).size).toBe(DATA_OFFSET_BYTES + 8 * MiB);
    expect(fresh.sizeBytes).toBe(8 * MiB);
    expect(fresh.eventCount).toBe(1);
    expect(fresh.elements.map((e) => [e.role, e.state, e.dataSizeBytes])).toEqual([[0, 'active', 8 * MiB], [1, 'active', 8 * MiB]]);
    const sb = await superblock('d1');
    expect(sb).toMatchObject({ arrayUuid: fresh.arrayUuid, volumeName: 'default', layout: 'raid1', role: 1, count: 2, chunkBytes: 65536, clean: true });

    const dirty = await markClean(await assembleVolume(vol, els, { create: true }), false);
    expect(dirty.eventCount).toBe(2);
    expect(await superblock('d0')).toMatchObject({ eventCount: 2, clean: false });
    const again = await assembleVolume(vol, els, { create: false });
    expect(again.arrayUuid).toBe(fresh.arrayUuid);
    expect(again.eventCount).toBe(2);
    expect(again.wasClean).toBe(false); // marked dirty at open and never closed
    expect(fresh.wasClean).toBe(true);
    expect(again.elements.every((e) => e.state === 'active')).toBe(true);
  });

  it('refuses an element of another volume and leaves it untouched', async () => {
    const els = elements(['a0', 'a1', 'b0']);
    await assembleVolume(volume('alpha', 'raid1', ['a0', 'a1']), els, { create: true });
    const before = fs.readFileSync(path.join(dir, 'a1.img')).subarray(0, 4096);
    const err = await refusal(assembleVolume(volume('beta', 'raid1', ['b0', 'a1']), els, { create: true }));
    expect(err.code).toBe('conflict');
    expect(err.message).toMatch(/element a1 belongs to volume "alpha"/);
    expect(fs.readFileSync(path.join(dir, 'a1.img')).subarray(0, 4096)).toEqual(before);
    // b0 was created as a file but got no superblock: nothing was written before the refusal.
    expect('kind' in (await readSuperblockFile(path.join(dir, 'b0.img')))).toBe(true);
  });

  it('marks a lagging mirror leg stale, and keeps it stale', async () => {
    const els = elements(['d0', 'd1']);
    const vol = volume('m', 'raid1', ['d0', 'd1']);
    const fresh = await assembleVolume(vol, els, { create: true });
    const failed: AssembledVolume = { ...fresh, elements: fresh.elements.map((e) => (e.role === 1 ? { ...e, state: 'failed' as const } : e)) };
    await markClean(await markClean(failed, false), true); // d0 reaches 3, d1 stays at 1
    const next = await assembleVolume(vol, els, { create: true });
    expect(next.eventCount).toBe(3);
    expect(next.elements[1]).toMatchObject({ state: 'stale', reason: 'event counter 1 < 3' });
    expect(await superblock('d1')).toMatchObject({ needsRebuild: true });
    await markClean(next, true);
    const later = await assembleVolume(vol, els, { create: true });
    expect(later.elements.map((e) => e.state)).toEqual(['active', 'stale']);
    expect(later.elements[1]?.reason).toBe('marked for rebuild');
  });

  it('treats a blank mirror leg as stale but refuses a blank stripe member', async () => {
    const els = elements(['d0', 'd1', 's0', 's1']);
    await assembleVolume(volume('m', 'raid1', ['d0', 'd1']), els, { create: true });
    await wipeSuperblocks([els.get('d1')!, normalizeElement({ name: 'absent', uri: path.join(dir, 'absent.img') }, 'absent', dir)]);
    const degraded = await assembleVolume(volume('m', 'raid1', ['d0', 'd1']), els, { create: true });
    expect(degraded.elements[1]).toMatchObject({ state: 'stale', reason: expect.stringMatching(/^blank superblock/) });

    await assembleVolume(volume('s', 'raid0', ['s0', 's1']), els, { create: true });
    await wipeSuperblocks([els.get('s1')!]);
    const err = await refusal(assembleVolume(volume('s', 'raid0', ['s0', 's1']), els, { create: true }));
    expect(err.message).toMatch(/volume s \(raid0\) cannot be assembled: element s1: blank superblock/);
  });

  it('recreates a deleted mirror leg as a stale blank element', async () => {
    const els = elements(['d0', 'd1']);
    const vol = volume('m', 'raid1', ['d0', 'd1']);
    await assembleVolume(vol, els, { create: true });
    fs.rmSync(path.join(dir, 'd1.img'));
    const again = await assembleVolume(vol, els, { create: true });
    expect(again.elements.map((e) => e.state)).toEqual(['active', 'stale']);
  });

  it('names a missing file, a remote element, a too-small file and foreign data', async () => {
    const missing = await refusal(assembleVolume(volume('v', 'linear', ['x']), elements(['x'], null), { create: true }));
    expect(missing.code).toBe('not-found');
    expect(missing.message).toBe(`element x: file not found: ${path.join(dir, 'x.img')}`);
    expect(missing.where).toBe(path.join(dir, 'x.img'));

    // Port 1 refuses connections: a new array needs every element, and says which one it could not reach.
    const remote = new Map([['r', normalizeElement({ name: 'r', uri: 'nbd://127.0.0.1:1/e', timeoutMs: 2000 }, 'r', dir)]]);
    const err = await refusal(assembleVolume(volume('v', 'linear', ['r']), remote, { create: true }));
    expect(err.message).toMatch(/^element r: cannot reach nbd:\/\/127\.0\.0\.1:1\/e: /);
    expect(err.code).toBe('io');

    fs.writeFileSync(path.join(dir, 'tiny.img'), Buffer.alloc(DATA_OFFSET_BYTES));
    const tiny = await refusal(assembleVolume(volume('v', 'linear', ['tiny']), elements(['tiny'], null), { create: true }));
    expect(tiny.message).toMatch(/at least 5242880 needed/);

    const junk = Buffer.alloc(DATA_OFFSET_BYTES + MiB);
    junk.write('#!/bin/sh\n', 0);
    fs.writeFileSync(path.join(dir, 'junk.img'), junk);
    const foreign = await refusal(assembleVolume(volume('v', 'linear', ['junk']), elements(['junk'], null), { create: true }));
    expect(foreign.code).toBe('conflict');
    expect(foreign.message).toMatch(/not a onestack superblock; refusing to overwrite it/);
  });

  it('refuses config changes: layout and size', async () => {
    const els = elements(['d0', 'd1']);
    await assembleVolume(volume('m', 'raid1', ['d0', 'd1']), els, { create: true });
    const layout = await refusal(assembleVolume(volume('m', 'raid0', ['d0', 'd1']), els, { create: true }));
    expect(layout.message).toMatch(/element d0 says raid1, 2 elements, 64 KiB chunks; the config says raid0, 2 elements, 64 KiB chunks/);
    const size = await refusal(assembleVolume(volume('m', 'raid1', ['d0', 'd1'], { sizeBytes: 4 * MiB }), els, { create: true }));
    expect(size.message).toMatch(/8388608 bytes on its elements; the config asks for 4194304/);
  });

  it('assembles elements listed in any order by the roles in their superblocks', async () => {
    const els = elements(['o0', 'o1', 'o2', 'o3']);
    const made = await assembleVolume(volume('o', 'raid0', ['o0', 'o1', 'o2', 'o3']), els, { create: true });
    const again = await assembleVolume(volume('o', 'raid0', ['o2', 'o0', 'o3', 'o1']), els, { create: true });
    expect(again.config.elements).toEqual(['o0', 'o1', 'o2', 'o3']);
    expect(again.elements.map((e) => [e.config.name, e.role, e.state])).toEqual(made.elements.map((e) => [e.config.name, e.role, 'active']));
    expect(again.arrayUuid).toBe(made.arrayUuid);
  });

  it('sizes volumes by the layout rule, capped by sizeBytes', async () => {
    fs.writeFileSync(path.join(dir, 'big.img'), '');
    fs.truncateSync(path.join(dir, 'big.img'), DATA_OFFSET_BYTES + 12 * MiB + 4096);
    const els = new Map([...elements(['a', 'b']), ['big', normalizeElement({ name: 'big', uri: 'big.img' }, 'big', dir)]]);
    const striped = await assembleVolume(volume('r0', 'raid0', ['a', 'b', 'big'], { chunkKiB: 1024 }), els, { create: true });
    expect(striped.sizeBytes).toBe(3 * 8 * MiB);
    const els2 = elements(['l0', 'l1']);
    const capped = await assembleVolume(volume('lin', 'linear', ['l0', 'l1'], { sizeBytes: 10 * MiB }), els2, { create: true });
    expect(capped.sizeBytes).toBe(10 * MiB);
    const els3 = elements(['m0', 'm1']);
    const tooBig = await refusal(assembleVolume(volume('mm', 'raid1', ['m0', 'm1'], { sizeBytes: 9 * MiB }), els3, { create: true }));
    expect(tooBig.message).toMatch(/exceeds what its elements hold \(8388608 bytes as raid1\)/);
  });
});

describe('layout rules', () => {
  it('computes capacity per layout', () => {
    const sizes = [8 * MiB, 8 * MiB, 8 * MiB, 9 * MiB];
    expect(layoutCapacityBytes('linear', sizes, 65536)).toBe(33 * MiB);
    expect(layoutCapacityBytes('raid0', sizes, 65536)).toBe(32 * MiB);
    expect(layoutCapacityBytes('raid1', sizes, 65536)).toBe(8 * MiB);
    expect(layoutCapacityBytes('raid10', sizes, 65536)).toBe(16 * MiB);
    expect(layoutCapacityBytes('raid5', sizes, 65536)).toBe(24 * MiB);
    expect(layoutCapacityBytes('raid6', sizes, 65536)).toBe(16 * MiB);
    expect(layoutCapacityBytes('raid0', [MiB + 4096, 2 * MiB], 65536)).toBe(2 * MiB);
  });

  it('knows which losses each layout survives', () => {
    expect(layoutSurvives('raid1', ['stale', 'active'])).toBe(true);
    expect(layoutSurvives('raid1', ['stale', 'failed'])).toBe(false);
    expect(layoutSurvives('raid0', ['active', 'stale'])).toBe(false);
    expect(layoutSurvives('raid10', ['failed', 'active', 'active', 'failed'])).toBe(true);
    expect(layoutSurvives('raid10', ['failed', 'failed', 'active', 'active'])).toBe(false);
    expect(layoutSurvives('raid5', ['active', 'failed', 'active'])).toBe(true);
    expect(layoutSurvives('raid6', ['failed', 'failed', 'active', 'active'])).toBe(true);
    expect(layoutSurvives('raid6', ['failed', 'failed', 'failed', 'active'])).toBe(false);
  });
});
