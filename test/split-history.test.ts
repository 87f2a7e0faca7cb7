// The split rule's history ids (docs/durability.md "Which side is newer", rule 6), end to end: two
// nbdkit legs that each served alone and reached the SAME event counter. ra goes away; rb alone
// records it (counter N+1, a new history id) and takes write A; the daemon is killed (SIGKILL, so
// no clean-stop bump). It starts again with rb away and ra back: ra alone serves, its open takes
// it to counter N+1 too (another new history id), and it takes write B. rb answers again with
// counter N+1 — not above the volume's when it left, so the counter rule alone would resync only
// the dirty regions and leave A on rb. Its history id is not the one this volume wrote at N+1: it
// diverged. Outcome: rb is rebuilt in FULL from ra, the legs end identical, A is gone, B is there.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DATA_OFFSET_BYTES, firstDifference, readAt } from './lib/files.js';
import { qemuIo, qemuIoFailed } from './lib/peers.js';
import { explain, missingTools, sleep } from './lib/proc.js';
import { startNbdkit } from './lib/remotes.js';
import { DATA_BYTES, SplitLegs } from './lib/split-legs.js';

const missing = missingTools(['nbdkit', 'qemu-io']);

/** Event counter (bytes 144..152) and history id (284..292) of a leg's superblock, read from its backing file. */
async function superblockOf(file: string): Promise<{ events: number; history: string }> {
  const sb = await readAt(file, 0, 4096);
  return { events: Number(sb.readBigUInt64LE(144)), history: sb.readBigUInt64LE(284).toString(16).padStart(16, '0') };
}

describe.skipIf(missing !== null)(`split rule by history id, two remote legs${missing !== null ? ` (skipped: ${missing})` : ''}`, () => {
  const s = new SplitLegs('split-history', 'hist');
  beforeAll(() => s.setUp(), 60_000);
  afterAll(() => s.tearDown());

  it('both sides alone at the same event counter: told apart by history id, the returning one rebuilt in full', async () => {
    let d = s.daemon!;
    const base = await qemuIo(d.uri('hist'), ['write -P 0x11 0 8M', 'flush']);
    expect(qemuIoFailed(base), explain(base)).toBe(false);
    const together = [await superblockOf(s.file('ra')), await superblockOf(s.file('rb'))];
    expect(together[0], 'both legs: one counter, one history').toEqual(together[1]);
    const [portA, portB] = [s.ra!.port, s.rb!.port];
    await s.ra!.stop('SIGKILL');
    const a = await qemuIo(d.uri('hist'), ['write -P 0x22 1M 64k'], 60_000); // rb alone takes A
    expect(qemuIoFailed(a), explain(a)).toBe(false);
    await s.until(d, 'degraded', (v) => v.state === 'degraded');
    await sleep(500); // rb's superblock records ra's failure: counter + 1, a new history id
    await d.crash(); // no clean stop: rb keeps that counter
    const bSide = await superblockOf(s.file('rb'));
    expect(bSide.events).toBe(together[1]!.events + 1);
    expect(bSide.history).not.toBe(together[1]!.history);

    // ra back, rb away at start-up: ra alone serves; its open brings it to rb's counter, in a history of its own.
    await s.rb!.stop('SIGKILL');
    s.ra = await startNbdkit(['file', s.file('ra')], portA);
    d = await s.start();
    const alone = await s.volume(d);
    expect(alone.elements.map((e) => [e.name, e.state])).toEqual([['ra', 'active'], ['rb', 'stale']]);
    const aSide = await superblockOf(s.file('ra'));
    expect(aSide.events, 'the same counter on both sides').toBe(bSide.events);
    expect(aSide.history).not.toBe(bSide.history);
    const b = await qemuIo(d.uri('hist'), ['write -P 0x33 2M 64k', 'read -P 0x11 1M 64k']);
    expect(qemuIoFailed(b), explain(b)).toBe(false);

    // rb answers again: same counter, another history → full rebuild from the serving side.
    s.rb = await startNbdkit(['file', s.file('rb')], portB);
    const v = await s.until(d, 'optimal after a full rebuild', (x) => x.state === 'optimal' && x.lastRebuild?.outcome === 'done', 45_000);
    expect(v.lastRebuild).toMatchObject({ kind: 'rebuild', doneBytes: DATA_BYTES, totalBytes: DATA_BYTES });
    expect(d.logs()).toMatch(/element rb answers again but diverged \(history [0-9a-f]{16} at event counter \d+, where this volume wrote [0-9a-f]{16}\)/);
    const at = await firstDifference(s.file('ra'), s.file('rb'), DATA_OFFSET_BYTES, DATA_BYTES);
    expect(at, `legs differ at data offset ${at}`).toBe(-1);
    const check = await qemuIo(d.uri('hist'), ['read -P 0x11 1M 64k', 'read -P 0x33 2M 64k', 'read -P 0x11 4M 4M']);
    expect(qemuIoFailed(check), explain(check)).toBe(false);
    // Back together: both legs carry one counter and one (new) history id again.
    const by = Date.now() + 10_000;
    let [x, y] = [await superblockOf(s.file('ra')), await superblockOf(s.file('rb'))];
    while ((x.events !== y.events || x.history !== y.history) && Date.now() < by) {
      await sleep(200); // the superblocks are rewritten just after the rebuild reports done
      [x, y] = [await superblockOf(s.file('ra')), await superblockOf(s.file('rb'))];
    }
    expect(x).toEqual(y);
    expect(x.events).toBeGreaterThan(aSide.events);
  }, 180_000);
});
