// Changing a raid1's membership (durable/members.ts): addMember grows it to a third leg that is
// rebuilt in full while writes go on, removeMember shrinks it back; refusals; the change survives a
// restart of a config-file volume (state file `members` record); a crash mid-rebuild (files
// snapshotted while the engine runs) restarts the rebuild; integrity volumes get checksums on the
// new leg. Imports the BUILT dist.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Engine } from '../dist/index.js';
import { readSuperblockFile } from '../dist/meta/element-io.js';
import { DATA_OFFSET_BYTES } from '../dist/meta/types.js';
import { equalBytes, MiB, pattern } from './datapath-harness.js';
import { readFileRange } from './helpers.js';

const LEG_BYTES = 16 * MiB;
const FILES = ['p', 'q', 'r', 's', 'z0', 'z1'];
const quiet = (): void => undefined;

let dir: string;
beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'onestack-members-'));
  for (const f of FILES) {
    const file = path.join(dir, `${f}.img`);
    fs.writeFileSync(file, '');
    fs.truncateSync(file, DATA_OFFSET_BYTES + LEG_BYTES);
  }
});
afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

function config(rateMiBPerSec = 0): unknown {
  return {
    dataDir: path.join(dir, 'data'), nbd: { listen: '127.0.0.1:0' }, rebuild: { maxMiBPerSec: rateMiBPerSec },
    elements: FILES.map((f) => ({ name: f, uri: `file:${path.join(dir, `${f}.img`)}` })),
    volumes: [{ name: 'm', layout: 'raid1', elements: ['p', 'q'] }, { name: 'z', layout: 'raid0', elements: ['z0', 'z1'] }],
  };
}

