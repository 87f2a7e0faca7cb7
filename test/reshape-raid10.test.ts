// raid10 through the reshape machinery (issue 11 item 3; docs/reshape.md "raid10"): with the built
// daemon and real peers — a raid10 (near-2) gains a mirror pair (4 → 6) while fio verify writes one
// region and qemu-io another; the rest of the volume must equal a reference file with the same
// bytes (sha256), the new tail reads as zeroes, nbdinfo shows the new size, and the two legs of
// every pair hold the same data area byte for byte. A raid1 of 2 legs becomes a raid10 of 4. A
// kill -9 in the middle (steps slowed by ONESTACK_RESHAPE_STEP_DELAY_MS) resumes after the restart,
// fio --verify_only passes during and after, and it ends with the same sha256. Refusals say why.
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DATA_OFFSET_BYTES, MiB, readAt, sha256Range } from './lib/files.js';
import { exportSize, qemuIo, qemuIoFailed } from './lib/peers.js';
import { explain, missingTools, sleep } from './lib/proc.js';
import { DATA_BYTES, FIO_BYTES, ReshapeHarness, crashAndResume, fioThenMidReshape, fioVerifyOnly, underFio, type ReshapeView } from './lib/reshape-harness.js';

const missing = missingTools(['fio', 'nbdcopy', 'qemu-io', 'nbdinfo']);

class Harness extends ReshapeHarness {
  /** The data areas of the two legs of every pair are identical (the daemon stopped: nothing in flight). */
  async expectPairsEqual(members: readonly string[]): Promise<void> {
    for (let k = 0; k < members.length; k += 2) {
      const [a, b] = await Promise.all([0, 1].map((i) => sha256Range(path.join(this.dir, `${members[k + i]}.img`), DATA_OFFSET_BYTES, DATA_BYTES)));
      expect(a, `legs ${members[k]} and ${members[k + 1]} of pair ${k / 2}`).toBe(b);
    }
  }

  /** Every leg carries a write-intent bitmap again at 64 KiB (the area held the reshape backups meanwhile). */
  async expectBitmaps(members: readonly string[]): Promise<void> {
    for (const m of members) expect((await readAt(path.join(this.dir, `${m}.img`), 64 * 1024, 8)).toString('latin1'), `bitmap of ${m}`).toBe('OSBITMAP');
  }
}

async function untilOptimal(h: Harness, name: string): Promise<void> {
  const deadline = Date.now() + 60_000;
  let v = await h.volume(name);
  while (v.state !== 'optimal' && Date.now() < deadline) {
    await sleep(100);
    v = await h.volume(name);
  }
  expect(v.state, `${name} optimal after its resync`).toBe('optimal');
}

