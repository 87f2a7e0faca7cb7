// Reshape superblocks on real element files (meta/reshape-meta.ts) and their assembly
// (meta/reshape-assemble.ts): the start sequence, position and backup writes cut short anywhere,
// the finish, every crash window of the start (rolled forward with the new config, back with the
// old), and the disagreements that must be clear errors. Then the state file's `reshaped` record.
import { randomUUID } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { ElementConfig, EngineConfig, Layout, VolumeConfig } from '../src/config/types.js';
import { embeddedDefaultConfig } from '../src/config/load.js';
import { normalizeElement, normalizeVolume } from '../src/config/validate.js';
import { assembleVolume, markClean } from '../src/meta/assemble.js';
import { createSparseFile } from '../src/meta/element-io.js';
import { isLeftoverOfStart, reconcileReshape } from '../src/meta/reshape-assemble.js';
import { BACKUP_AREA_BYTES, backupExtents, copyGeometry, dataChunksPerRow, geometryCapacity, nextStep, stepWriteEndBytes, type ReshapeGeometry } from '../src/meta/reshape-plan.js';
import { startReshapeSuperblocks, withReshapeRecord, writeReshapeRecord } from '../src/meta/reshape-meta.js';
import type { Superblock } from '../src/meta/superblock.js';
import { DATA_OFFSET_BYTES, type AssembledElement, type AssembledVolume, type ReshapeRecord } from '../src/meta/types.js';
import type { Registry } from '../src/state/registry.js';
import { runtimeState } from '../src/state/runtime-state.js';
import { finishAndCheck, geo, initialImage, locate, writeNew } from './reshape-model.js';
import { mergeState, readStateFile, writeStateFile } from '../src/state/state-file.js';
import { refusal, superblockIn } from './meta-helpers.js';

const MiB = 1024 * 1024;
const C = 64 * 1024;
let dir: string;
beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'onestack-reshape-meta-'));
});
afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

const NAMES = ['e0', 'e1', 'e2', 'e3', 'e4'];
function elements(): Map<string, ElementConfig> {
  return new Map(NAMES.map((name) => [name, normalizeElement({ name, uri: `${name}.img`, createSizeBytes: 8 * MiB }, name, dir)]));
}
function volume(layout: Layout, names: readonly string[]): VolumeConfig {
  return { name: 'r', layout, elements: names, chunkKiB: 64, order: 'fifo', boot: false };
}
function sb(name: string): Promise<Superblock> {
  return superblockIn(dir, name);
}
/** The same volume with some elements out (their superblocks are not written: a crash before them). */
function without(vol: AssembledVolume, names: readonly string[]): AssembledVolume {
  return { ...vol, elements: vol.elements.map((e) => (names.includes(e.config.name) ? { ...e, state: 'failed' as const } : e)) };
}

interface Rig { readonly els: Map<string, ElementConfig>; readonly old: AssembledVolume; readonly next: AssembledVolume; readonly record: ReshapeRecord; readonly oldConfig: VolumeConfig; readonly newConfig: VolumeConfig }

/** A layout over `n0` elements, about to grow to `n1` (possibly another layout): the volumes before and after the start. */
async function rig(layout: Layout, n0: number, toLayout: Layout, n1: number): Promise<Rig> {
  const els = elements();
  const oldConfig = volume(layout, NAMES.slice(0, n0));
  const old = await markClean(await assembleVolume(oldConfig, els, { create: true }), false);
  const newConfig = volume(toLayout, NAMES.slice(0, n1));
  const added: AssembledElement[] = [];
  for (let role = n0; role < n1; role++) {
    const config = els.get(NAMES[role]!)!;
    await createSparseFile(path.join(dir, `${config.name}.img`), DATA_OFFSET_BYTES + 8 * MiB);
    added.push({ config, role, state: 'active', dataSizeBytes: old.elements[0]!.dataSizeBytes, path: path.join(dir, `${config.name}.img`), elementUuid: randomUUID() });
  }
  const d1 = toLayout === 'raid0' ? n1 : toLayout === 'raid5' ? n1 - 1 : n1 - 2;
  const record: ReshapeRecord = { fromLayout: layout, fromCount: n0, fromChunkBytes: C, fromSizeBytes: old.sizeBytes, toSizeBytes: d1 * 8 * MiB, positionBytes: 0, startedMs: 1_800_000_000_000 };
  return { els, old, record, oldConfig, newConfig, next: { ...old, config: newConfig, elements: [...old.elements, ...added] } };
}

