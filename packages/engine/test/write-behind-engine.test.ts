// Write-behind legs in an in-process engine (two local files; the remote case is test/write-behind.test.ts):
// config checks, writes reach both legs after a flush, reads never come from the write-behind leg
// while the other is active, status shows the leg's lag, a failed other leg makes writes go to the
// write-behind leg after its queue drained, and a clean stop leaves the legs identical.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Engine } from '../dist/index.js';
import { normalizeVolume } from '../src/config/validate.js';
import { DATA_OFFSET_BYTES } from '../src/meta/types.js';
import { equalBytes, MiB, pattern } from './datapath-harness.js';
import { readFileRange } from './helpers.js';

const LEG_BYTES = 16 * MiB;
const quiet = (): void => undefined;

describe('writeBehind config', () => {
  const names = new Set(['a', 'b', 'c']);
  const vol = (extra: Record<string, unknown>, layout = 'raid1', elements = ['a', 'b']): unknown => ({ name: 'm', layout, elements, ...extra });
  it('accepts a raid1 leg with defaults, and a raid10 leg', () => {
    expect(normalizeVolume(vol({ writeBehind: { element: 'b' } }), 'volumes[0]', names).writeBehind).toEqual({ element: 'b', maxLagMiB: 64, drainOnFlush: true });
    expect(normalizeVolume(vol({ writeBehind: { element: 'c', maxLagMiB: 8, drainOnFlush: false } }, 'raid10', ['a', 'b', 'c', 'd']), 'volumes[0]', new Set([...names, 'd'])).writeBehind)
      .toEqual({ element: 'c', maxLagMiB: 8, drainOnFlush: false });
  });
  it('accepts a write-behind leg on an integrity volume (its checksums follow its data)', () => {
    expect(normalizeVolume(vol({ writeBehind: { element: 'b', maxLagMiB: 4 }, integrity: true }), 'volumes[0]', names)).toMatchObject({ integrity: true, writeBehind: { element: 'b', maxLagMiB: 4 } });
  });
  it.each([
    [vol({ writeBehind: { element: 'c' } }), /not a leg of this volume/],
    [vol({ writeBehind: { element: 'b', maxLagMiB: 0 } }), /maxLagMiB/],
    [vol({ writeBehind: { element: 'b', maxLagMiB: 4096 } }), /maxLagMiB/],
    [vol({ writeBehind: { element: 'b', lag: 1 } }), /lag/],
    [vol({ writeBehind: { maxLagMiB: 4 } }), /missing/],
    [vol({ writeBehind: { element: 'b' } }, 'raid0'), /raid1/],
  ])('refuses %j', (raw, why) => {
    expect(() => normalizeVolume(raw, 'volumes[0]', new Set([...names, 'd']))).toThrow(why);
  });
});

