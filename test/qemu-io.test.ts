// Acceptance: qemu-io writes patterns at scattered offsets and reads them back on linear, raid0
// and raid1 volumes — over separate connections, with the gaps between still zero.
import { describe, expect, it } from 'vitest';
import { useDaemon } from './lib/fixture.js';
import { MiB } from './lib/files.js';
import { exportSize, qemuIo, qemuIoFailed } from './lib/peers.js';
import { explain } from './lib/proc.js';

const KiB = 1024;
const ELEMENT_DATA_BYTES = 124 * MiB; // 128 MiB images minus the 4 MiB header

interface Range { readonly offset: number; readonly length: number; readonly pattern: number; readonly how?: 'fua' | 'zero' | 'discard' }

/** Non-overlapping ranges that hit the start, chunk and element boundaries, unaligned spots and the end. */
function scatteredRanges(sizeBytes: number): Range[] {
  const r: Range[] = [
    { offset: 0, length: 4 * KiB, pattern: 0x11 },
    { offset: 20 * KiB + 512, length: 512, pattern: 0x22 },
    { offset: 64 * KiB - 4 * KiB, length: 8 * KiB, pattern: 0x33 }, // straddles chunk 0/1
    { offset: 1 * MiB + 12345, length: 3000, pattern: 0x44 }, // unaligned both ends
    { offset: 3 * 64 * KiB, length: 192 * KiB, pattern: 0x55 }, // three whole chunks
    { offset: 10 * MiB, length: 1 * MiB, pattern: 0x66, how: 'fua' },
    { offset: ELEMENT_DATA_BYTES - 32 * KiB, length: 64 * KiB, pattern: 0x77 }, // linear: element 0 → 1
    { offset: Math.floor(sizeBytes / 2 / MiB) * MiB + 1 * MiB + 7 * 4096, length: 4096, pattern: 0x88 },
    { offset: sizeBytes - 64 * KiB, length: 64 * KiB, pattern: 0x99 }, // the very end
  ];
  // raid1 is one element long: the linear boundary range does not exist there.
  return r.filter((x) => x.offset + x.length <= sizeBytes).sort((a, b) => a.offset - b.offset);
}

/** Zero gaps between the written ranges (a stray write would show up here). */
function gaps(ranges: readonly Range[]): Range[] {
  const out: Range[] = [];
  for (let i = 0; i + 1 < ranges.length; i++) {
    const end = ranges[i]!.offset + ranges[i]!.length;
    const next = ranges[i + 1]!.offset;
    if (next - end >= 2) out.push({ offset: end, length: Math.min(next - end, 128 * KiB), pattern: 0 });
    if (next - end >= 2 * 128 * KiB) out.push({ offset: next - 128 * KiB, length: 128 * KiB, pattern: 0 });
  }
  return out;
}

function hex(n: number): string { return `0x${n.toString(16)}`; }

describe('qemu-io patterns on linear, raid0 and raid1', () => {
  const fx = useDaemon('qemu-io', [
    { name: 'l0', sizeBytes: 128 * MiB }, { name: 'l1', sizeBytes: 128 * MiB },
    { name: 's0', sizeBytes: 128 * MiB }, { name: 's1', sizeBytes: 128 * MiB }, { name: 's2', sizeBytes: 128 * MiB },
    { name: 'm0', sizeBytes: 128 * MiB }, { name: 'm1', sizeBytes: 128 * MiB },
  ], [
    { name: 'lin', layout: 'linear', elements: ['l0', 'l1'] },
    { name: 'stripe', layout: 'raid0', elements: ['s0', 's1', 's2'], chunkKiB: 64 },
    { name: 'mirror', layout: 'raid1', elements: ['m0', 'm1'] },
  ]);

  for (const volume of ['lin', 'stripe', 'mirror']) {
    it(`${volume}: write -P at scattered offsets, read -P back on a new connection, gaps stay zero`, async () => {
      const uri = fx.daemon.uri(volume);
      const size = await exportSize(uri);
      expect(size).toBeGreaterThanOrEqual(ELEMENT_DATA_BYTES);
      const ranges = scatteredRanges(size);
      const writes = ranges.map((x) => `write${x.how === 'fua' ? ' -f' : ''} -P ${hex(x.pattern)} ${x.offset} ${x.length}`);
      const w = await qemuIo(uri, [...writes, 'flush']);
      expect(qemuIoFailed(w), explain(w)).toBe(false);

      const reads = [...ranges, ...gaps(ranges)].map((x) => `read -P ${hex(x.pattern)} ${x.offset} ${x.length}`);
      const r = await qemuIo(uri, reads);
      expect(qemuIoFailed(r), explain(r)).toBe(false);
      expect(r.stdout.match(/^read /gm)?.length).toBe(reads.length);
    });

    it(`${volume}: write zeroes (-z), discard and FUA writes read back as expected`, async () => {
      const uri = fx.daemon.uri(volume);
      const base = 40 * MiB;
      const w = await qemuIo(uri, [
        `write -P 0xab ${base} 1M`,
        `write -z ${base} 256k`, // NBD_CMD_WRITE_ZEROES
        `write -z -u ${base + 256 * KiB} 256k`, // WRITE_ZEROES allowing holes
        `discard ${base + 512 * KiB} 128k`, // NBD_CMD_TRIM: contents unspecified after
        `write -f -P 0xcd ${base + 768 * KiB} 256k`, // FUA
        'flush',
      ]);
      expect(qemuIoFailed(w), explain(w)).toBe(false);
      const r = await qemuIo(uri, [
        `read -P 0 ${base} 512k`,
        `read -P 0xab ${base + 640 * KiB} 128k`,
        `read -P 0xcd ${base + 768 * KiB} 256k`,
      ]);
      expect(qemuIoFailed(r), explain(r)).toBe(false);
    });
  }

  it('two qemu-io clients at once on different volumes see only their own data', async () => {
    const [a, b] = await Promise.all([
      qemuIo(fx.daemon.uri('lin'), ['write -P 0x3c 80M 4M', 'read -P 0x3c 80M 4M']),
      qemuIo(fx.daemon.uri('stripe'), ['write -P 0xc3 80M 4M', 'read -P 0xc3 80M 4M']),
    ]);
    expect(qemuIoFailed(a), explain(a)).toBe(false);
    expect(qemuIoFailed(b), explain(b)).toBe(false);
    const c = await qemuIo(fx.daemon.uri('mirror'), ['read -P 0 80M 4M']);
    expect(qemuIoFailed(c), explain(c)).toBe(false);
  });
});