describe('reshape superblocks: start, steps, finish', () => {
  it('the start writes the new elements first, then the old; assembly then sees the reshape at C0', async () => {
    const r = await rig('raid5', 4, 'raid5', 5);
    expect(await startReshapeSuperblocks(r.next, r.record, ['e4'])).toEqual([]);
    for (const name of NAMES) expect(await sb(name)).toMatchObject({ layout: 'raid5', count: 5, volumeSizeBytes: 24 * MiB, eventCount: r.old.eventCount, reshape: r.record });
    expect((await sb('e4')).role).toBe(4);
    const vol = await assembleVolume(r.newConfig, r.els, { create: false });
    expect(vol.reshape).toEqual(r.record);
    expect(vol.sizeBytes).toBe(24 * MiB);
    expect(vol.elements.map((e) => e.state)).toEqual(['active', 'active', 'active', 'active', 'active']);
    // markClean (open, close) keeps the record.
    await markClean(vol, true);
    expect((await sb('e2')).reshape).toEqual(r.record);
    await expect(startReshapeSuperblocks(r.next, { ...r.record, positionBytes: C }, ['e4'])).rejects.toThrow(/position 0/);
    await expect(startReshapeSuperblocks(r.next, r.record, ['nope'])).rejects.toThrow(/not in volume/);
  });

  it('position and backup writes cut short: the largest position wins, with a backup only if one starts at it', async () => {
    const r = await rig('raid5', 4, 'raid5', 5);
    await startReshapeSuperblocks(r.next, r.record, ['e4']);
    const p = 1 * MiB;
    const withBackup: ReshapeRecord = { ...r.record, positionBytes: p, backup: { startBytes: p, lengthBytes: 3 * C, crc: 0x1234 } };
    expect(await writeReshapeRecord(r.next, { ...r.record, positionBytes: p })).toEqual([]);
    // The backup named on two superblocks only (a crash while naming it): it is complete, it counts.
    await writeReshapeRecord(without(r.next, ['e2', 'e3', 'e4']), withBackup);
    expect((await assembleVolume(r.newConfig, r.els, { create: false })).reshape).toEqual(withBackup);
    // The step's position written on two superblocks only: the larger position, without the backup.
    const e = p + 4 * C;
    await writeReshapeRecord(without(r.next, ['e0', 'e1', 'e2']), { ...r.record, positionBytes: e });
    expect((await assembleVolume(r.newConfig, r.els, { create: false })).reshape).toEqual({ ...r.record, positionBytes: e });
    // A backup that does not start at the position is not the step's.
    await writeReshapeRecord(without(r.next, ['e4']), { ...r.record, positionBytes: e, backup: { startBytes: e + 4096, lengthBytes: 4096, crc: 7 } });
    await writeReshapeRecord(without(r.next, ['e0', 'e1', 'e2', 'e3']), { ...r.record, positionBytes: e });
    const vol = await assembleVolume(r.newConfig, r.els, { create: false });
    expect(vol.reshape).toEqual({ ...r.record, positionBytes: e });
  });

  it('a write that fails is reported and the others are written', async () => {
    const r = await rig('raid5', 4, 'raid5', 5);
    await startReshapeSuperblocks(r.next, r.record, ['e4']);
    // e2's file replaced by a directory: its write fails (as root too), the others go on.
    fs.rmSync(path.join(dir, 'e2.img'));
    fs.mkdirSync(path.join(dir, 'e2.img'));
    const failed = await writeReshapeRecord(r.next, { ...r.record, positionBytes: C * 4 });
    expect(failed.map((f) => [f.element, f.role])).toEqual([['e2', 2]]);
    expect(failed[0]!.message).toMatch(/EISDIR|directory/i);
    expect((await sb('e3')).reshape?.positionBytes).toBe(C * 4);
    expect((await sb('e4')).reshape?.positionBytes).toBe(C * 4);
  });

  it('the finish: no record, size C1, event counter + 1; a leg that missed it keeps an old record that means nothing', async () => {
    const r = await rig('raid5', 4, 'raid5', 5);
    await startReshapeSuperblocks(r.next, r.record, ['e4']);
    const running = withReshapeRecord(r.next, { ...r.record, positionBytes: r.record.fromSizeBytes });
    await writeReshapeRecord(running, running.reshape!);
    const done = withReshapeRecord(running, null, { finalSizeBytes: 32 * MiB, bumpEvents: true });
    expect(done).toMatchObject({ sizeBytes: 32 * MiB, eventCount: r.old.eventCount + 1 });
    expect(done).not.toHaveProperty('reshape');
    expect(await writeReshapeRecord(without(running, ['e3']), null, { finalSizeBytes: 32 * MiB, bumpEvents: true })).toEqual([]);
    const e0 = await sb('e0');
    expect(e0).toMatchObject({ volumeSizeBytes: 32 * MiB, eventCount: r.old.eventCount + 1, count: 5 });
    expect(e0).not.toHaveProperty('reshape');
    expect((await sb('e3')).reshape).toBeDefined();
    const vol = await assembleVolume(r.newConfig, r.els, { create: false });
    expect(vol.reshape).toBeUndefined();
    expect(vol.sizeBytes).toBe(32 * MiB);
    expect(vol.elements[3]).toMatchObject({ state: 'stale', reason: expect.stringMatching(/event counter/) });
  });
});