describe('write-behind leg in an engine', () => {
  let dir: string;
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'onestack-wb-'));
  });
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  function config(): unknown {
    for (const f of ['a', 'b']) {
      const p = path.join(dir, `${f}.img`);
      fs.writeFileSync(p, '');
      fs.truncateSync(p, DATA_OFFSET_BYTES + LEG_BYTES);
    }
    return {
      dataDir: path.join(dir, 'data'), nbd: { listen: '127.0.0.1:0' }, pools: { middle: 1, bottom: 1 },
      elements: ['a', 'b'].map((f) => ({ name: f, uri: `file:${path.join(dir, `${f}.img`)}` })),
      volumes: [{ name: 'm', layout: 'raid1', elements: ['a', 'b'], bitmapRegionKiB: 64, writeBehind: { element: 'b', maxLagMiB: 2, drainOnFlush: true } }],
    };
  }

  const leg = (f: string, off: number, len: number): Uint8Array => readFileRange(path.join(dir, `${f}.img`), DATA_OFFSET_BYTES + off, len);

  it('writes reach both legs, reads avoid the write-behind leg, status shows it; a failed local leg hands over', async () => {
    const engine = await Engine.open({ config: config(), log: quiet });
    try {
      const v = engine.volume('m');
      const data = pattern(4 * MiB, 7);
      await Promise.all(Array.from({ length: 16 }, (_, i) => v.write(i * 256 * 1024, data.subarray(i * 256 * 1024, (i + 1) * 256 * 1024))));
      const wbStatus = (): Record<string, number> | undefined => (engine.status().volumes[0]!.elements.find((e) => e.name === 'b') as { writeBehind?: Record<string, number> }).writeBehind;
      expect(wbStatus()).toMatchObject({ maxLagBytes: 2 * MiB });
      expect(wbStatus()!.lagBytes).toBeLessThanOrEqual(2 * MiB);
      await v.flush();
      expect(wbStatus()).toMatchObject({ lagBytes: 0, writesQueued: 0, droppedWrites: 0 });
      expect(equalBytes(leg('a', 0, 4 * MiB), data)).toBe(true);
      expect(equalBytes(leg('b', 0, 4 * MiB), data)).toBe(true);
      const readsBefore = engine.status().elements.find((e) => e.name === 'b')!.stats!.readOps;
      for (let i = 0; i < 8; i++) expect(equalBytes(await v.read(i * 512 * 1024, 4096), data.subarray(i * 512 * 1024, i * 512 * 1024 + 4096))).toBe(true);
      expect(engine.status().elements.find((e) => e.name === 'b')!.stats!.readOps).toBe(readsBefore);
      // Only the write-behind leg left: writes and reads go to it, in order.
      await engine.failElement('a');
      const more = pattern(64 * 1024, 9);
      await v.write(0, more);
      expect(equalBytes(await v.read(0, 64 * 1024), more)).toBe(true);
      expect(equalBytes(leg('b', 0, 64 * 1024), more)).toBe(true);
    } finally {
      await engine.close();
    }
  }, 60_000);

  it('a clean stop drains the lag: the legs are identical, and reopen finds nothing to resync', async () => {
    const cfg = config();
    let engine = await Engine.open({ config: cfg, log: quiet });
    const data = pattern(2 * MiB, 3);
    await Promise.all(Array.from({ length: 64 }, (_, i) => engine.volume('m').write(i * 32 * 1024, data.subarray(i * 32 * 1024, (i + 1) * 32 * 1024))));
    await engine.close();
    expect(equalBytes(leg('a', 0, 2 * MiB), data)).toBe(true);
    expect(equalBytes(leg('b', 0, 2 * MiB), data)).toBe(true);
    engine = await Engine.open({ config: cfg, log: quiet });
    try {
      expect(engine.status().volumes[0]).toMatchObject({ state: 'optimal', rebuild: null });
    } finally {
      await engine.close();
    }
  }, 60_000);

  it('raid10: the write-behind leg gets its pair\'s chunks after the ack, serves no read while its partner can; flush makes the pair identical', async () => {
    const files = ['p', 'q', 'r', 's'];
    for (const f of files) {
      const p = path.join(dir, `${f}.img`);
      fs.writeFileSync(p, '');
      fs.truncateSync(p, DATA_OFFSET_BYTES + LEG_BYTES);
    }
    const cfg = {
      dataDir: path.join(dir, 'data'), nbd: { listen: '127.0.0.1:0' }, pools: { middle: 0, bottom: 1 },
      elements: files.map((f) => ({ name: f, uri: `file:${path.join(dir, `${f}.img`)}` })),
      volumes: [{ name: 't', layout: 'raid10', elements: files, chunkKiB: 64, bitmapRegionKiB: 64, writeBehind: { element: 's', maxLagMiB: 1, drainOnFlush: true } }],
    };
    const engine = await Engine.open({ config: cfg, log: quiet });
    try {
      const v = engine.volume('t');
      const data = pattern(4 * MiB, 11);
      // Unaligned pieces too: 96 KiB writes straddle the 64 KiB chunks of both pairs.
      await Promise.all(Array.from({ length: Math.floor((4 * MiB) / (96 * 1024)) }, (_, i) => v.write(i * 96 * 1024, data.subarray(i * 96 * 1024, (i + 1) * 96 * 1024))));
      const tail = Math.floor((4 * MiB) / (96 * 1024)) * 96 * 1024;
      await v.write(tail, data.subarray(tail));
      const wb = (engine.status().volumes[0]!.elements.find((e) => e.name === 's') as { writeBehind?: Record<string, number> }).writeBehind;
      expect(wb).toMatchObject({ maxLagBytes: 1 * MiB });
      await v.flush();
      // Pair (r, s) holds chunks 1, 3, 5, ... at element offsets 0, 64k, ...: the legs of each pair agree.
      const legBytes = 2 * MiB;
      expect(equalBytes(leg('r', 0, legBytes), leg('s', 0, legBytes))).toBe(true);
      expect(equalBytes(leg('p', 0, legBytes), leg('q', 0, legBytes))).toBe(true);
      expect(equalBytes(leg('s', 0, 64 * 1024), data.subarray(64 * 1024, 128 * 1024))).toBe(true);
      const readsBefore = engine.status().elements.find((e) => e.name === 's')!.stats!.readOps;
      expect(equalBytes(await v.read(0, 4 * MiB), data)).toBe(true);
      expect(engine.status().elements.find((e) => e.name === 's')!.stats!.readOps).toBe(readsBefore);
      // Its partner gone: the write-behind leg takes its pair's writes and reads directly.
      await engine.failElement('r');
      const more = pattern(128 * 1024, 5);
      await v.write(0, more);
      expect(equalBytes(await v.read(0, 128 * 1024), more)).toBe(true);
      expect(equalBytes(leg('s', 0, 64 * 1024), more.subarray(64 * 1024))).toBe(true);
    } finally {
      await engine.close();
    }
  }, 60_000);
});
