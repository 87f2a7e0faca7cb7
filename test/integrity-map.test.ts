// Acceptance (issue 10, item 4): the integrity map over NBD. A byte flipped in one leg of an
// integrity raid1 is caught and repaired on read; then `nbdinfo --map=x-onestack:integrity`
// shows flag 2 (repaired) exactly over that 4 KiB block and 0 everywhere else, and
// `nbdinfo --list --json` offers the context only on the integrity volume.
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Daemon } from './lib/daemon.js';
import { DATA_OFFSET_BYTES, flipBytes, MiB, removeDir, tempDir, writeConfig } from './lib/files.js';
import { qemuIo, qemuIoFailed } from './lib/peers.js';
import { explain, missingTools, runOk } from './lib/proc.js';

const ELEMENT_BYTES = DATA_OFFSET_BYTES + 33 * MiB; // 32 MiB data + its checksum area
const PATTERN_BYTES = 4 * MiB;
const CONTEXT = 'x-onestack:integrity';
const missing = missingTools(['nbdinfo', 'qemu-io']);

interface Counts { mismatches: number; repaired: number; unrecoverable: number }

/** Flips one byte of a leg file at data offset `dataOffsetBytes` (files.ts flipBytes). */
function flip(file: string, dataOffsetBytes: number): void {
  flipBytes(file, DATA_OFFSET_BYTES + dataOffsetBytes);
}

/** `nbdinfo --map=CONTEXT --json`: every extent with its type. */
async function integrityMap(uri: string): Promise<{ offset: number; length: number; type: number }[]> {
  const r = await runOk('nbdinfo', [`--map=${CONTEXT}`, '--json', uri], { timeoutMs: 30_000 });
  return JSON.parse(r.stdout) as { offset: number; length: number; type: number }[];
}

describe.skipIf(missing !== null)(`integrity map over NBD${missing !== null ? ` (skipped: ${missing})` : ''}`, () => {
  let dir = '';
  let daemon: Daemon | null = null;
  let images: ReadonlyMap<string, string> = new Map<string, string>();

  beforeAll(async () => {
    dir = tempDir('integrity-map');
    let configPath: string;
    ({ configPath, images } = await writeConfig(dir, ['a', 'b', 'c', 'd'].map((name) => ({ name, sizeBytes: ELEMENT_BYTES })),
      [{ name: 'mir', layout: 'raid1', elements: ['a', 'b'], integrity: true }, { name: 'plain', layout: 'raid1', elements: ['c', 'd'] }],
      // RAM read cache off: a cached block was verified when filled, a re-read would never reach a leg.
      ['cache: { readMiB: 0 }']));
    daemon = await Daemon.start({ dataDir: path.join(dir, 'data'), configPath });
  }, 60_000);

  afterAll(async () => {
    await daemon?.stop();
    if (dir !== '') removeDir(dir);
  });

  it('nbdinfo --list --json offers x-onestack:integrity only on the integrity volume', async () => {
    const r = await runOk('nbdinfo', ['--list', '--json', daemon!.uri('')], { timeoutMs: 30_000 });
    const exports = (JSON.parse(r.stdout) as { exports: { 'export-name': string; contexts?: string[] }[] }).exports;
    const ctx = (name: string): string[] | undefined => exports.find((e) => e['export-name'] === name)?.contexts;
    expect(ctx('mir'), r.stdout).toContain(CONTEXT);
    expect(ctx('mir'), r.stdout).toContain('base:allocation');
    expect(ctx('plain'), r.stdout).toContain('base:allocation');
    expect(ctx('plain'), r.stdout).not.toContain(CONTEXT);
  }, 60_000);

  it('nothing found yet: the whole volume is flag 0', async () => {
    const w = await qemuIo(daemon!.uri('mir'), [`write -P 0x5a 0 ${PATTERN_BYTES}`, 'flush']);
    expect(qemuIoFailed(w), explain(w)).toBe(false);
    const map = await integrityMap(daemon!.uri('mir'));
    expect(map.every((e) => e.type === 0), JSON.stringify(map)).toBe(true);
    expect(map.reduce((n, e) => n + e.length, 0)).toBeGreaterThanOrEqual(PATTERN_BYTES);
  }, 60_000);

  it('a flipped byte read back and repaired: flag 2 exactly at its block', async () => {
    const d = daemon!;
    const at = 2 * MiB + 3 * 4096 + 99;
    const block = Math.floor(at / 4096) * 4096;
    flip(images.get('a')!, at);
    // Either leg may serve a read: read until leg a counts the mismatch.
    let counts: Counts | undefined;
    for (let i = 0; i < 40; i++) {
      const r = await qemuIo(d.uri('mir'), [`read -P 0x5a ${block} 4k`]);
      expect(qemuIoFailed(r), explain(r)).toBe(false);
      const v = (await d.status()).volumes.find((x) => x.name === 'mir') as unknown as { elements: { name: string; integrity?: Counts }[] };
      counts = v.elements.find((e) => e.name === 'a')?.integrity;
      if ((counts?.repaired ?? 0) > 0) break;
    }
    expect(counts, d.logs().slice(-1500)).toMatchObject({ mismatches: 1, repaired: 1, unrecoverable: 0 });
    const map = await integrityMap(d.uri('mir'));
    const flagged = map.filter((e) => e.type !== 0);
    expect(flagged.map(({ offset, length, type }) => ({ offset, length, type })), JSON.stringify(map)).toEqual([{ offset: block, length: 4096, type: 2 }]);
    // The rest of the volume is 0 and the extents tile it from 0.
    let next = 0;
    for (const e of map) {
      expect(e.offset).toBe(next);
      next += e.length;
    }
  }, 120_000);
});