describe('reshape assembly: crash windows of the finish', () => {
  it('final superblocks written on some elements only: the reshape is still at C0 (the finish runs again), size C0', async () => {
    const r = await rig('raid5', 4, 'raid5', 5);
    await startReshapeSuperblocks(r.next, r.record, ['e4']);
    const atEnd: ReshapeRecord = { ...r.record, positionBytes: r.record.fromSizeBytes };
    const running = withReshapeRecord(r.next, atEnd);
    await writeReshapeRecord(running, atEnd);
    await writeReshapeRecord(without(running, ['e3', 'e4']), null, { finalSizeBytes: r.record.toSizeBytes });
    expect(await sb('e0')).toMatchObject({ volumeSizeBytes: r.record.toSizeBytes });
    const vol = await assembleVolume(r.newConfig, r.els, { create: false });
    expect(vol.reshape).toEqual(atEnd);
    expect(vol.sizeBytes).toBe(r.record.fromSizeBytes);
    expect(vol.elements.every((e) => e.state === 'active')).toBe(true);
  });

  it('linear + elements through a record: rolled back with the old config, resumed with the new, C0 until the final write is complete', async () => {
    const r = await rig('linear', 2, 'linear', 3);
    const record: ReshapeRecord = { ...r.record, toSizeBytes: 3 * 8 * MiB };
    expect(await startReshapeSuperblocks(r.next, record, ['e2'])).toEqual([]);
    const back = await assembleVolume(r.oldConfig, r.els, { create: false });
    expect(back.reshape).toBeUndefined();
    expect(back.sizeBytes).toBe(16 * MiB);
    await startReshapeSuperblocks(r.next, record, ['e2']);
    expect((await assembleVolume(r.newConfig, r.els, { create: false })).reshape).toEqual(record);
    await writeReshapeRecord(without(r.next, ['e1']), null, { finalSizeBytes: 24 * MiB, bumpEvents: false });
    const cut = await assembleVolume(r.newConfig, r.els, { create: false });
    expect([cut.reshape, cut.sizeBytes]).toEqual([record, 16 * MiB]);
    await writeReshapeRecord(r.next, null, { finalSizeBytes: 24 * MiB, bumpEvents: true });
    const done = await assembleVolume(r.newConfig, r.els, { create: false });
    expect([done.reshape, done.sizeBytes]).toEqual([undefined, 24 * MiB]);
  });
});

