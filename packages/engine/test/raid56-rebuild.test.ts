// raid5/raid6 rebuild through the Engine (issue 5 acceptance): random data written, elements
// failed (one for raid5, two for raid6), the volume reads back the same sha256 degraded; the lost
// roles are rebuilt onto a hot spare (automatically) or onto blank elements (replaceElement); P
// and Q recomputed from the leg files by the test's own maths (raid56-ref.ts) are right, and the
// sha256 is unchanged. A rebuild cut short by a stop starts again (in full) at the next open.
// Imports the BUILT dist.
import { createHash, randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Engine, type RebuildStatus } from '../dist/index.js';
import { readSuperblockFile } from '../dist/meta/element-io.js';
import { DATA_OFFSET_BYTES } from '../dist/meta/types.js';
import { readFileRange } from './helpers.js';
import { refPQ, refRoles } from './raid56-ref.js';

const MiB = 1024 * 1024;
const LEG_BYTES = 16 * MiB;
const CHUNK_BYTES = 64 * 1024;
const quiet = (level: string, msg: string): void => {
  if (process.env.ONESTACK_TEST_LOG) console.log(level, msg);
};
const sha = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');
let dir: string;
let engine: Engine | undefined;
beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'onestack-raid56-rebuild-'));
});
afterEach(async () => {
  await engine?.close();
  engine = undefined;
  fs.rmSync(dir, { recursive: true, force: true });
});

const image = (name: string): string => path.join(dir, `${name}.img`);

interface Setup { layout: 'raid5' | 'raid6'; legs: string[]; extra: string[]; spares?: string[]; maxMiBPerSec?: number }

async function open(s: Setup): Promise<Engine> {
  // Spares and blank elements are not created by a volume: make them (sparse, with header room).
  for (const name of s.extra) if (!fs.existsSync(image(name))) fs.writeFileSync(image(name), new Uint8Array(0)), fs.truncateSync(image(name), DATA_OFFSET_BYTES + LEG_BYTES);
  engine = await Engine.open({
    log: quiet,
    config: {
      dataDir: path.join(dir, 'data'), nbd: { listen: '127.0.0.1:0' }, rebuild: { maxMiBPerSec: s.maxMiBPerSec ?? 0 },
      elements: [...s.legs, ...s.extra].map((name) => ({ name, uri: `file:${image(name)}`, createSizeBytes: LEG_BYTES })),
      volumes: [{ name: 'p', layout: s.layout, elements: s.legs, chunkKiB: CHUNK_BYTES / 1024, ...(s.spares !== undefined ? { spares: s.spares } : {}) }],
    },
  });
  return engine;
}

