// Acceptance (issues 5 and 8): the daemon is killed with SIGKILL at random moments while a writer
// keeps a log of acknowledged and flushed writes (some with FUA). After each restart every
// flushed write reads back intact (test/lib/crash-writer.ts; a loss fails with its offset), and
// once the volume has settled: raid1 legs are identical after the resync (local + local, and
// local + an nbdkit leg), raid5 parity is right on every row after the journal replay.
//
// CRASH_CYCLES sets the raid1 local cycle count (CI: 20); the other variants run a third as many
// (CRASH_VARIANT_CYCLES overrides). A last test proves the check can fail: a flushed block
// zeroed on both legs behind the daemon's back is reported with its offset.
// The long run, one command (test/README.md):
//   CRASH_CYCLES=200 pnpm exec vitest run test/crash-loop.test.ts
import { open } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NbdClient } from '@onestack/nbd';
import { crashLoop, dataDirOf, summary, type CrashLoopResult } from './lib/crash-loop.js';
import { BLOCK_BYTES, CrashWriter } from './lib/crash-writer.js';
import { Daemon } from './lib/daemon.js';
import { DATA_OFFSET_BYTES, MiB, firstDifference, removeDir, sparseFile, tempDir, writeConfig } from './lib/files.js';
import { badParityRows } from './lib/parity.js';
import { missingTools, sleep } from './lib/proc.js';
import { startNbdkit, type NbdkitPeer } from './lib/remotes.js';

const CYCLES = Number(process.env['CRASH_CYCLES'] ?? '20');
const VARIANT_CYCLES = Number(process.env['CRASH_VARIANT_CYCLES'] ?? String(Math.max(1, Math.ceil(CYCLES / 3))));
const DATA_BYTES = 32 * MiB;
const ELEMENT_BYTES = DATA_OFFSET_BYTES + DATA_BYTES;
const CYCLE_BUDGET_MS = 20_000;
const timeoutFor = (cycles: number): number => 60_000 + cycles * CYCLE_BUDGET_MS;

function report(name: string, r: CrashLoopResult): void {
  console.log(summary(name, r));
  expect(r.stats.flushes, 'the writer got flushes through').toBeGreaterThan(r.cycles);
  expect(r.stats.flushedWritesChecked, 'flushed writes were read back').toBeGreaterThan(0);
}

const legsIdentical = (a: string, b: string) => async (): Promise<string | null> => {
  const at = await firstDifference(a, b, DATA_OFFSET_BYTES, DATA_BYTES);
  return at < 0 ? null : `legs ${path.basename(a)} and ${path.basename(b)} differ at data offset ${at} after the resync`;
};

describe(`crash consistency: ${CYCLES} SIGKILL cycles on raid1 (two local legs)`, () => {
  let dir = '';
  beforeAll(() => { dir = tempDir('crash'); });
  afterAll(() => { if (dir !== '') removeDir(dir); });

  it('every flushed write survives each kill; legs identical after each resync', async () => {
    const { configPath, images } = await writeConfig(dir, [{ name: 'c0', sizeBytes: ELEMENT_BYTES }, { name: 'c1', sizeBytes: ELEMENT_BYTES }], [
      { name: 'm', layout: 'raid1', elements: ['c0', 'c1'] },
    ]);
    const r = await crashLoop({
      volume: 'm', dataDir: dataDirOf(dir), configPath, volumeBytes: DATA_BYTES, cycles: CYCLES, seed: 0x5eed,
      settled: legsIdentical(images.get('c0')!, images.get('c1')!),
      progress: CYCLES > 20 ? (l) => process.stderr.write(`raid1 local: ${l}\n`) : undefined,
    });
    report('raid1 local', r);
  }, timeoutFor(CYCLES));
});

const missing = missingTools(['nbdkit']);

describe.skipIf(missing !== null)(`crash consistency: ${VARIANT_CYCLES} SIGKILL cycles on raid1 (local + nbdkit leg)${missing !== null ? ` (skipped: ${missing})` : ''}`, () => {
  let dir = '';
  let nbdkit: NbdkitPeer | null = null;
  beforeAll(async () => {
    dir = tempDir('crash-remote');
    await sparseFile(path.join(dir, 'r0.img'), ELEMENT_BYTES);
    nbdkit = await startNbdkit(['file', `dir=${dir}`]);
  });
  afterAll(async () => {
    await nbdkit?.stop();
    if (dir !== '') removeDir(dir);
  });

  it('every flushed write survives each kill; the local and the remote leg identical after each resync', async () => {
    const { configPath, images } = await writeConfig(dir, [
      { name: 'l0', sizeBytes: ELEMENT_BYTES },
      { name: 'r0', uri: `nbd://127.0.0.1:${nbdkit!.port}/r0.img`, options: { timeoutMs: 10_000 } },
    ], [{ name: 'm', layout: 'raid1', elements: ['l0', 'r0'] }]);
    const r = await crashLoop({
      volume: 'm', dataDir: dataDirOf(dir), configPath, volumeBytes: DATA_BYTES, cycles: VARIANT_CYCLES, seed: 0xbeef,
      settled: legsIdentical(images.get('l0')!, path.join(dir, 'r0.img')),
      progress: VARIANT_CYCLES > 20 ? (l) => process.stderr.write(`raid1 local+nbdkit: ${l}\n`) : undefined,
    });
    report('raid1 local+nbdkit', r);
  }, timeoutFor(VARIANT_CYCLES));
});

