// Resync after an unclean stop: a child process opens the engine, writes a few regions and exits
// without closing (superblocks stay dirty, the bitmap keeps those regions' bits). We then make
// the legs differ inside those regions (a torn mirror write), reopen, and check that only the
// dirty regions are copied (progress totals), from the reference leg, and the legs end identical.
import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Engine } from '../dist/index.js';
import { readSuperblockFile } from '../dist/meta/element-io.js';
import { DATA_OFFSET_BYTES } from '../src/meta/types.js';
import { equalBytes, KiB, MiB, pattern } from './datapath-harness.js';
import { readFileRange } from './helpers.js';

const LEG_BYTES = 16 * MiB;
const REGION = 64 * KiB;
const quiet = (): void => undefined;
const DIST_INDEX = fileURLToPath(new URL('../dist/index.js', import.meta.url));

let dir: string;
beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'onestack-resync-'));
});
afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

function config(): unknown {
  const files = ['a', 'b', 'c', 'd', 'e', 'f'];
  for (const f of files) {
    const p = path.join(dir, `${f}.img`);
    if (!fs.existsSync(p)) {
      fs.writeFileSync(p, '');
      fs.truncateSync(p, DATA_OFFSET_BYTES + LEG_BYTES);
    }
  }
  return {
    dataDir: path.join(dir, 'data'), nbd: { listen: '127.0.0.1:0' }, pools: { middle: 0, bottom: 1 },
    elements: files.map((f) => ({ name: f, uri: `file:${path.join(dir, `${f}.img`)}` })),
    volumes: [{ name: 'm', layout: 'raid1', elements: ['a', 'b'], bitmapRegionKiB: 64 }, { name: 't', layout: 'raid10', elements: ['c', 'd', 'e', 'f'], chunkKiB: 64, bitmapRegionKiB: 64 }],
  };
}

/** Opens the engine in a child process, writes `regions` of both volumes, exits without close(). */
function crashAfterWrites(regions: readonly number[]): Promise<void> {
  const code = `
    import { Engine } from ${JSON.stringify(DIST_INDEX)};
    const engine = await Engine.open({ config: ${JSON.stringify(config())}, log: () => {} });
    for (const name of ['m', 't']) {
      for (const r of ${JSON.stringify(regions)}) await engine.volume(name).write(r * ${REGION} + 512, new Uint8Array(4096).fill(r + 1), { fua: true });
    }
    process.exit(0);`;
  return new Promise((resolve, reject) => {
    execFile(process.execPath, ['--input-type=module', '-e', code], { timeout: 30_000 }, (err, _out, stderr) => (err ? reject(new Error(`${err.message}\n${stderr}`)) : resolve()));
  });
}

async function waitOptimal(engine: Engine, volume: string): Promise<void> {
  for (let i = 0; i < 200; i++) {
    const v = engine.status().volumes.find((x) => x.name === volume);
    if (v?.state === 'optimal' && v.rebuild === null) return;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`volume ${volume} did not become optimal: ${JSON.stringify(engine.status().volumes.find((x) => x.name === volume))}`);
}

const leg = (name: string, offsetBytes: number, lengthBytes: number): Uint8Array => readFileRange(path.join(dir, `${name}.img`), DATA_OFFSET_BYTES + offsetBytes, lengthBytes);

describe('resync after an unclean stop', () => {
  it('copies only the dirty regions, from the reference leg, and leaves the legs identical', async () => {
    const first = await Engine.open({ config: config(), log: quiet });
    const base = pattern(LEG_BYTES, 11);
    await first.volume('m').write(0, base);
    await first.volume('t').write(0, pattern(2 * LEG_BYTES, 12));
    await first.close(); // clean: every bit cleared

    const dirty = [3, 4, 40, 200];
    await crashAfterWrites(dirty);
    expect(await readSuperblockFile(path.join(dir, 'a.img'))).toMatchObject({ clean: false, bitmapOffsetBytes: 64 * KiB });
    // A torn mirror write: the second leg of each mirror holds other bytes inside the dirty regions.
    const tear = (name: string, elementDataOffsetBytes: number): void => {
      const fd = fs.openSync(path.join(dir, `${name}.img`), 'r+');
      fs.writeSync(fd, new Uint8Array(8192).fill(0xee), 0, 8192, DATA_OFFSET_BYTES + elementDataOffsetBytes + 16 * KiB);
      fs.closeSync(fd);
    };
    for (const r of dirty) {
      tear('b', r * REGION);
      tear(r % 2 === 0 ? 'd' : 'f', Math.floor(r / 2) * REGION); // raid10: chunk r on pair r % 2, row r / 2
    }

    const again = await Engine.open({ config: config(), log: quiet });
    try {
      // Four regions go fast: the second leg may already be back when we look.
      const m = again.status().volumes.find((v) => v.name === 'm')!;
      expect(m.elements[0]!.state).toBe('active');
      expect(['rebuilding', 'active']).toContain(m.elements[1]!.state);
      await waitOptimal(again, 'm');
      await waitOptimal(again, 't');
      const done = again.status().volumes.find((v) => v.name === 'm')!;
      expect(done.lastRebuild).toMatchObject({ kind: 'resync', outcome: 'done', totalBytes: dirty.length * REGION, doneBytes: dirty.length * REGION });
      expect(equalBytes(leg('a', 0, LEG_BYTES), leg('b', 0, LEG_BYTES)), 'raid1 legs identical').toBe(true);
      for (const r of dirty) expect(leg('b', r * REGION + 512, 4096)).toEqual(new Uint8Array(4096).fill(r + 1));
      expect(equalBytes(await again.volume('m').read(0, 2 * REGION), base.subarray(0, 2 * REGION))).toBe(true);
      const t = again.status().volumes.find((v) => v.name === 't')!;
      expect(t.lastRebuild).toMatchObject({ kind: 'resync', outcome: 'done', totalBytes: dirty.length * REGION });
      expect(equalBytes(leg('c', 0, LEG_BYTES), leg('d', 0, LEG_BYTES)) && equalBytes(leg('e', 0, LEG_BYTES), leg('f', 0, LEG_BYTES)), 'raid10 pairs identical').toBe(true);
      expect(t.bitmap).toMatchObject({ regionBytes: REGION, regions: 2 * LEG_BYTES / REGION });
    } finally {
      await again.close();
    }
    // The clean close cleared the bits: the next open copies nothing.
    const third = await Engine.open({ config: config(), log: quiet });
    try {
      expect(third.status().volumes.map((v) => [v.state, v.rebuild, v.bitmap?.dirtyRegions])).toEqual([['optimal', null, 0], ['optimal', null, 0]]);
    } finally {
      await third.close();
    }
  }, 60_000);
});