async function until(what: string, cond: () => boolean, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

const img = (name: string): string => path.join(dir, `${name}.img`);
const dataOf = (name: string): Uint8Array => readFileRange(img(name), DATA_OFFSET_BYTES, LEG_BYTES);
const vol = (engine: Engine): ReturnType<Engine['status']>['volumes'][number] => engine.status().volumes.find((v) => v.name === 'm')!;
const legs = (engine: Engine): string[][] => vol(engine).elements.map((e) => [e.name, e.state]);

describe('raid1 membership changes', () => {
  it('adds a third leg (rebuilt while written), survives a restart, removes one, and refuses what it cannot do', async () => {
    const engine = await Engine.open({ config: config(), log: quiet });
    const data = pattern(LEG_BYTES, 7);
    try {
      await engine.volume('m').write(0, data);
      await engine.addMember('m', 'r');
      expect(legs(engine).map((l) => l[0])).toEqual(['p', 'q', 'r']);
      await engine.volume('m').write(LEG_BYTES - MiB, data.subarray(LEG_BYTES - MiB));
      await until('the new leg to be rebuilt', () => vol(engine).state === 'optimal');
      expect(legs(engine)).toEqual([['p', 'active'], ['q', 'active'], ['r', 'active']]);
      expect(vol(engine).lastRebuild).toMatchObject({ kind: 'rebuild', element: 'r', outcome: 'done', totalBytes: LEG_BYTES });
      await engine.volume('m').flush();
      for (const leg of ['p', 'q', 'r']) expect(equalBytes(dataOf(leg), data), `leg ${leg} holds the volume`).toBe(true);

      // Refusals, each with a clear message; nothing changes.
      await expect(engine.addMember('m', 'r')).rejects.toMatchObject({ code: 'conflict', message: expect.stringMatching(/already a member of volume m/) });
      await expect(engine.addMember('m', 'z0')).rejects.toMatchObject({ code: 'conflict', message: expect.stringMatching(/already used by volume z/) });
      await expect(engine.addMember('m', 'nope')).rejects.toMatchObject({ code: 'not-found' });
      await expect(engine.addMember('z', 's')).rejects.toMatchObject({ code: 'invalid', message: expect.stringMatching(/z is raid0: only a raid1/), hint: expect.stringMatching(/volume reshape NAME --add/) });
      await expect(engine.removeMember('z', 'z0')).rejects.toMatchObject({ code: 'invalid', message: expect.stringMatching(/raid0/) });
      await expect(engine.removeMember('m', 's')).rejects.toMatchObject({ code: 'not-found', message: expect.stringMatching(/not a member of volume m/) });
      expect(legs(engine).map((l) => l[0])).toEqual(['p', 'q', 'r']);
    } finally {
      await engine.close();
    }
    for (const leg of ['p', 'q', 'r']) expect(await readSuperblockFile(img(leg)), `${leg}'s superblock names 3 legs`).toMatchObject({ count: 3, needsRebuild: false });
    const state = JSON.parse(fs.readFileSync(path.join(dir, 'data', 'onestack-state.json'), 'utf8')) as { members?: unknown };
    expect(state.members).toEqual([{ volume: 'm', configElements: ['p', 'q'], elements: ['p', 'q', 'r'] }]);

    // The config still lists p, q: the record gives the volume its third leg back.
    const again = await Engine.open({ config: config(), log: quiet });
    try {
      expect(legs(again)).toEqual([['p', 'active'], ['q', 'active'], ['r', 'active']]);
      expect(equalBytes(await again.volume('m').read(0, LEG_BYTES), data)).toBe(true);

      // Remove the middle leg while writes go on: the survivors are renumbered.
      const writes = (async () => {
        for (let i = 0; i < 16; i++) await again.volume('m').write(i * MiB, data.subarray(i * MiB, (i + 1) * MiB));
      })();
      await again.removeMember('m', 'q');
      await writes;
      expect(legs(again)).toEqual([['p', 'active'], ['r', 'active']]);
      expect(again.status().elements.find((e) => e.name === 'q')).toMatchObject({ state: 'spare', volume: null });
      await expect(again.removeMember('m', 'r')).rejects.toMatchObject({ code: 'conflict', message: expect.stringMatching(/has 2 legs; a raid1 keeps at least 2/) });
      // With one of three legs failed, removing an active one would leave one active leg.
      await again.addMember('m', 's');
      await until('s to be rebuilt', () => vol(again).state === 'optimal');
      await again.failElement('s');
      await expect(again.removeMember('m', 'p')).rejects.toMatchObject({ code: 'conflict', message: expect.stringMatching(/would leave volume m with 1 active leg/) });
      await again.removeMember('m', 's'); // a failed leg may go
      expect(legs(again)).toEqual([['p', 'active'], ['r', 'active']]);
      expect(again.status().elements.find((e) => e.name === 's'), 'a failed leg stays failed once out (never a spare)')
        .toMatchObject({ state: 'failed', volume: null, reason: 'removed from volume m after it failed' });
    } finally {
      await again.close();
    }
    expect(await readSuperblockFile(img('q')), 'the removed leg can never pass for current').toMatchObject({ faulty: true, needsRebuild: true, eventCount: 0 });
    expect(await readSuperblockFile(img('r'))).toMatchObject({ count: 2, role: 1, needsRebuild: false });

    const third = await Engine.open({ config: config(), log: quiet });
    try {
      expect(legs(third)).toEqual([['p', 'active'], ['r', 'active']]);
      expect(equalBytes(await third.volume('m').read(0, LEG_BYTES), data)).toBe(true);
      // A removed leg can come back: it is rebuilt in full.
      await third.addMember('m', 'q');
      await until('q to be rebuilt again', () => vol(third).state === 'optimal');
      expect(equalBytes(dataOf('q'), data)).toBe(true);
    } finally {
      await third.close();
    }
  }, 90_000);

  it('a crash mid-rebuild of an added leg restarts the rebuild at the next open; a crash before the state file is saved keeps 2 legs', async () => {
    const engine = await Engine.open({ config: config(4), log: quiet });
    const data = pattern(LEG_BYTES, 9);
    const snap = path.join(dir, 'snap');
    try {
      await engine.volume('m').write(0, data);
      await engine.volume('m').flush();
      await engine.addMember('m', 'r');
      await until('the rebuild to be under way', () => (vol(engine).rebuild?.doneBytes ?? 0) >= 2 * MiB);
      // What a kill -9 leaves (page-cache files are what the kernel holds): the files as they are now.
      fs.mkdirSync(snap);
      for (const f of ['p', 'q', 'r']) fs.copyFileSync(img(f), path.join(snap, `${f}.img`));
      fs.copyFileSync(path.join(dir, 'data', 'onestack-state.json'), path.join(snap, 'state.json'));
    } finally {
      await engine.close();
    }
    for (const f of ['p', 'q', 'r']) fs.copyFileSync(path.join(snap, `${f}.img`), img(f));
    fs.copyFileSync(path.join(snap, 'state.json'), path.join(dir, 'data', 'onestack-state.json'));
    expect(await readSuperblockFile(img('r'))).toMatchObject({ needsRebuild: true, eventCount: 0, count: 3 });

    const again = await Engine.open({ config: config(0), log: quiet });
    try {
      expect(legs(again).map((l) => l[0])).toEqual(['p', 'q', 'r']);
      // Unclean stop: r is rebuilt in full (and q resynced from the reference leg p with it).
      expect(vol(again).rebuild).toMatchObject({ kind: 'rebuild' });
      expect(legs(again)[2]).toEqual(['r', 'rebuilding']);
      await until('the restarted rebuild to finish', () => vol(again).state === 'optimal');
      expect(equalBytes(dataOf('r'), data)).toBe(true);
    } finally {
      await again.close();
    }

    // The superblocks name 3 legs but the state file was lost (a crash before it was saved): the
    // config's 2 legs assemble, and the third stays out.
    fs.rmSync(path.join(dir, 'data', 'onestack-state.json'));
    const third = await Engine.open({ config: config(0), log: quiet });
    try {
      expect(legs(third)).toEqual([['p', 'active'], ['q', 'active']]);
      expect(equalBytes(await third.volume('m').read(0, LEG_BYTES), data)).toBe(true);
    } finally {
      await third.close();
    }
    expect(await readSuperblockFile(img('p'))).toMatchObject({ count: 2 });
  }, 90_000);

  it('removing a leg while another is rebuilt renumbers the copy; removing the leg being rebuilt stops its copy', async () => {
    const engine = await Engine.open({ config: config(8), log: quiet });
    const data = pattern(LEG_BYTES, 11);
    try {
      await engine.volume('m').write(0, data);
      await engine.addMember('m', 'r');
      await until('r to be rebuilt', () => vol(engine).state === 'optimal');
      await engine.addMember('m', 's'); // role 3, copied at 8 MiB/s
      await until('the rebuild of s to be under way', () => (vol(engine).rebuild?.doneBytes ?? 0) > 0);
      await engine.removeMember('m', 'q'); // role 1: s moves to role 2 while it is copied
      expect(legs(engine)).toEqual([['p', 'active'], ['r', 'active'], ['s', 'rebuilding']]);
      await until('the rebuild of s to finish under its new role', () => vol(engine).state === 'optimal');
      expect(vol(engine).lastRebuild).toMatchObject({ element: 's', outcome: 'done' });
      expect(equalBytes(dataOf('s'), data)).toBe(true);

      await engine.addMember('m', 'q');
      await until('the rebuild of q to be under way', () => (vol(engine).rebuild?.doneBytes ?? 0) > 0);
      await engine.removeMember('m', 'q');
      await until('the volume to settle', () => vol(engine).rebuild === null);
      expect(legs(engine)).toEqual([['p', 'active'], ['r', 'active'], ['s', 'active']]);
      expect(vol(engine).state).toBe('optimal');
      expect(engine.status().elements.find((e) => e.name === 'q')).toMatchObject({ state: 'spare', volume: null });
      expect(equalBytes(await engine.volume('m').read(0, LEG_BYTES), data)).toBe(true);
    } finally {
      await engine.close();
    }
    for (const leg of ['p', 'r', 's']) expect(await readSuperblockFile(img(leg))).toMatchObject({ count: 3, needsRebuild: false });
  }, 90_000);

  it('an integrity raid1 gets checksums on the added leg: it serves alone and verifies', async () => {
    const engine = await Engine.open({ config: config(), log: quiet });
    try {
      const file = (name: string): string => `file:${path.join(dir, `i-${name}.img`)}`;
      for (const name of ['a', 'b', 'c']) {
        fs.writeFileSync(path.join(dir, `i-${name}.img`), '');
        fs.truncateSync(path.join(dir, `i-${name}.img`), DATA_OFFSET_BYTES + 8 * MiB);
      }
      await engine.createVolume({ name: 'v', layout: 'raid1', elements: [file('a'), file('b')], integrity: true });
      const size = engine.status().volumes.find((v) => v.name === 'v')!.sizeBytes;
      const data = pattern(size, 3);
      await engine.volume('v').write(0, data);
      const c = (await engine.addElement({ uri: file('c'), name: 'ic' })).name;
      await engine.addMember('v', c);
      const v = (): ReturnType<Engine['status']>['volumes'][number] => engine.status().volumes.find((x) => x.name === 'v')!;
      await until('the integrity leg to be rebuilt', () => v().state === 'optimal');
      const [a, b] = v().elements.map((e) => e.name);
      await engine.failElement(a!);
      await engine.failElement(b!);
      expect(equalBytes(await engine.volume('v').read(0, size), data), 'the new leg alone serves the volume').toBe(true);
      const counts = v().elements.find((e) => e.name === c)!.integrity;
      expect(counts).toEqual({ mismatches: 0, repaired: 0, unrecoverable: 0 });
    } finally {
      await engine.close();
    }
    // A run-time volume keeps its new leg in its state-file entry; the leg's checksum area in its
    // superblock matches the others' (assembly checks it), and it alone still serves verified data.
    const again = await Engine.open({ config: config(), log: quiet });
    try {
      const v = again.status().volumes.find((x) => x.name === 'v')!;
      expect(v.elements.map((e) => e.state)).toEqual(['stale', 'stale', 'active']);
      expect(v.elements[2]!.name).toBe('ic');
      expect(equalBytes(await again.volume('v').read(0, v.sizeBytes), pattern(v.sizeBytes, 3))).toBe(true);
      expect(v.elements[2]!.integrity).toEqual({ mismatches: 0, repaired: 0, unrecoverable: 0 });
    } finally {
      await again.close();
    }
  }, 60_000);
});
