// Acceptance: fio's nbd engine with verify=crc32c passes on raid1 — random 4k at QD16, sequential
// 1 MiB at QD8 and mixed sizes — and the legs still match afterwards.
import { describe, expect, it } from 'vitest';
import { useDaemon } from './lib/fixture.js';
import { DATA_OFFSET_BYTES, MiB, firstDifference } from './lib/files.js';
import { fio } from './lib/peers.js';
import { explain } from './lib/proc.js';

const ELEMENT_BYTES = 256 * MiB;

describe('fio verify=crc32c on raid1', () => {
  const fx = useDaemon('fio', [{ name: 'm0', sizeBytes: ELEMENT_BYTES }, { name: 'm1', sizeBytes: ELEMENT_BYTES }], [
    { name: 'mirror', layout: 'raid1', elements: ['m0', 'm1'] },
  ]);

  const jobs: ReadonlyArray<{ title: string; args: readonly string[] }> = [
    { title: '4k randwrite QD16 over 64 MiB', args: ['--rw=randwrite', '--bs=4k', '--iodepth=16', '--size=64m'] },
    { title: '1M seq write QD8 over 128 MiB at offset 100 MiB', args: ['--rw=write', '--bs=1m', '--iodepth=8', '--size=128m', '--offset=100m'] },
    { title: 'mixed 4k-256k randwrite QD8 over 32 MiB', args: ['--rw=randwrite', '--bsrange=4k-256k', '--iodepth=8', '--size=32m', '--offset=64m'] },
  ];

  for (const job of jobs) {
    it(job.title, async () => {
      const { result, jobs: out } = await fio([
        '--name=verify', '--ioengine=nbd', `--uri=${fx.daemon.uri('mirror')}`, ...job.args,
        '--verify=crc32c', '--do_verify=1', '--verify_fatal=1', '--verify_dump=0',
      ], fx.dir);
      expect(result.code, explain(result)).toBe(0);
      expect(out).toHaveLength(1);
      expect(out[0]?.error, explain(result)).toBe(0);
      expect(out[0]?.write.io_bytes).toBeGreaterThan(0);
      expect(out[0]?.read.io_bytes, 'verify phase read the data back').toBeGreaterThan(0);
    });
  }

  it('after the fio runs both legs hold identical data regions', async () => {
    const [m0, m1] = [fx.images.get('m0') ?? '', fx.images.get('m1') ?? ''];
    expect(await firstDifference(m0, m1, DATA_OFFSET_BYTES, ELEMENT_BYTES - DATA_OFFSET_BYTES)).toBe(-1);
  });
});