describe('reshape assembly: crash windows of the start, and disagreements', () => {
  it('new config, some old elements not reached yet, nothing moved: they count as carrying the record', async () => {
    const r = await rig('raid5', 4, 'raid5', 5);
    await writeReshapeRecord(without(r.next, ['e1', 'e2', 'e3']), r.record); // e4, then e0, written
    expect((await sb('e1')).reshape).toBeUndefined();
    const vol = await assembleVolume(r.newConfig, r.els, { create: false });
    expect(vol.reshape).toEqual(r.record);
    expect(vol.elements.every((e) => e.state === 'active')).toBe(true);
    await markClean(vol, false);
    expect(await sb('e1')).toMatchObject({ count: 5, reshape: r.record });
  });

  it('old config (the state was not saved), nothing moved: the start is rolled back', async () => {
    const r = await rig('raid1', 2, 'raid5', 3);
    await writeReshapeRecord(without(r.next, ['e1']), r.record); // e2, then e0, written
    const vol = await assembleVolume(r.oldConfig, r.els, { create: false });
    expect(vol.reshape).toBeUndefined();
    expect(vol.sizeBytes).toBe(8 * MiB);
    expect(vol.elements.map((e) => e.state)).toEqual(['active', 'active']);
    await markClean(vol, false);
    const e0 = await sb('e0');
    expect(e0).toMatchObject({ layout: 'raid1', count: 2 });
    expect(e0).not.toHaveProperty('reshape');
    // The new element keeps the abandoned start's superblock: recognisable, so a new reshape may take it.
    expect(isLeftoverOfStart(await sb('e2'), vol.arrayUuid)).toBe(true);
    expect(isLeftoverOfStart(e0, vol.arrayUuid)).toBe(false);
    expect(isLeftoverOfStart(await sb('e2'), randomUUID())).toBe(false);
  });

  it('data moved: an old element without the record missed the reshape (full rebuild); raid0 cannot assemble', async () => {
    const r = await rig('raid5', 4, 'raid5', 5);
    await writeReshapeRecord(without(r.next, ['e3']), { ...r.record, positionBytes: 4 * C });
    const vol = await assembleVolume(r.newConfig, r.els, { create: false });
    expect(vol.reshape?.positionBytes).toBe(4 * C);
    expect(vol.elements[3]).toMatchObject({ state: 'stale', syncedEvents: 0 });
    expect(await sb('e3')).toMatchObject({ needsRebuild: true, eventCount: 0, count: 5, reshape: { positionBytes: 4 * C } });

    fs.rmSync(dir, { recursive: true, force: true });
    fs.mkdirSync(dir);
    const z = await rig('raid0', 2, 'raid0', 3);
    await writeReshapeRecord(without(z.next, ['e1']), { ...z.record, positionBytes: 0, backup: { startBytes: 0, lengthBytes: 2 * C, crc: 1 } });
    expect((await refusal(assembleVolume(z.newConfig, z.els, { create: false }))).message).toMatch(/cannot be assembled.*e1/);
  });

  it('a config that disagrees with the record is a clear error', async () => {
    const r = await rig('raid5', 4, 'raid5', 5);
    await startReshapeSuperblocks(r.next, r.record, ['e4']);
    const layout = await refusal(assembleVolume(volume('raid6', NAMES), r.els, { create: false }));
    expect(layout.message).toMatch(/is being reshaped from raid5 over 4 elements.* to raid5 over 5 elements.*the config says raid6 over 5/);
    expect(layout.hint).toMatch(/state file/);
    // The old config once data moved (a backup at 0 already means the first rows may be overwritten).
    await writeReshapeRecord(r.next, { ...r.record, backup: { startBytes: 0, lengthBytes: 3 * C, crc: 9 } });
    expect((await refusal(assembleVolume(r.oldConfig, r.els, { create: false }))).message).toMatch(/is being reshaped.*the config says raid5 over 4/);
    // Superblocks of two different reshapes.
    await writeReshapeRecord(without(r.next, ['e0']), { ...r.record, startedMs: 5 });
    expect((await refusal(assembleVolume(r.newConfig, r.els, { create: false }))).message).toMatch(/disagree about the reshape/);
  });
});

