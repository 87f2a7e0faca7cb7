// io_uring through the addon against a temp file on a real disk: bytes written through the ring
// read back with node:fs (and the other way round), errors come back as results, bad batches are
// refused whole, and the off switches answer { ring: null, reason }.
import { closeSync, existsSync, fstatSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { ioBackendInfo, openUring, putUringRecord, URING_RECORD_F64S, UringOp, type UringRing } from '../src/uring.js';
import { addonFile, makeDiskDir, removeDir } from './helpers.js';

const built = existsSync(addonFile) && process.env['ONESTACK_NATIVE'] !== 'off' && process.env['ONESTACK_URING'] !== 'off';
const probe = built ? ioBackendInfo() : { backend: 'sync', reason: 'not probed' };
const skipWhy = !built
  ? `addon not built (${addonFile} missing; run pnpm build:native), or ONESTACK_NATIVE/ONESTACK_URING=off`
  : `the kernel refuses io_uring here: ${probe.reason}`;
const usable = built && probe.backend === 'io_uring';

const KiB = 1024;
const EBADF = 9;

/** A Buffer over the same bytes (Uint8Array has no equals; Buffer.from accepts a SAB). */
function bytes(view: Uint8Array): Buffer {
  return Buffer.from(view.buffer, view.byteOffset, view.byteLength);
}

function fill(view: Uint8Array, seed: number): void {
  for (let i = 0; i < view.length; i++) view[i] = (i * 13 + seed) & 0xff || 1;
}

describe.skipIf(!usable)(`io_uring ring (skipped when ${skipWhy})`, () => {
  let dir: string | null = null;
  let ring: UringRing | null = null;
  const sab = new SharedArrayBuffer(256 * KiB);
  const slab = new Uint8Array(sab);
  const ops = new Float64Array(32 * URING_RECORD_F64S);
  const results = new Int32Array(32);

  beforeAll(() => {
    dir = makeDiskDir();
    const opened = openUring(32);
    if (opened.ring === null) throw new Error(`openUring failed after the probe worked: ${opened.reason}`);
    ring = opened.ring;
    ring.registerSlab(slab);
  });
  afterAll(() => {
    ring?.close();
    removeDir(dir);
  });

  function ringOf(): UringRing {
    if (ring === null) throw new Error('ring not opened (see beforeAll)');
    return ring;
  }

  it('writes (plain and RWF_DSYNC) and fdatasync land in the file; reads fill the slab', (ctx) => {
    if (dir === null) return ctx.skip('no disk-backed directory');
    const path = join(dir, 'rw.img');
    writeFileSync(path, Buffer.alloc(0));
    const fd = openSync(path, 'r+');
    try {
      fill(slab.subarray(0, 64 * KiB), 3);
      putUringRecord(ops, 0, UringOp.WRITE, fd, 0, 16 * KiB, 0);
      putUringRecord(ops, 1, UringOp.WRITE_DSYNC, fd, 16 * KiB, 16 * KiB, 1024 * KiB);
      putUringRecord(ops, 2, UringOp.WRITE, fd, 32 * KiB, 32 * KiB, 64 * KiB + 512);
      expect(ringOf().submitAndWait(ops, 3, results)).toBe(3);
      expect([...results.subarray(0, 3)]).toEqual([16 * KiB, 16 * KiB, 32 * KiB]);
      putUringRecord(ops, 0, UringOp.FDATASYNC, fd, 0, 0, 0);
      expect(ringOf().submitAndWait(ops, 1, results)).toBe(1);
      expect(results[0]).toBe(0);
      const file = readFileSync(path);
      expect(file.subarray(0, 16 * KiB).equals(slab.subarray(0, 16 * KiB))).toBe(true);
      expect(file.subarray(1024 * KiB, 1040 * KiB).equals(slab.subarray(16 * KiB, 32 * KiB))).toBe(true);
      expect(file.subarray(64 * KiB + 512, 96 * KiB + 512).equals(slab.subarray(32 * KiB, 64 * KiB))).toBe(true);

      // Read them back into other slab ranges, plus one that runs past the end (short: bytes to EOF).
      putUringRecord(ops, 0, UringOp.READ, fd, 128 * KiB, 16 * KiB, 1024 * KiB);
      putUringRecord(ops, 1, UringOp.READ, fd, 144 * KiB, 32 * KiB, 64 * KiB + 512);
      putUringRecord(ops, 2, UringOp.READ, fd, 176 * KiB, 8 * KiB, fstatSync(fd).size - 3 * KiB);
      expect(ringOf().submitAndWait(ops, 3, results)).toBe(3);
      expect([...results.subarray(0, 3)]).toEqual([16 * KiB, 32 * KiB, 3 * KiB]);
      expect(bytes(slab.subarray(128 * KiB, 144 * KiB)).equals(slab.subarray(16 * KiB, 32 * KiB))).toBe(true);
      expect(bytes(slab.subarray(144 * KiB, 176 * KiB)).equals(slab.subarray(32 * KiB, 64 * KiB))).toBe(true);
      expect(bytes(slab.subarray(176 * KiB, 179 * KiB)).equals(file.subarray(file.length - 3 * KiB))).toBe(true);
    } finally {
      closeSync(fd);
    }
  });

  it('a full batch of 32 scattered reads completes every record', (ctx) => {
    if (dir === null) return ctx.skip('no disk-backed directory');
    const path = join(dir, 'many.img');
    const content = Buffer.alloc(512 * KiB);
    fill(content, 9);
    writeFileSync(path, content);
    const fd = openSync(path, 'r');
    try {
      slab.fill(0);
      for (let i = 0; i < 32; i++) putUringRecord(ops, i, UringOp.READ, fd, i * 4 * KiB, 4 * KiB, ((i * 7) % 128) * 4 * KiB);
      expect(ringOf().submitAndWait(ops, 32, results)).toBe(32);
      for (let i = 0; i < 32; i++) {
        expect(results[i]).toBe(4 * KiB);
        const at = ((i * 7) % 128) * 4 * KiB;
        expect(bytes(slab.subarray(i * 4 * KiB, (i + 1) * 4 * KiB)).equals(content.subarray(at, at + 4 * KiB))).toBe(true);
      }
    } finally {
      closeSync(fd);
    }
  });

  it('an I/O error is a -errno result, not a throw, and the others in the batch still run', (ctx) => {
    if (dir === null) return ctx.skip('no disk-backed directory');
    const path = join(dir, 'err.img');
    writeFileSync(path, Buffer.alloc(8 * KiB, 0x5a));
    const fd = openSync(path, 'r');
    try {
      const closedFd = openSync(path, 'r');
      closeSync(closedFd);
      putUringRecord(ops, 0, UringOp.READ, closedFd, 0, 4 * KiB, 0);
      putUringRecord(ops, 1, UringOp.READ, fd, 4 * KiB, 4 * KiB, 0);
      putUringRecord(ops, 2, UringOp.WRITE, fd, 0, 4 * KiB, 0); // opened read-only
      putUringRecord(ops, 3, UringOp.FDATASYNC, closedFd, 0, 0, 0);
      expect(ringOf().submitAndWait(ops, 4, results)).toBe(4);
      expect(results[0]).toBe(-EBADF);
      expect(results[1]).toBe(4 * KiB);
      expect(results[2]).toBe(-EBADF);
      expect(results[3]).toBe(-EBADF);
      expect(slab.subarray(4 * KiB, 8 * KiB).every((b) => b === 0x5a)).toBe(true);
    } finally {
      closeSync(fd);
    }
  });

  it('refuses a batch with any bad record before submitting any of it', (ctx) => {
    if (dir === null) return ctx.skip('no disk-backed directory');
    const path = join(dir, 'bad.img');
    writeFileSync(path, Buffer.alloc(4 * KiB));
    const fd = openSync(path, 'r+');
    try {
      fill(slab.subarray(0, 4 * KiB), 1);
      putUringRecord(ops, 0, UringOp.WRITE, fd, 0, 4 * KiB, 0);
      putUringRecord(ops, 1, UringOp.READ, fd, sab.byteLength - 4 * KiB, 8 * KiB, 0); // past the slab
      expect(() => ringOf().submitAndWait(ops, 2, results)).toThrow(/^EINVAL: submitAndWait: record 1: slab range .* outside the registered slab/);
      expect(readFileSync(path).every((b) => b === 0)).toBe(true); // record 0 never ran
      const cases: [(o: Float64Array) => void, RegExp][] = [
        [(o) => { o[0] = 9; }, /record 0: unknown opcode 9/],
        [(o) => { o[4] = -4096; }, /fileOffsetBytes must be a non-negative integer/],
        [(o) => { o[3] = 1.5; }, /lengthBytes must be a non-negative integer/],
        [(o) => { o[2] = Number.NaN; }, /slabOffsetBytes must be a non-negative integer/],
        [(o) => { o[5] = 1; }, /flags must be 0/],
      ];
      for (const [spoil, message] of cases) {
        putUringRecord(ops, 0, UringOp.WRITE, fd, 0, 4 * KiB, 0);
        spoil(ops);
        expect(() => ringOf().submitAndWait(ops, 1, results)).toThrow(message);
      }
      putUringRecord(ops, 0, UringOp.READ, fd, 0, 4 * KiB, 0);
      expect(() => ringOf().submitAndWait(ops, 33, results)).toThrow(/count 33 outside \[1, 32\]/);
      expect(() => ringOf().submitAndWait(ops, 1, new Int32Array(0))).toThrow(/results holds 0 entries/);
      expect(() => ringOf().submitAndWait(new Int32Array(6) as unknown as Float64Array, 1, results)).toThrow(expect.objectContaining({ code: 'EINVAL' }));
      expect(readFileSync(path).every((b) => b === 0)).toBe(true);
    } finally {
      closeSync(fd);
    }
  });

  it('needs a registered slab for reads and writes, and says EBADF once closed', () => {
    const opened = openUring(4);
    if (opened.ring === null) throw new Error(opened.reason);
    const fresh = opened.ring;
    expect(fresh.entries).toBe(4);
    putUringRecord(ops, 0, UringOp.READ, 0, 0, 512, 0);
    expect(() => fresh.submitAndWait(ops, 1, results)).toThrow(/no slab registered/);
    expect(() => fresh.registerSlab(new Uint8Array(0))).toThrow(/non-empty/);
    fresh.close();
    fresh.close();
    expect(() => fresh.submitAndWait(ops, 1, results)).toThrow(expect.objectContaining({ code: 'EBADF' }));
  });
});

describe('io_uring switches and fallbacks', () => {
  it('ONESTACK_URING=off gives no ring and says so', () => {
    const before = process.env['ONESTACK_URING'];
    process.env['ONESTACK_URING'] = 'off';
    try {
      expect(openUring(8)).toEqual({ ring: null, reason: 'ONESTACK_URING=off' });
    } finally {
      if (before === undefined) delete process.env['ONESTACK_URING'];
      else process.env['ONESTACK_URING'] = before;
    }
  });

  it('ioBackendInfo names the backend and a reason, and is stable', () => {
    const info = ioBackendInfo();
    expect(['io_uring', 'sync']).toContain(info.backend);
    expect(info.reason).toMatch(/\S/);
    if (!built) expect(info.backend).toBe('sync');
    expect(ioBackendInfo()).toEqual(info);
  });

  it('rejects ring sizes the addon would refuse, before touching it', () => {
    expect(() => openUring(0)).toThrow(RangeError);
    expect(() => openUring(4097)).toThrow(RangeError);
  });
});