describe.skipIf(missing !== null)(`raid10 reshape under fio verify${missing !== null ? ` (skipped: ${missing})` : ''}`, () => {
  const h = new Harness('reshape-raid10');
  beforeAll(() => h.start(['p0', 'p1', 'p2', 'p3', 'p4', 'p5', 'm0', 'm1', 'm2', 'm3', 'q0', 'q1', 'q2', 'q3', 'q4', 'q5', 'n0', 'n1', 'n2', 'n3']), 60_000);
  afterAll(() => h.stop());

  it('raid10 4→6 under fio verify: fio clean, the rest equals the reference, new tail zero, nbdinfo shows the new size, pairs equal', async () => {
    const members = ['p0', 'p1', 'p2', 'p3', 'p4', 'p5'];
    await h.create('t', 'raid10', members.slice(0, 4));
    const c0 = 2 * DATA_BYTES;
    const c1 = 3 * DATA_BYTES;
    expect((await h.volume('t')).sizeBytes).toBe(c0);
    const ref = await h.fill('t');
    let seen: ReshapeView | null | undefined = null;
    await underFio(h, 't', ref, async () => {
      const r = await h.cli(['volume', 'reshape', 't', '--add', 'p4,p5', '--max-mib-per-sec', '16']);
      expect(r.code, explain(r)).toBe(0);
      expect(r.stdout).toMatch(/volume t: reshape raid10 4→6: \d+% \(.* of 64 MiB\)/);
      seen = (await h.volume('t')).reshape;
    });
    const v = await h.untilReshaped('t');
    expect(seen, 'status showed the reshape while it ran').toMatchObject({ from: { layout: 'raid10', count: 4 }, to: { layout: 'raid10', count: 6 }, totalBytes: c0, sizeBytes: c1 });
    expect(v).toMatchObject({ layout: 'raid10', state: 'optimal', sizeBytes: c1 });
    expect(v.elements.map((e) => [e.name, e.state])).toEqual(members.map((n) => [n, 'active']));
    expect(await exportSize(h.d.uri('t')), 'a new nbdinfo connection sees the new size').toBe(c1);
    await fioVerifyOnly(h, 't');
    await h.expectMatches('t', ref, c0, c1, FIO_BYTES);
    // Writes after the finish go through the re-armed bitmap to both legs; a clean restart keeps all.
    const w2 = await qemuIo(h.d.uri('t'), [`write -P 0x77 ${c0 + MiB} 64k`, 'flush']);
    expect(qemuIoFailed(w2), explain(w2)).toBe(false);
    await h.d.stop();
    await h.expectPairsEqual(members);
    await h.expectBitmaps(members);
    await h.restart();
    expect(await h.volume('t')).toMatchObject({ layout: 'raid10', state: 'optimal', sizeBytes: c1 });
    const back = await qemuIo(h.d.uri('t'), [`read -P 0x77 ${c0 + MiB} 64k`]);
    expect(qemuIoFailed(back), explain(back)).toBe(false);
  }, 240_000);

  it('raid1 (2 legs) → raid10 of 4 (--layout raid10): every byte kept, new size, pairs equal', async () => {
    const members = ['m0', 'm1', 'm2', 'm3'];
    await h.create('m', 'raid1', members.slice(0, 2));
    const ref = await h.fill('m');
    const r = await h.cli(['volume', 'reshape', 'm', '--add', 'm2,m3', '--layout', 'raid10', '--watch']);
    expect(r.code, explain(r)).toBe(0);
    expect(r.stdout).toMatch(/volume m: reshaped: raid10, 4 elements/);
    const v = await h.untilReshaped('m');
    expect(v).toMatchObject({ layout: 'raid10', state: 'optimal', sizeBytes: 2 * DATA_BYTES });
    expect(await exportSize(h.d.uri('m'))).toBe(2 * DATA_BYTES);
    await h.expectMatches('m', ref, DATA_BYTES, 2 * DATA_BYTES);
    await h.d.stop();
    await h.expectPairsEqual(members);
    await h.expectBitmaps(members);
    await h.restart();
    expect(await h.volume('m')).toMatchObject({ layout: 'raid10', state: 'optimal', sizeBytes: 2 * DATA_BYTES });
  }, 240_000);

  it('raid1 of 3 legs + 1 → raid10 of 4: the third leg becomes a new-geometry element; every byte kept, pairs equal', async () => {
    const members = ['n0', 'n1', 'n2', 'n3'];
    await h.create('n', 'raid1', members.slice(0, 3));
    const ref = await h.fill('n');
    const r = await h.cli(['volume', 'reshape', 'n', '--add', 'n3', '--layout', 'raid10', '--watch']);
    expect(r.code, explain(r)).toBe(0);
    const v = await h.untilReshaped('n');
    expect(v).toMatchObject({ layout: 'raid10', state: 'optimal', sizeBytes: 2 * DATA_BYTES });
    expect(v.elements.map((e) => e.name)).toEqual(members);
    await h.expectMatches('n', ref, DATA_BYTES, 2 * DATA_BYTES);
    await h.d.stop();
    await h.expectPairsEqual(members);
    await h.restart();
    expect(await h.volume('n')).toMatchObject({ layout: 'raid10', state: 'optimal' });
  }, 120_000);

  it('refusals: an odd count, raid10 → raid5, add-member; each message says why', async () => {
    await h.create('q', 'raid10', ['q0', 'q1', 'q2', 'q3']);
    const odd = await h.cli(['volume', 'reshape', 'q', '--add', 'q4']);
    expect(odd.code, explain(odd)).not.toBe(0);
    expect(odd.stderr).toMatch(/raid10 → raid10 needs an even number of elements.*add 1 more/);
    const other = await h.cli(['volume', 'reshape', 'q', '--add', 'q4,q5', '--layout', 'raid5']);
    expect(other.code, explain(other)).not.toBe(0);
    expect(other.stderr).toMatch(/raid10 → raid5 is not supported yet/);
    const member = await h.cli(['volume', 'add-member', 'q', 'q4']);
    expect(member.code, explain(member)).not.toBe(0);
    expect(member.stderr).toMatch(/onestack volume reshape NAME --add E1,E2/);
    expect(await h.volume('q')).toMatchObject({ layout: 'raid10', state: 'optimal', sizeBytes: 2 * DATA_BYTES });
  }, 60_000);
});

describe.skipIf(missing !== null)(`kill -9 in the middle of a raid10 reshape${missing !== null ? ` (skipped: ${missing})` : ''}`, () => {
  const h = new Harness('reshape-raid10-crash', { ONESTACK_RESHAPE_STEP_DELAY_MS: '300' });
  beforeAll(() => h.start(['k0', 'k1', 'k2', 'k3', 'k4', 'k5']), 60_000);
  afterAll(() => h.stop());

  it('raid10 4→6, kill -9 mid-way: the restart resumes and finishes; fio --verify_only during and after; sha256 equals the reference', async () => {
    const members = ['k0', 'k1', 'k2', 'k3', 'k4', 'k5'];
    await h.create('k', 'raid10', members.slice(0, 4));
    const c0 = 2 * DATA_BYTES;
    const c1 = 3 * DATA_BYTES;
    const ref = await h.fill('k');
    const r = await h.cli(['volume', 'reshape', 'k', '--add', 'k4,k5']);
    expect(r.code, explain(r)).toBe(0);
    await crashAndResume(h, 'k', await fioThenMidReshape(h, 'k'), c0);
    const done = await h.untilReshaped('k');
    expect(done).toMatchObject({ layout: 'raid10', sizeBytes: c1 });
    // No bitmap while it reshaped: after the crash the finish resyncs the pairs in full (reshape-finish.ts).
    expect(h.d.stderr + h.d.stdout).toMatch(/volume k: no usable write-intent bitmap .*the resync copies everything/);
    await untilOptimal(h, 'k');
    expect(await exportSize(h.d.uri('k'))).toBe(c1);
    await fioVerifyOnly(h, 'k');
    await h.expectMatches('k', ref, c0, c1, FIO_BYTES);
    await h.d.stop();
    await h.expectPairsEqual(members);
    await h.restart();
    expect(await h.volume('k')).toMatchObject({ layout: 'raid10', state: 'optimal', sizeBytes: c1 });
  }, 240_000);
});
