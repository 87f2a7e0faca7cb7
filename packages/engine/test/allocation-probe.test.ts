// The local element probe (allocation/probe-local.ts) on real sparse files: SEEK_DATA /
// SEEK_HOLE through the native addon finds exactly the written blocks; without the addon, or
// on anything it cannot tell, the answer is "all data".
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { sparseSeek, sparseSeekUnavailable, type SparseSeek } from '@onestack/native';
import { LocalProbe, walkRuns } from '../src/allocation/probe-local.js';

const MiB = 1024 * 1024;
const KiB = 1024;
let dir: string;
beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'onestack-alloc-probe-'));
});
afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

/** A sparse file of sizeBytes with 0x5a written at each [offset, +length). */
function sparseFile(sizeBytes: number, writes: readonly [number, number][]): string {
  const p = path.join(dir, `img-${Math.random().toString(36).slice(2)}`);
  fs.writeFileSync(p, '');
  fs.truncateSync(p, sizeBytes);
  const fd = fs.openSync(p, 'r+');
  for (const [off, len] of writes) fs.writeSync(fd, Buffer.alloc(len, 0x5a), 0, len, off);
  fs.fsyncSync(fd);
  fs.closeSync(fd);
  return p;
}

const seek = sparseSeek();
/** A block device this process may open read-only, if any (root in CI containers; often none). */
const BLOCK_DEVICE = ['/dev/vda', '/dev/sda', '/dev/nvme0n1', '/dev/loop0'].find((d) => {
  try {
    fs.closeSync(fs.openSync(d, 'r'));
    return fs.statSync(d).isBlockDevice();
  } catch {
    return false;
  }
});
const why = sparseSeekUnavailable() ?? '';

describe.skipIf(seek === null)(`SEEK_DATA / SEEK_HOLE walks (native addon: ${why || 'loaded'})`, () => {
  const s = seek as SparseSeek;
  it('finds the written 4 KiB-aligned ranges exactly, holes between and after', () => {
    const p = sparseFile(16 * MiB, [[4 * MiB, 64 * KiB], [10 * MiB, 4 * KiB]]);
    const fd = fs.openSync(p, 'r');
    try {
      const r = walkRuns(s, fd, 0, 16 * MiB, 100);
      expect(r.startBytes).toBe(0);
      expect(r.runs).toEqual([
        { lengthBytes: 4 * MiB, zero: true }, { lengthBytes: 64 * KiB, zero: false },
        { lengthBytes: 6 * MiB - 64 * KiB, zero: true }, { lengthBytes: 4 * KiB, zero: false },
        { lengthBytes: 6 * MiB - 4 * KiB, zero: true },
      ]);
      // A window inside: starts where asked, cut to the window.
      expect(walkRuns(s, fd, 4 * MiB + 4 * KiB, 1 * MiB, 100).runs).toEqual([{ lengthBytes: 60 * KiB, zero: false }, { lengthBytes: MiB - 60 * KiB, zero: true }]);
      // runsMax stops the walk early, with a correct prefix.
      expect(walkRuns(s, fd, 0, 16 * MiB, 2).runs).toEqual([{ lengthBytes: 4 * MiB, zero: true }, { lengthBytes: 64 * KiB, zero: false }]);
      // Past the file's end is never a hole.
      expect(walkRuns(s, fd, 16 * MiB - 4 * KiB, 8 * KiB, 100).runs).toEqual([{ lengthBytes: 4 * KiB, zero: true }, { lengthBytes: 4 * KiB, zero: false }]);
    } finally {
      fs.closeSync(fd);
    }
  });

  it('counts written-but-unflushed page-cache data as data', () => {
    const p = sparseFile(8 * MiB, []);
    const fd = fs.openSync(p, 'r+');
    try {
      fs.writeSync(fd, Buffer.alloc(4096, 1), 0, 4096, 2 * MiB); // no fsync
      expect(walkRuns(s, fd, 0, 8 * MiB, 100).runs).toEqual([{ lengthBytes: 2 * MiB, zero: true }, { lengthBytes: 4096, zero: false }, { lengthBytes: 6 * MiB - 4096, zero: true }]);
    } finally {
      fs.closeSync(fd);
    }
  });

  it('LocalProbe opens lazily, answers, and reopens after close', () => {
    const p = sparseFile(8 * MiB, [[MiB, 4 * KiB]]);
    const warnings: string[] = [];
    const probe = new LocalProbe(p, s, (m) => warnings.push(m));
    expect(probe.runs(0, 2 * MiB, 10).runs).toEqual([{ lengthBytes: MiB, zero: true }, { lengthBytes: 4 * KiB, zero: false }, { lengthBytes: MiB - 4 * KiB, zero: true }]);
    probe.close();
    expect(probe.runs(MiB, 4 * KiB, 10).runs).toEqual([{ lengthBytes: 4 * KiB, zero: false }]);
    probe.close();
    expect(warnings).toEqual([]);
  });
});

describe('the conservative answers', () => {
  it('without SEEK_DATA (no addon) every element is all data', () => {
    const p = sparseFile(8 * MiB, []);
    const probe = new LocalProbe(p, null, () => {});
    expect(probe.runs(4096, 8192, 10)).toEqual({ startBytes: 4096, runs: [{ lengthBytes: 8192, zero: false }] });
  });
  it('a missing file is data, warned once', () => {
    const warnings: string[] = [];
    const never: SparseSeek = { seekData: () => { throw new Error('not reached'); }, seekHole: () => { throw new Error('not reached'); } };
    const probe = new LocalProbe(path.join(dir, 'gone'), never, (m) => warnings.push(m));
    expect(probe.runs(0, 4096, 10).runs).toEqual([{ lengthBytes: 4096, zero: false }]);
    expect(probe.runs(0, 4096, 10).runs).toEqual([{ lengthBytes: 4096, zero: false }]);
    expect(warnings.length).toBe(1);
    expect(warnings[0]).toMatch(/ENOENT.*answering data/);
  });
  it('a seek that fails (here: a bad fd behind the probe) turns the element to data for good', () => {
    const failing: SparseSeek = { seekData: () => { throw Object.assign(new Error('EINVAL: lseek(SEEK_DATA) failed'), { code: 'EINVAL' }); }, seekHole: () => 0 };
    const p = sparseFile(8 * MiB, []);
    const warnings: string[] = [];
    const probe = new LocalProbe(p, failing, (m) => warnings.push(m));
    expect(probe.runs(0, MiB, 10).runs).toEqual([{ lengthBytes: MiB, zero: false }]);
    expect(probe.runs(0, MiB, 10).runs).toEqual([{ lengthBytes: MiB, zero: false }]);
    expect(warnings).toEqual([expect.stringMatching(/lseek on .* failed: EINVAL.*answering data/)]);
    probe.close();
  });
  it.skipIf(BLOCK_DEVICE === undefined)('a block device answers data (skipped when no readable block device exists here)', () => {
    const probe = new LocalProbe(BLOCK_DEVICE!, seek, () => {});
    expect(probe.runs(0, MiB, 10).runs).toEqual([{ lengthBytes: MiB, zero: false }]);
    probe.close();
  });
});