describe('state file: reshaped config-file volumes', () => {
  const names = ['a', 'b', 'c', 'd'];
  function configWith(layout: string, elements: string[]): EngineConfig {
    const base = embeddedDefaultConfig(dir);
    return { ...base, elements: names.map((n) => normalizeElement({ name: n, uri: `file:/x/${n}.img` }, n, dir)),
      volumes: [normalizeVolume({ name: 'm', layout, elements }, 'm', new Set(names))] };
  }
  const record = { volume: 'm', configLayout: 'raid1', configElements: ['a', 'b'], layout: 'raid5', elements: ['a', 'b', 'c'] };

  it('runtimeState records a reshape; it survives a restart while the config is as it was', () => {
    const base = configWith('raid1', ['a', 'b']);
    const now = { ...base.volumes[0]!, layout: 'raid5' as const, elements: ['a', 'b', 'c'] };
    const registry = { elements: new Map(), volumes: new Map([['m', { runtime: false, assembled: { config: now } }]]) } as unknown as Registry;
    const state = runtimeState(registry, base);
    expect(state.reshaped).toEqual([record]);
    expect(state.members).toEqual([]);
    expect(state.replaced).toEqual([]);
    writeStateFile(dir, state);
    const read = readStateFile(dir);
    expect(read.reshaped).toEqual([record]);
    const warnings: string[] = [];
    const merged = mergeState(base, read, (m) => void warnings.push(m));
    expect(merged.config.volumes[0]).toMatchObject({ layout: 'raid5', elements: ['a', 'b', 'c'] });
    expect(merged.runtime.reshaped).toEqual([record]);
    expect(warnings).toEqual([]);
    // A raid5 growing 3 → 4 is a reshape too (not a `members` change).
    const grown = { ...now, elements: ['a', 'b', 'c', 'd'] };
    const r2 = runtimeState({ elements: new Map(), volumes: new Map([['m', { runtime: false, assembled: { config: grown } }]]) } as unknown as Registry, configWith('raid5', ['a', 'b', 'c']));
    expect(r2.reshaped).toEqual([{ volume: 'm', configLayout: 'raid5', configElements: ['a', 'b', 'c'], layout: 'raid5', elements: ['a', 'b', 'c', 'd'] }]);
    expect(r2.members).toEqual([]);
  });

  it('a config that caught up is silent; any other config wins with a warning; a damaged record is a clear error', () => {
    writeStateFile(dir, { elements: [], volumes: [], reshaped: [record] });
    const warnings: string[] = [];
    const warn = (m: string): void => void warnings.push(m);
    expect(mergeState(configWith('raid5', ['c', 'b', 'a']), readStateFile(dir), warn).config.volumes[0]).toMatchObject({ layout: 'raid5', elements: ['c', 'b', 'a'] });
    expect(warnings).toEqual([]);
    const other = mergeState(configWith('raid1', ['a', 'd']), readStateFile(dir), warn);
    expect(other.config.volumes[0]).toMatchObject({ layout: 'raid1', elements: ['a', 'd'] });
    expect(other.runtime.reshaped).toEqual([]);
    expect(warnings).toEqual(['volume m: run-time reshape to raid5 over a, b, c ignored: the config says raid1 over a, d now']);
    fs.writeFileSync(path.join(dir, 'onestack-state.json'), JSON.stringify({ version: 1, elements: [], volumes: [], reshaped: [{ ...record, layout: 'raid7' }] }));
    expect(() => readStateFile(dir)).toThrow(/reshaped: layout must be one of/);
  });
});