describe(`crash consistency: ${VARIANT_CYCLES} SIGKILL cycles on raid5 (three local legs)`, () => {
  const CHUNK_KIB = 64;
  const LEG_DATA_BYTES = DATA_BYTES / 2;
  let dir = '';
  beforeAll(() => { dir = tempDir('crash-raid5'); });
  afterAll(() => { if (dir !== '') removeDir(dir); });

  it('every flushed write survives each kill; parity right on every row after each journal replay', async () => {
    const legs = ['p0', 'p1', 'p2'];
    const { configPath, images } = await writeConfig(dir, legs.map((name) => ({ name, sizeBytes: DATA_OFFSET_BYTES + LEG_DATA_BYTES })), [
      { name: 'p', layout: 'raid5', elements: legs, chunkKiB: CHUNK_KIB },
    ]);
    const rows = LEG_DATA_BYTES / (CHUNK_KIB * 1024);
    const r = await crashLoop({
      volume: 'p', dataDir: dataDirOf(dir), configPath, volumeBytes: DATA_BYTES, cycles: VARIANT_CYCLES, seed: 0xf00d,
      settled: async () => {
        const bad = await badParityRows(legs.map((l) => images.get(l)!), 1, CHUNK_KIB * 1024, rows);
        return bad.length === 0 ? null : `parity wrong on ${bad.length} rows after the journal replay (first rows ${bad.slice(0, 8).join(', ')})`;
      },
      progress: VARIANT_CYCLES > 20 ? (l) => process.stderr.write(`raid5: ${l}\n`) : undefined,
    });
    report('raid5', r);
  }, timeoutFor(VARIANT_CYCLES));
});

describe('crash consistency: the check catches a lost flushed write', () => {
  let dir = '';
  beforeAll(() => { dir = tempDir('crash-lost'); });
  afterAll(() => { if (dir !== '') removeDir(dir); });

  it('a flushed block zeroed on both legs while the daemon is down fails the read-back with its offset', async () => {
    const { configPath, images } = await writeConfig(dir, [{ name: 'c0', sizeBytes: ELEMENT_BYTES }, { name: 'c1', sizeBytes: ELEMENT_BYTES }], [
      { name: 'm', layout: 'raid1', elements: ['c0', 'c1'] },
    ]);
    const writer = new CrashWriter(DATA_BYTES / BLOCK_BYTES, 0x1057);
    let daemon = await Daemon.start({ dataDir: dataDirOf(dir), configPath });
    try {
      let client = await NbdClient.connect({ host: '127.0.0.1', port: daemon.nbdPort, exportName: 'm', timeoutMs: 5000 });
      const ac = new AbortController();
      const run = writer.run(client, ac.signal, { flushEvery: 8, queueDepth: 4, fuaEvery: 0 });
      await sleep(300);
      ac.abort();
      await run;
      await client.flush();
      await client.close();
      expect(writer.stats.flushes).toBeGreaterThan(0);
      // Find a block holding a non-zero generation on the legs, and zero it on both.
      const c0 = await open(images.get('c0')!, 'r+');
      const c1 = await open(images.get('c1')!, 'r+');
      const buf = Buffer.alloc(BLOCK_BYTES);
      let lost = -1;
      for (let off = 0; off < DATA_BYTES && lost < 0; off += BLOCK_BYTES) {
        await c0.read(buf, 0, BLOCK_BYTES, DATA_OFFSET_BYTES + off);
        if (buf.readUInt32BE(8) !== 0) lost = off;
      }
      expect(lost).toBeGreaterThanOrEqual(0);
      await daemon.crash();
      for (const fh of [c0, c1]) { await fh.write(Buffer.alloc(BLOCK_BYTES), 0, BLOCK_BYTES, DATA_OFFSET_BYTES + lost); await fh.close(); }
      daemon = await Daemon.start({ dataDir: dataDirOf(dir), configPath, nbdPort: daemon.nbdPort, apiPort: daemon.apiPort });
      client = await NbdClient.connect({ host: '127.0.0.1', port: daemon.nbdPort, exportName: 'm', timeoutMs: 5000 });
      const problems = await writer.verify(client);
      await client.close();
      expect(problems).toHaveLength(1);
      expect(problems[0]).toMatch(new RegExp(`^offset ${lost}: lost flushed write: generation \\d+ \\(durable\\); holds generation 0`));
    } finally {
      await daemon.stop();
    }
  });
});
