// Acceptance (issues 5 and 8): the daemon is killed with SIGKILL at random moments while a writer
// keeps a log of acknowledged and flushed writes. After each restart every flushed write reads
// back intact (test/lib/crash-writer.ts), and once the resync after the unclean stop is done the
// raid1 legs are identical. CRASH_CYCLES sets the cycle count (CI: 20; the long run is
// `CRASH_CYCLES=200 pnpm exec vitest run test/crash-loop.test.ts`).
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NbdClient } from '@onestack/nbd';
import { CrashWriter, BLOCK_BYTES } from './lib/crash-writer.js';
import { Daemon } from './lib/daemon.js';
import { DATA_OFFSET_BYTES, MiB, firstDifference, removeDir, tempDir, writeConfig } from './lib/files.js';
import { sleep } from './lib/proc.js';

const CYCLES = Number(process.env['CRASH_CYCLES'] ?? '20');
const DATA_BYTES = 32 * MiB;
const ELEMENT_BYTES = DATA_OFFSET_BYTES + DATA_BYTES;
const RESYNC_WAIT_MS = 30_000;

async function waitResynced(d: Daemon): Promise<string> {
  const deadline = Date.now() + RESYNC_WAIT_MS;
  for (;;) {
    const v = (await d.status()).volumes.find((x) => x.name === 'm') as { state: string; rebuild?: unknown } | undefined;
    if (v !== undefined && v.state === 'optimal' && (v.rebuild ?? null) === null) return v.state;
    if (Date.now() > deadline) return v?.state ?? 'absent';
    await sleep(100);
  }
}

describe(`crash consistency: ${CYCLES} SIGKILL cycles on raid1`, () => {
  let dir = '';
  let configPath = '';
  let daemon: Daemon | null = null;

  beforeAll(async () => {
    dir = tempDir('crash');
    ({ configPath } = await writeConfig(dir, [{ name: 'c0', sizeBytes: ELEMENT_BYTES }, { name: 'c1', sizeBytes: ELEMENT_BYTES }], [
      { name: 'm', layout: 'raid1', elements: ['c0', 'c1'] },
    ]));
  });

  afterAll(async () => {
    await daemon?.stop();
    if (dir !== '') removeDir(dir);
  });

  it('every flushed write survives each kill; legs identical after each resync', async () => {
    const writer = new CrashWriter(DATA_BYTES / BLOCK_BYTES, 0x5eed);
    let seedRand = 12345;
    const rand = (bound: number): number => {
      seedRand = (seedRand * 1103515245 + 12345) >>> 0;
      return seedRand % bound;
    };
    for (let cycle = 0; cycle < CYCLES; cycle++) {
      daemon = await Daemon.start({ dataDir: path.join(dir, 'data'), configPath, ...(daemon !== null ? { nbdPort: daemon.nbdPort, apiPort: daemon.apiPort } : {}) });
      const client = await NbdClient.connect({ host: '127.0.0.1', port: daemon.nbdPort, exportName: 'm', timeoutMs: 1500 }); // short: after the kill, in-flight writes give up fast
      const problems = await writer.verify(client);
      expect(problems, `cycle ${cycle}: after the restart\n${problems.join('\n')}`).toEqual([]);
      expect(await waitResynced(daemon), `cycle ${cycle}: resync did not finish\n${daemon.logs()}`).toBe('optimal');
      const diff = await firstDifference(path.join(dir, 'c0.img'), path.join(dir, 'c1.img'), DATA_OFFSET_BYTES, DATA_BYTES);
      expect(diff, `cycle ${cycle}: legs differ at data offset ${diff}`).toBe(-1);
      const ac = new AbortController();
      const run = writer.run(client, ac.signal, 1 + rand(16), 1 + rand(32));
      await sleep(150 + rand(600));
      await daemon.crash();
      ac.abort();
      await run;
      await client.close().catch(() => undefined);
    }
    expect(writer.stats.flushes, 'the writer got flushes through').toBeGreaterThan(CYCLES);
  }, 60_000 + CYCLES * 15_000);
});