async function until(what: string, cond: () => boolean, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Rows whose P (and Q) in the leg files (by role) differ from what their data chunks give. */
function badRows(legsByRole: readonly string[], np: 1 | 2): number[] {
  const files = legsByRole.map((l) => readFileRange(image(l), DATA_OFFSET_BYTES, LEG_BYTES));
  const chunk = (role: number, row: number): Uint8Array => files[role]!.subarray(row * CHUNK_BYTES, (row + 1) * CHUNK_BYTES);
  const bad: number[] = [];
  for (let row = 0; row < LEG_BYTES / CHUNK_BYTES; row++) {
    const roles = refRoles(legsByRole.length, np, row);
    const { p, q } = refPQ(roles.data.map((r) => chunk(r, row)));
    if (sha(p) !== sha(chunk(roles.p, row)) || (np === 2 && sha(q) !== sha(chunk(roles.q, row)))) bad.push(row);
  }
  return bad;
}

const vol = (e: Engine): ReturnType<Engine['status']>['volumes'][number] => e.status().volumes[0]!;
const members = (e: Engine): string[] => vol(e).elements.map((x) => x.name);

describe('raid5/raid6 rebuild through the Engine', () => {
  it('raid5 over 4: a failed element is rebuilt onto the hot spare with progress; parity right, sha256 unchanged; a rebuild cut short restarts at the next open', async () => {
    const setup: Setup = { layout: 'raid5', legs: ['a', 'b', 'c', 'd'], extra: ['s', 'x'], spares: ['s'] };
    const e = await open(setup);
    const data = new Uint8Array(randomBytes(3 * LEG_BYTES));
    await e.volume('p').write(0, data);
    await e.volume('p').flush();
    expect(badRows(members(e), 1)).toEqual([]);
    const seen: RebuildStatus[] = [];
    e.events.on('change', (s: { volumes: { rebuild: RebuildStatus | null }[] }) => {
      if (s.volumes[0]?.rebuild) seen.push(s.volumes[0].rebuild);
    });

    await e.failElement('b');
    await until('the rebuild onto the spare to finish', () => vol(e).state === 'optimal' && vol(e).lastRebuild?.outcome === 'done');
    expect(members(e)).toEqual(['a', 's', 'c', 'd']);
    const last = vol(e).lastRebuild!;
    expect(last).toMatchObject({ kind: 'rebuild', element: 's', outcome: 'done', doneBytes: LEG_BYTES, totalBytes: LEG_BYTES });
    expect(seen.some((p) => p.kind === 'rebuild' && p.element === 's'), 'progress in status while it ran').toBe(true);
    console.log(`raid5 rebuild of ${LEG_BYTES / MiB} MiB (4 local files, unthrottled): ${last.mibPerSec.toFixed(0)} MiB/s`);
    expect(badRows(members(e), 1)).toEqual([]);
    expect(sha(await e.volume('p').read(0, data.length))).toBe(sha(data));
    expect(e.status().elements.find((x) => x.name === 'b')).toMatchObject({ state: 'failed', reason: expect.stringMatching(/replaced by s/) });
    await e.close();

    // Throttled: replace c by x, stop while it runs; x's superblock still says "needs rebuild".
    const slow = await open({ ...setup, maxMiBPerSec: 8 });
    await slow.replaceElement('p', 'c', 'x');
    expect(vol(slow)).toMatchObject({ state: 'rebuilding', rebuild: { kind: 'rebuild', element: 'x' } });
    await until('the rebuild onto x to be under way', () => (vol(slow).rebuild?.doneBytes ?? 0) > MiB);
    await slow.close();
    expect(await readSuperblockFile(image('x'))).toMatchObject({ needsRebuild: true, eventCount: 0, role: 2 });

    const again = await open(setup);
    expect(members(again)).toEqual(['a', 's', 'x', 'd']);
    await until('the restarted rebuild to finish', () => vol(again).state === 'optimal' && vol(again).lastRebuild?.outcome === 'done');
    expect(vol(again).lastRebuild).toMatchObject({ element: 'x', doneBytes: LEG_BYTES });
    expect(badRows(members(again), 1)).toEqual([]);
    expect(sha(await again.volume('p').read(0, data.length))).toBe(sha(data));
    // The finish step rewrites the superblocks just after the state turns active (inside the control queue).
    let sb = await readSuperblockFile(image('x'));
    for (let i = 0; i < 100 && (sb as { needsRebuild?: boolean }).needsRebuild === true; i++) {
      await new Promise((r) => setTimeout(r, 20));
      sb = await readSuperblockFile(image('x'));
    }
    expect(sb).toMatchObject({ needsRebuild: false, role: 2 });
  }, 90_000);

  it('raid6 over 5: two elements lost, same sha256 degraded; both replaced by blank elements, P and Q right again', async () => {
    const e = await open({ layout: 'raid6', legs: ['a', 'b', 'c', 'd', 'e'], extra: ['x', 'y'] });
    const data = new Uint8Array(randomBytes(3 * LEG_BYTES));
    await e.volume('p').write(0, data);
    await e.failElement('a');
    await e.failElement('d');
    expect(vol(e).state).toBe('degraded');
    expect(sha(await e.volume('p').read(0, data.length))).toBe(sha(data));
    // Writes while degraded land too (and must be in the rebuilt roles).
    const late = new Uint8Array(randomBytes(MiB + 4096));
    await e.volume('p').write(5 * MiB + 512, late);
    data.set(late, 5 * MiB + 512);

    await e.replaceElement('p', 'a', 'x');
    await e.replaceElement('p', 'd', 'y');
    await until('both rebuilds to finish', () => vol(e).state === 'optimal');
    expect(members(e)).toEqual(['x', 'b', 'c', 'y', 'e']);
    expect(vol(e).lastRebuild).toMatchObject({ kind: 'rebuild', outcome: 'done' });
    expect(badRows(members(e), 2)).toEqual([]);
    expect(sha(await e.volume('p').read(0, data.length))).toBe(sha(data));
    // A third loss is survivable again: the rebuilt roles carry the data.
    await e.failElement('b');
    await e.failElement('c');
    expect(sha(await e.volume('p').read(0, data.length))).toBe(sha(data));
  }, 90_000);
});
