// Acceptance: raid1 legs hold identical data after writes through the export; raid0 chunks sit
// where the layout says (chunk k on element k % n at 4 MiB + floor(k / n) × chunk); linear
// continues on element 1 where element 0's data area ends. Leg files are read directly.
import { randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { useDaemon } from './lib/fixture.js';
import { DATA_OFFSET_BYTES, MiB, firstDifference, readAt } from './lib/files.js';
import { exportSize, nbdcopy, qemuIo, qemuIoFailed } from './lib/peers.js';
import { explain } from './lib/proc.js';

const CHUNK_BYTES = 64 * 1024;
const LEGS = 3;
const ELEMENT_BYTES = 64 * MiB;
const ELEMENT_DATA_BYTES = ELEMENT_BYTES - DATA_OFFSET_BYTES;

function hex(n: number): string { return `0x${n.toString(16)}`; }

describe('where the bytes land in the element files', () => {
  const fx = useDaemon('layout', [
    { name: 's0', sizeBytes: ELEMENT_BYTES }, { name: 's1', sizeBytes: ELEMENT_BYTES }, { name: 's2', sizeBytes: ELEMENT_BYTES },
    { name: 'm0', sizeBytes: ELEMENT_BYTES }, { name: 'm1', sizeBytes: ELEMENT_BYTES },
    { name: 'l0', sizeBytes: ELEMENT_BYTES }, { name: 'l1', sizeBytes: ELEMENT_BYTES },
  ], [
    { name: 'stripe', layout: 'raid0', elements: ['s0', 's1', 's2'], chunkKiB: CHUNK_BYTES / 1024 },
    { name: 'mirror', layout: 'raid1', elements: ['m0', 'm1'] },
    { name: 'lin', layout: 'linear', elements: ['l0', 'l1'] },
  ]);
  const image = (name: string): string => {
    const p = fx.images.get(name);
    if (p === undefined) throw new Error(`no image for element ${name}`);
    return p;
  };

  it('raid0: each of 26 random chunks is on element k % 3 at 4 MiB + floor(k / 3) × 64 KiB', async () => {
    const chunks = 26;
    const payload = randomBytes(chunks * CHUNK_BYTES);
    const src = path.join(fx.dir, 'stripe-src.bin');
    await writeFile(src, payload);
    const put = await nbdcopy(src, fx.daemon.uri('stripe'));
    expect(put.code, explain(put)).toBe(0);
    for (let k = 0; k < chunks; k++) {
      const leg = image(`s${k % LEGS}`);
      const at = DATA_OFFSET_BYTES + Math.floor(k / LEGS) * CHUNK_BYTES;
      const got = await readAt(leg, at, CHUNK_BYTES);
      const want = payload.subarray(k * CHUNK_BYTES, (k + 1) * CHUNK_BYTES);
      expect(got.equals(want), `chunk ${k} expected on s${k % LEGS} at byte ${at}`).toBe(true);
    }
  });

  it('raid0: far chunks (including the last) written with qemu-io land on the right element only', async () => {
    const uri = fx.daemon.uri('stripe');
    const size = await exportSize(uri);
    expect(size).toBe(LEGS * ELEMENT_DATA_BYTES);
    const lastChunk = size / CHUNK_BYTES - 1;
    const picks = [700, 1501, 2000, lastChunk];
    const w = await qemuIo(uri, picks.map((k, i) => `write -P ${hex(0x40 + i)} ${k * CHUNK_BYTES} ${CHUNK_BYTES}`));
    expect(qemuIoFailed(w), explain(w)).toBe(false);
    for (const [i, k] of picks.entries()) {
      const at = DATA_OFFSET_BYTES + Math.floor(k / LEGS) * CHUNK_BYTES;
      for (let leg = 0; leg < LEGS; leg++) {
        const got = await readAt(image(`s${leg}`), at, CHUNK_BYTES);
        const want = Buffer.alloc(CHUNK_BYTES, leg === k % LEGS ? 0x40 + i : 0);
        expect(got.equals(want), `chunk ${k}: element s${leg} at byte ${at} should hold ${leg === k % LEGS ? hex(0x40 + i) : 'zeroes'}`).toBe(true);
      }
    }
  });

  it('raid1: after nbdcopy and qemu-io writes both legs hold identical data regions, equal to what was written', async () => {
    const uri = fx.daemon.uri('mirror');
    const size = await exportSize(uri);
    expect(size).toBe(ELEMENT_DATA_BYTES);
    const src = path.join(fx.dir, 'mirror-src.bin');
    const payload = randomBytes(8 * MiB);
    await writeFile(src, payload);
    const put = await nbdcopy(src, uri);
    expect(put.code, explain(put)).toBe(0);
    const w = await qemuIo(uri, [
      `write -P 0x5a ${20 * MiB + 4096} 300k`,
      `write -P 0xa5 ${size - 1 * MiB} 1M`,
      `write -z ${1 * MiB} 64k`,
      'flush',
    ]);
    expect(qemuIoFailed(w), explain(w)).toBe(false);
    const [m0, m1] = [image('m0'), image('m1')];
    // The whole data area, past the 4 MiB header, must match byte for byte.
    expect(await firstDifference(m0, m1, DATA_OFFSET_BYTES, ELEMENT_DATA_BYTES), 'first differing byte of the data areas').toBe(-1);
    payload.fill(0, 1 * MiB, 1 * MiB + 64 * 1024);
    const head = await readAt(m0, DATA_OFFSET_BYTES, payload.length);
    expect(head.equals(payload), 'leg m0 starts (at 4 MiB) with the copied file').toBe(true);
    expect((await readAt(m1, DATA_OFFSET_BYTES + size - 1 * MiB, 1 * MiB)).equals(Buffer.alloc(1 * MiB, 0xa5))).toBe(true);
  });

  it('linear: bytes before the element boundary are on l0, after it on l1', async () => {
    const uri = fx.daemon.uri('lin');
    expect(await exportSize(uri)).toBe(2 * ELEMENT_DATA_BYTES);
    const w = await qemuIo(uri, [`write -P 0x71 ${ELEMENT_DATA_BYTES - 64 * 1024} 128k`]);
    expect(qemuIoFailed(w), explain(w)).toBe(false);
    const tail0 = await readAt(image('l0'), DATA_OFFSET_BYTES + ELEMENT_DATA_BYTES - 64 * 1024, 64 * 1024);
    const head1 = await readAt(image('l1'), DATA_OFFSET_BYTES, 64 * 1024);
    expect(tail0.equals(Buffer.alloc(64 * 1024, 0x71)), 'end of l0').toBe(true);
    expect(head1.equals(Buffer.alloc(64 * 1024, 0x71)), 'start of l1 data area').toBe(true);
    const after1 = await readAt(image('l1'), DATA_OFFSET_BYTES + 64 * 1024, 64 * 1024);
    expect(after1.equals(Buffer.alloc(64 * 1024)), 'l1 past the write is untouched').toBe(true);
  });
});
