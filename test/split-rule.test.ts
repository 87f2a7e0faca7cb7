// The split rule (docs/durability.md "Which side is newer"), end to end: two nbdkit legs that were
// each the only active leg at different times. rb alone takes write A while ra is away; the daemon
// stops; it starts again with rb away and ra back, so ra alone serves and takes write B; then rb
// answers again while the volume serves from ra. rb's counter is above the volume's when rb went
// away: it diverged. The documented outcome: the serving side (ra) wins, rb is rebuilt in FULL
// from it (a bitmap resync would copy only B's regions and leave A on rb: a silent mix), the legs
// end identical, A is gone and B is there, and the log says what was discarded.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DATA_OFFSET_BYTES, firstDifference } from './lib/files.js';
import { qemuIo, qemuIoFailed } from './lib/peers.js';
import { explain, missingTools, sleep } from './lib/proc.js';
import { startNbdkit } from './lib/remotes.js';
import { DATA_BYTES, SplitLegs } from './lib/split-legs.js';

const missing = missingTools(['nbdkit', 'qemu-io']);

describe.skipIf(missing !== null)(`split rule, two remote legs${missing !== null ? ` (skipped: ${missing})` : ''}`, () => {
  const s = new SplitLegs('split', 'split');
  beforeAll(() => s.setUp(), 60_000);
  afterAll(() => s.tearDown());

  it('each leg alone at a different time: the serving side wins, the diverged leg is rebuilt in full', async () => {
    let d = s.daemon!;
    const base = await qemuIo(d.uri('split'), ['write -P 0x11 0 8M']);
    expect(qemuIoFailed(base), explain(base)).toBe(false);
    const [portA, portB] = [s.ra!.port, s.rb!.port];
    await s.ra!.stop('SIGKILL');
    const a = await qemuIo(d.uri('split'), ['write -P 0x22 1M 64k'], 60_000); // rb alone takes A
    expect(qemuIoFailed(a), explain(a)).toBe(false);
    await s.until(d, 'degraded', (v) => v.state === 'degraded');
    await sleep(500); // rb's superblock records ra's failure
    await d.stop();

    // ra back, rb away at start-up: ra alone serves (it cannot know of A) and takes B.
    await s.rb!.stop('SIGKILL');
    s.ra = await startNbdkit(['file', s.file('ra')], portA);
    d = await s.start();
    const alone = await s.volume(d);
    expect(alone.state).toBe('degraded');
    expect(alone.elements.map((e) => [e.name, e.state])).toEqual([['ra', 'active'], ['rb', 'stale']]);
    const b = await qemuIo(d.uri('split'), ['write -P 0x33 2M 64k', 'read -P 0x11 1M 64k']);
    expect(qemuIoFailed(b), explain(b)).toBe(false);

    // rb answers again while the volume serves from ra: it diverged.
    s.rb = await startNbdkit(['file', s.file('rb')], portB);
    const v = await s.until(d, 'optimal after a full rebuild', (x) => x.state === 'optimal' && x.lastRebuild?.outcome === 'done', 45_000);
    expect(v.lastRebuild).toMatchObject({ kind: 'rebuild', doneBytes: DATA_BYTES, totalBytes: DATA_BYTES });
    expect(d.logs()).toMatch(/element rb answers again but diverged \(event counter \d+ > \d+ when it left\)/);
    const at = await firstDifference(s.file('ra'), s.file('rb'), DATA_OFFSET_BYTES, DATA_BYTES);
    expect(at, `legs differ at data offset ${at}`).toBe(-1);
    const check = await qemuIo(d.uri('split'), ['read -P 0x11 1M 64k', 'read -P 0x33 2M 64k', 'read -P 0x11 4M 4M']);
    expect(qemuIoFailed(check), explain(check)).toBe(false);
  }, 180_000);
});
