// The write hole, closed: a stripe update stopped after its journal records were flushed and only
// part of its in-place writes landed (a simulated crash: the unit never ends, the data path is
// dropped, a new one opens the same files) leaves data and parity disagreeing on disk; replaying
// the journal when the volume is bound makes them agree again, with the new bytes. A transaction
// whose records did not all reach their elements is dropped (it never touched the data area).
import { createHash } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { decodeRecordHeader, arrayIdBytes, RING_BYTES, RING_OFFSET_BYTES } from '../src/datapath/journal-format.js';
import { DATA_OFFSET_BYTES } from '../src/meta/types.js';
import { KiB, pattern, within } from './datapath-harness.js';
import { readFileRange } from './helpers.js';
import { badParityRows, startParity, stopParity, type ParityRig } from './raid56-harness.js';
import { refRoles } from './raid56-ref.js';
import * as fs from 'node:fs';

const sha = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');
const CHUNK = 64 * KiB;

/** Sets up a crash of the next update of `row`: only `inPlace(roles)` get their in-place write; resolves when that happened. */
function crashNext(rig: ParityRig, row: number, inPlace: (roles: readonly number[]) => readonly number[], seen: { roles: readonly number[]; oldInPlace: boolean }): Promise<void> {
  return new Promise((resolve) => {
    rig.dp.stripe(0).faults = {
      afterJournal(r, roles) {
        if (r !== row) return null;
        seen.roles = roles;
        // Journal first: nothing of this update is in place yet.
        seen.oldInPlace = roles.every((role) => sha(readFileRange(rig.paths[role]!, DATA_OFFSET_BYTES + row * CHUNK, CHUNK)) === oldChunks.get(role));
        const allowed = inPlace(roles);
        setTimeout(resolve, 300); // the allowed writes are tiny local ones
        return allowed;
      },
    };
  });
}

const oldChunks = new Map<number, string>();

function rememberRow(rig: ParityRig, row: number): void {
  oldChunks.clear();
  for (let role = 0; role < rig.n; role++) oldChunks.set(role, sha(readFileRange(rig.paths[role]!, DATA_OFFSET_BYTES + row * CHUNK, CHUNK)));
}

/** The crash: the stuck write is abandoned with its data path; a new one opens the same files (replay). */
async function restart(rig: ParityRig, failed: readonly number[] = []): Promise<ParityRig> {
  await rig.dp.close();
  return startParity(rig.layout, rig.n, { reuse: rig, failed });
}

describe('stripe journal replay after a simulated crash', () => {
  let rig: ParityRig | undefined;
  afterEach(() => stopParity(rig));

  it('raid5: data written in place but parity not -> after replay parity agrees and the new data reads back', async () => {
    rig = await startParity('raid5', 4);
    const k = 3;
    const base = pattern(4 * k * CHUNK, 1);
    await rig.dp.volumeIo(0).write(0, base);
    await rig.dp.volumeIo(0).flush();
    rememberRow(rig, 1);
    const seen = { roles: [] as readonly number[], oldInPlace: false };
    const parityRole = refRoles(4, 1, 1).p;
    const crashed = crashNext(rig, 1, (roles) => roles.filter((r) => r !== parityRole), seen);
    const update = pattern(8 * KiB, 2);
    const off = (k + 1) * CHUNK + 12 * KiB; // row 1, data index 1: a read-modify-write
    void rig.dp.volumeIo(0).write(off, update).catch(() => undefined); // never settles: the unit "died"
    await within(crashed, 10_000, 'crash point');
    expect(seen.roles).toContain(parityRole);
    expect(seen.oldInPlace, 'journal records flushed before any in-place write').toBe(true);
    expect(badParityRows(rig, 2), 'the write hole: data new, parity old').toEqual([1]);
    rig = await restart(rig);
    expect(badParityRows(rig, 4)).toEqual([]);
    const want = base.slice();
    want.set(update, off);
    expect(sha(await rig.dp.volumeIo(0).read(0, want.length))).toBe(sha(want));
  });

  it('raid6: a transaction missing a record on a present element is dropped; old data, parity right', async () => {
    rig = await startParity('raid6', 5);
    const base = pattern(3 * 3 * CHUNK, 3);
    await rig.dp.volumeIo(0).write(0, base);
    await rig.dp.volumeIo(0).flush();
    rememberRow(rig, 0);
    const seen = { roles: [] as readonly number[], oldInPlace: false };
    const crashed = crashNext(rig, 0, () => [], seen);
    void rig.dp.volumeIo(0).write(5000, pattern(3000, 4)).catch(() => undefined);
    await within(crashed, 10_000, 'crash point');
    await rig.dp.close();
    // Tear the record on one participant: as if the crash came before its journal write.
    const victim = seen.roles[seen.roles.length - 1]!;
    const ring = readFileRange(rig.paths[victim]!, RING_OFFSET_BYTES, RING_BYTES);
    let newest = -1;
    let at = -1;
    for (let x = 0; x < RING_BYTES; x += 4096) {
      const h = decodeRecordHeader(ring.subarray(x, x + 4096), arrayIdBytes(rig.arrayId));
      if (h !== null && h.seq > newest) [newest, at] = [h.seq, x];
    }
    expect(at).toBeGreaterThanOrEqual(0);
    const fd = fs.openSync(rig.paths[victim]!, 'r+');
    fs.writeSync(fd, new Uint8Array(4096), 0, 4096, RING_OFFSET_BYTES + at);
    fs.closeSync(fd);
    rig = await startParity(rig.layout, rig.n, { reuse: rig });
    expect(badParityRows(rig, 3)).toEqual([]);
    expect(sha(await rig.dp.volumeIo(0).read(0, base.length))).toBe(sha(base));
  });

  it('raid6: replay with a participant lost applies the survivors; the lost element reads back rebuilt with the new bytes', async () => {
    rig = await startParity('raid6', 5);
    const base = pattern(3 * 3 * CHUNK, 5);
    await rig.dp.volumeIo(0).write(0, base);
    await rig.dp.volumeIo(0).flush();
    rememberRow(rig, 2);
    const seen = { roles: [] as readonly number[], oldInPlace: false };
    const roles2 = refRoles(5, 2, 2);
    const update = pattern(2 * CHUNK, 6);
    const off = 2 * 3 * CHUNK + CHUNK; // row 2, data indices 1 and 2 in full: RCW
    const crashed = crashNext(rig, 2, () => [roles2.data[1]!], seen);
    void rig.dp.volumeIo(0).write(off, update).catch(() => undefined);
    await within(crashed, 10_000, 'crash point');
    const lostRole = roles2.data[2]!;
    rig = await restart(rig, [lostRole]);
    expect(badParityRows(rig, 3, [lostRole])).toEqual([]);
    const want = base.slice();
    want.set(update, off);
    expect(sha(await rig.dp.volumeIo(0).read(0, want.length))).toBe(sha(want));
  });
});
