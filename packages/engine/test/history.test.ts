// History ids (meta/history.ts; docs/durability.md "Which side is newer", rule 6): a new id
// whenever the set of active legs changes, the ids a run wrote remembered by event counter, the
// verdict on a returning leg, and assembly telling apart two legs with the same counter but
// different histories (the second is rebuilt in full). Superblocks without an id read as before.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { ElementConfig, VolumeConfig } from '../src/config/types.js';
import { normalizeElement } from '../src/config/validate.js';
import { assembleVolume, markClean, superblockFor } from '../src/meta/assemble.js';
import { readSuperblockFile, writeSuperblockFile } from '../src/meta/element-io.js';
import { historyAtAssembly, historyFor, historyVerdict, newHistoryId } from '../src/meta/history.js';
import type { Superblock } from '../src/meta/superblock.js';
import type { AssembledVolume } from '../src/meta/types.js';

const MiB = 1024 * 1024;

describe('history ids', () => {
  it('are 16 hex digits, never zero, and differ', () => {
    const ids = new Set(Array.from({ length: 100 }, () => newHistoryId()));
    expect(ids.size).toBe(100);
    for (const id of ids) expect(id).toMatch(/^[0-9a-f]{16}$/);
  });

  it('stay while the same legs are active; a leg lost or back chooses a new one; ids are remembered by counter, at most 64', () => {
    const h1 = historyFor(undefined, ['b', 'a'], 2);
    expect(h1.legs).toEqual(['a', 'b']);
    const h2 = historyFor(h1, ['a', 'b'], 3);
    expect(h2.id).toBe(h1.id);
    const h3 = historyFor(h2, ['a'], 4); // b failed
    expect(h3.id).not.toBe(h1.id);
    const h4 = historyFor(h3, ['a', 'b'], 5); // b back
    expect(h4.id).not.toBe(h3.id);
    expect(h4.byEvent).toEqual([[2, h1.id], [3, h1.id], [4, h3.id], [5, h4.id]]);
    expect(historyVerdict(h4, 3, h1.id)).toBe('same');
    expect(historyVerdict(h4, 4, h1.id)).toBe('other');
    expect(historyVerdict(h4, 9, h1.id)).toBe('unknown');
    expect(historyVerdict(h4, 3, undefined)).toBe('unknown');
    expect(historyVerdict(undefined, 3, h1.id)).toBe('unknown');
    let h = h4;
    for (let c = 6; c < 200; c++) h = historyFor(h, ['a', 'b'], c);
    expect(h.byEvent.length).toBe(64);
    expect(h.byEvent[0]![0]).toBe(136);
  });

  it('at assembly: the reference\'s id for every leg of the array (a run with fewer legs chooses a new one); none on older superblocks', () => {
    expect(historyAtAssembly({ eventCount: 7 }, ['a', 'b'])).toBeUndefined();
    const h = historyAtAssembly({ eventCount: 7, historyId: '00000000000000ab' }, ['b', 'a'])!;
    expect(h).toEqual({ id: '00000000000000ab', legs: ['a', 'b'], byEvent: [[7, '00000000000000ab']] });
    expect(historyFor(h, ['a', 'b'], 8).id).toBe(h.id);
    expect(historyFor(h, ['a'], 8).id).not.toBe(h.id);
  });
});

describe('history ids on the legs', () => {
  let dir: string;
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'onestack-history-'));
  });
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  const els = (): Map<string, ElementConfig> => new Map(['d0', 'd1'].map((name) => [name, normalizeElement({ name, uri: `${name}.img`, createSizeBytes: 8 * MiB }, name, dir)]));
  const vol: VolumeConfig = { name: 'm', layout: 'raid1', elements: ['d0', 'd1'], chunkKiB: 64, order: 'fifo', boot: false };
  const sbOf = async (name: string): Promise<Superblock> => (await readSuperblockFile(path.join(dir, `${name}.img`))) as Superblock;

  it('are written with every superblock, renewed when a leg fails, kept across a clean reopen with every leg', async () => {
    const fresh = await assembleVolume(vol, els(), { create: true });
    const [a, b] = [await sbOf('d0'), await sbOf('d1')];
    expect(a.historyId).toMatch(/^[0-9a-f]{16}$/);
    expect(b.historyId).toBe(a.historyId);
    const opened = await markClean(fresh, false);
    expect((await sbOf('d0')).historyId).toBe(a.historyId);
    const failed: AssembledVolume = { ...opened, elements: opened.elements.map((e) => (e.role === 1 ? { ...e, state: 'failed' as const } : e)) };
    const alone = await markClean(failed, false);
    expect((await sbOf('d0')).historyId).not.toBe(a.historyId);
    expect((await sbOf('d1')).historyId).toBe(a.historyId); // the failed leg keeps the old one
    expect(historyVerdict(alone.history, b.eventCount + 1, a.historyId)).toBe('same'); // d1's pair: from this history
  });

  it('two legs at the same counter with different histories: the second is stale and rebuilt in full', async () => {
    const fresh = await assembleVolume(vol, els(), { create: true });
    const d1 = fresh.elements[1]!;
    // d1 alone took writes elsewhere and reached the same counter in a history of its own.
    await writeSuperblockFile(path.join(dir, 'd1.img'), superblockFor({ ...fresh, history: historyFor(undefined, ['d1'], fresh.eventCount) }, d1, { clean: false, needsRebuild: false }));
    expect((await sbOf('d1')).eventCount).toBe((await sbOf('d0')).eventCount);
    const next = await assembleVolume(vol, els(), { create: true });
    expect(next.elements[0]!.state).toBe('active');
    expect(next.elements[1]).toMatchObject({ state: 'stale', syncedEvents: 0 });
    expect(next.elements[1]!.reason).toMatch(/^history [0-9a-f]{16} differs from [0-9a-f]{16} at event counter 1; needs a full rebuild$/);
    expect(await sbOf('d1')).toMatchObject({ needsRebuild: true, eventCount: 0 });
  });

  it('superblocks without an id (older ones) assemble as before; the first write gives them one', async () => {
    const fresh = await assembleVolume(vol, els(), { create: true });
    const { history: _h, ...old } = fresh;
    for (const e of fresh.elements) await writeSuperblockFile(path.join(dir, `${e.config.name}.img`), superblockFor(old, e, { clean: true, needsRebuild: false }));
    expect((await sbOf('d0')).historyId).toBeUndefined();
    const next = await assembleVolume(vol, els(), { create: true });
    expect(next.elements.map((e) => e.state)).toEqual(['active', 'active']);
    expect(next.history).toBeUndefined();
    await markClean(next, false);
    expect((await sbOf('d0')).historyId).toMatch(/^[0-9a-f]{16}$/);
    expect((await sbOf('d1')).historyId).toBe((await sbOf('d0')).historyId);
  });
});