describe('reshape crash model: kill -9 at any write, assemble, resume', () => {
  // The job's writes as the contract orders them (backup cells, then each superblock naming it; the
  // new rows chunk by chunk; then each superblock's position), over the cell model of
  // reshape-model.ts. A crash before any one write, assembly by reconcileReshape, then the resumed
  // job: every byte it reads must be the original one, and the final image the new layout.
  class Crash extends Error {}
  const ARRAY = '00000000-0000-4000-8000-000000000001';
  interface Disk { readonly cells: Int32Array[]; readonly backup: Map<number, number>; readonly records: ReshapeRecord[] }
  interface Case { readonly asIs: ReshapeGeometry; readonly to: ReshapeGeometry; readonly c0: number; readonly stepBytesMax: number }

  const sbOf = (k: Case, role: number, record: ReshapeRecord): Superblock => ({
    version: 1, arrayUuid: ARRAY, elementUuid: ARRAY, volumeName: 'm', layout: k.to.layout, chunkBytes: k.to.chunkBytes, role, count: k.to.count,
    dataOffsetBytes: DATA_OFFSET_BYTES, dataSizeBytes: k.to.dataSizeBytes, volumeSizeBytes: k.c0, eventCount: 9, clean: false, needsRebuild: false,
    createdMs: 1, bitmapOffsetBytes: 0, bitmapSizeBytes: 0, reshape: record,
  });
  const configOf = (k: Case): VolumeConfig => ({ name: 'm', layout: k.to.layout, elements: NAMES.concat(['e5', 'e6']).slice(0, k.to.count), chunkKiB: k.to.chunkBytes / 1024, order: 'fifo', boot: false });

  function job(k: Case, disk: Disk, start: ReshapeRecord, tick: () => void): void {
    const from = { ...copyGeometry(k.asIs, k.to), sizeBytes: k.c0 };
    let record = start;
    const saveAll = (r: ReshapeRecord): void => disk.records.forEach((_, role) => { tick(); disk.records[role] = r; });
    while (record.positionBytes < k.c0) {
      const p = record.positionBytes;
      const s = nextStep(from, k.to, p, k.stepBytesMax);
      const data = new Int32Array(s.endBytes - p);
      const resumed = record.backup?.startBytes === p ? record.backup : undefined;
      if (resumed !== undefined) for (const x of backupExtents(k.to, resumed.lengthBytes)) for (let i = 0; i < x.lengthBytes; i++) data[x.bufferOffsetBytes + i] = disk.backup.get(x.role * BACKUP_AREA_BYTES + i)!;
      for (let i = resumed?.lengthBytes ?? 0; i < data.length; i++) { const at = locate(from, p + i); data[i] = disk.cells[at.role]![at.offset]!; }
      data.forEach((v, i) => { if (v !== p + i + 1) throw new Error(`step at ${p}${resumed !== undefined ? ' (resumed from its backup)' : ''} read ${v} for byte ${p + i}`); });
      if (s.backup !== null && resumed === undefined) {
        const length = s.backup.endBytes - p;
        for (const x of backupExtents(k.to, length)) { tick(); for (let i = 0; i < x.lengthBytes; i++) disk.backup.set(x.role * BACKUP_AREA_BYTES + i, data[x.bufferOffsetBytes + i]!); }
        record = { ...record, backup: { startBytes: p, lengthBytes: length, crc: 0 } };
        saveAll(record);
      }
      const writeEnd = stepWriteEndBytes(k.to, s.endBytes);
      for (let x = p; x < writeEnd; x += k.to.chunkBytes) { tick(); writeNew(k.to, disk.cells, x, Math.min(writeEnd, x + k.to.chunkBytes), (y) => (y < k.c0 ? data[y - p]! : 0)); }
      const { backup: _done, ...next } = record;
      record = { ...next, positionBytes: s.endBytes };
      saveAll(record);
    }
  }

  /** Runs with crashes before write number crashes[0], then (after reassembly) crashes[1], ...; returns whether any crash happened. */
  function run(k: Case, crashes: readonly number[]): boolean {
    const start: ReshapeRecord = { fromLayout: k.asIs.layout, fromCount: k.asIs.count, fromChunkBytes: k.to.chunkBytes, fromSizeBytes: k.c0, toSizeBytes: geometryCapacity(k.to), positionBytes: 0, startedMs: 1 };
    const disk: Disk = { cells: initialImage(k.asIs, k.to, k.c0), backup: new Map(), records: new Array<ReshapeRecord>(k.to.count).fill(start) };
    let record = start;
    let crashed = false;
    for (const at of [...crashes, -1]) {
      let budget = at;
      try {
        job(k, disk, record, () => { if (budget-- === 0) throw new Crash(); });
        break;
      } catch (err) {
        if (!(err instanceof Crash)) throw err;
        crashed = true;
        const sbs = disk.records.map((r, role) => sbOf(k, role, r));
        const assembled = reconcileReshape(configOf(k), sbs, sbs[0]!);
        record = assembled.record!;
        expect(record.positionBytes).toBe(Math.max(...disk.records.map((r) => r.positionBytes)));
      }
    }
    finishAndCheck(k.to, disk.cells, k.c0);
    return crashed;
  }

  it('every crash point of every step, and pairs of crashes, end in the new layout of the original data', () => {
    const c = 4;
    const pairs: Array<[Layout, number, Layout, number]> = [['raid5', 4, 'raid5', 5], ['raid5', 3, 'raid6', 4], ['raid1', 2, 'raid5', 3], ['raid0', 2, 'raid0', 3], ['raid6', 4, 'raid6', 6], ['raid5', 3, 'raid5', 6],
      ['raid10', 4, 'raid10', 6], ['raid1', 2, 'raid10', 4]];
    let runs = 0;
    for (const [a, n, b, m] of pairs) {
      const asIs = geo(a, n, c, 11 * c);
      const to = geo(b, m, c, 11 * c);
      const cap = geometryCapacity(copyGeometry(asIs, to));
      for (const c0 of [cap, cap - 3]) {
        const k: Case = { asIs, to, c0, stepBytesMax: 2 * dataChunksPerRow(b, m) * c };
        for (let at = 0; run(k, [at]); at++) {
          runs++;
          if (at % 5 === 0) { run(k, [at, at]); run(k, [at, 3 * at + 1]); runs += 2; }
        }
      }
    }
    expect(runs).toBeGreaterThan(1000);
  });
});
