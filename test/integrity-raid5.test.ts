// Acceptance (issue 10, raid5/raid6): per-block checksums on every unit of a stripe, data and
// parity. raid5 over 3 local legs + 1 nbdkit leg and raid6 over 5 local legs, RAM read cache off.
// Bytes flipped behind the daemon's back in a data unit (local, remote; raid6: the same block of
// two units of one row) are caught on read: the client gets the original bytes, the element's
// counters rise (and no other's), the leg holds the right bytes again, and the integrity map marks
// the block repaired. A flipped parity unit (never read by a client) is found by scrub, named per
// element, repaired, and a second scrub reports zero. A partial-row write over bad parity and a bad
// data block of another unit bakes neither into parity. kill -9 under heavy writes, restart: reading
// everything back counts no mismatch and a scrub finds none. Degraded (raid5: the remote leg gone,
// then missing at start; raid6: a leg failed) with bad rebuild inputs beyond what parity covers:
// the client gets EIO, never wrong bytes. `onestack volume create --integrity` on raid5.
import { randomFillSync } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLI_MAIN, Daemon, REPO_ROOT } from './lib/daemon.js';
import { DATA_OFFSET_BYTES, flipBytes, MiB, readAt, removeDir, sparseFile, tempDir, writeConfig } from './lib/files.js';
import { badParityRows, legRoles } from './lib/parity.js';
import { nbdcopy, qemuIo, qemuIoFailed } from './lib/peers.js';
import { explain, missingTools, run, runOk, sleep } from './lib/proc.js';
import { startNbdkit, type NbdkitPeer } from './lib/remotes.js';

const CHUNK_BYTES = 64 * 1024;
const BLOCK_BYTES = 4096;
// ~17 MiB of data + its checksum area (data / 1024) after the 4 MiB header: volumes of ~50 MiB.
const ELEMENT_BYTES = DATA_OFFSET_BYTES + 17 * MiB;
const PATTERN_BYTES = 8 * MiB;
/** Where the degraded test writes its qemu-io pattern: past the pattern and the kill -9 writes. */
const DEGRADED_AT = 44 * MiB;
const missing = missingTools(['nbdkit', 'qemu-io', 'nbdcopy', 'nbdinfo', 'fio']);

interface Counts { mismatches: number; repaired: number; unrecoverable: number }
interface ElementView { name: string; state: string; integrity?: Counts }
interface VolumeView { name: string; state: string; integrity?: boolean; elements: ElementView[]; rebuild?: unknown }
interface ScrubResult { outcome: string; mismatchedUnits: number; byElement?: { element: string; badBlocks: number; repairedBlocks: number; unrecoverableBlocks: number }[] }
const ZERO: Counts = { mismatches: 0, repaired: 0, unrecoverable: 0 };

const R5 = { name: 'r5', np: 1 as const, legs: ['a0', 'a1', 'a2', 'n0'] };
const R6 = { name: 'r6', np: 2 as const, legs: ['b0', 'b1', 'b2', 'b3', 'b4'] };
type Vol = typeof R5 | typeof R6;

/** Where volume byte `volumeOffset` lives: its leg (role) and the byte offset in that leg's file. */
function dataAt(v: Vol, volumeOffset: number): { role: number; leg: string; fileOffset: number; row: number } {
  const k = v.legs.length - v.np;
  const chunk = Math.floor(volumeOffset / CHUNK_BYTES);
  const row = Math.floor(chunk / k);
  const role = legRoles(v.legs.length, v.np, row).data[chunk % k]!;
  return { role, leg: v.legs[role]!, row, fileOffset: DATA_OFFSET_BYTES + row * CHUNK_BYTES + (volumeOffset % CHUNK_BYTES) };
}

/** Volume offset of byte `within` of data index j of `row`. */
function volumeOffsetOf(v: Vol, row: number, j: number, within: number): number {
  return (row * (v.legs.length - v.np) + j) * CHUNK_BYTES + within;
}

/** The P unit of `row`: its leg and the file offset of byte `within`. */
function parityAt(v: Vol, row: number, within: number): { role: number; leg: string; fileOffset: number } {
  const role = legRoles(v.legs.length, v.np, row).p;
  return { role, leg: v.legs[role]!, fileOffset: DATA_OFFSET_BYTES + row * CHUNK_BYTES + within };
}

/** The first row at or after `fromRow` whose data index j sits on `role`. */
function rowWithData(v: Vol, role: number, fromRow: number): { row: number; j: number } {
  for (let row = fromRow; row < fromRow + v.legs.length; row++) {
    const j = legRoles(v.legs.length, v.np, row).data.indexOf(role);
    if (j >= 0) return { row, j };
  }
  throw new Error(`no row from ${fromRow} keeps data on role ${role}`);
}

/** The bytes of `qemu-io read -v` output (lines `OFFSET:  xx xx ... ASCII`). */
function hexDump(out: string): Buffer {
  const bytes: number[] = [];
  for (const line of out.split('\n')) {
    const m = /^[0-9a-f]{8}:((?:\s+[0-9a-f]{2}){1,16})/.exec(line);
    if (m !== null) for (const h of m[1]!.trim().split(/\s+/)) bytes.push(parseInt(h, 16));
  }
  return Buffer.from(bytes);
}

const blockOf = (offset: number): number => Math.floor(offset / BLOCK_BYTES) * BLOCK_BYTES;

describe.skipIf(missing !== null)(`integrity on raid5 (local + nbdkit) and raid6${missing !== null ? ` (skipped: ${missing})` : ''}`, () => {
  let dir = '';
  let daemon: Daemon | null = null;
  let remote: NbdkitPeer | null = null;
  let configPath = '';
  const src = Buffer.alloc(PATTERN_BYTES);
  const file = (leg: string): string => path.join(dir, `${leg}.img`);
  const cli = (args: readonly string[]) => run(process.execPath, [CLI_MAIN, ...args, '--api', `127.0.0.1:${daemon!.apiPort}`],
    { timeoutMs: 60_000, cwd: REPO_ROOT, env: { ...process.env, ONESTACK_DATA_DIR: daemon!.dataDir } });

  async function vol(name: string): Promise<VolumeView> {
    const v = (await daemon!.status()).volumes.find((x) => x.name === name) as unknown as VolumeView | undefined;
    if (v === undefined) throw new Error(`no volume ${name} in status`);
    return v;
  }

  async function counts(v: Vol): Promise<Record<string, Counts>> {
    const view = await vol(v.name);
    return Object.fromEntries(view.elements.map((e) => [e.name, e.integrity ?? { mismatches: -1, repaired: -1, unrecoverable: -1 }]));
  }

  /** nbdcopy of the whole volume: its first PATTERN_BYTES must be the source, byte for byte. */
  async function readsBackRight(v: Vol, label: string): Promise<void> {
    const out = path.join(dir, `${v.name}-${label}.raw`);
    const r = await nbdcopy(daemon!.uri(v.name), out);
    expect(r.code, explain(r) + daemon!.logs()).toBe(0);
    const back = await readAt(out, 0, PATTERN_BYTES);
    const at = back.findIndex((b, i) => b !== src[i]);
    expect(at, `${v.name} (${label}): first wrong byte of the read`).toBe(-1);
  }

  /** The leg file holds `want` at `fileOffset` (polled briefly: the rewrite may trail the reply). */
  async function legHolds(leg: string, fileOffset: number, want: Buffer): Promise<void> {
    let got: Buffer = Buffer.alloc(0);
    for (let i = 0; i < 50; i++) {
      got = await readAt(file(leg), fileOffset, want.length);
      if (got.equals(want)) return;
      await sleep(100);
    }
    expect(got.equals(want), `${leg} at file offset ${fileOffset}: not repaired\n${daemon!.logs()}`).toBe(true);
  }

  beforeAll(async () => {
    dir = tempDir('integrity-raid5');
    await sparseFile(file('n0'), ELEMENT_BYTES);
    // Slow remote writes widen the window in which a kill -9 finds n0's data and checksums apart.
    remote = await startNbdkit(['--filter=delay', 'file', file('n0'), 'wdelay=5ms']);
    const local = (name: string) => ({ name, sizeBytes: ELEMENT_BYTES });
    ({ configPath } = await writeConfig(dir, [...['a0', 'a1', 'a2'].map(local), { name: 'n0', uri: remote.uri, options: { timeoutMs: 3000 } },
      ...R6.legs.map(local), ...['c0', 'c1', 'c2'].map(local)],
    [R5, R6].map((v) => ({ name: v.name, layout: v.np === 1 ? 'raid5' as const : 'raid6' as const, elements: v.legs, chunkKiB: CHUNK_BYTES / 1024, integrity: true })),
    // RAM read cache off: a cached block was verified when it was filled, a re-read would never reach a leg.
    ['cache: { readMiB: 0 }']));
    daemon = await Daemon.start({ dataDir: path.join(dir, 'data'), configPath });
    randomFillSync(src);
    writeFileSync(path.join(dir, 'src.bin'), src);
  }, 60_000);

  afterAll(async () => {
    await daemon?.stop();
    await remote?.stop();
    if (dir !== '') removeDir(dir);
  });

  it('both volumes have integrity on; a random pattern is written and reads back with no mismatch', async () => {
    for (const v of [R5, R6]) {
      expect((await vol(v.name)).integrity, v.name).toBe(true);
      const up = await nbdcopy(path.join(dir, 'src.bin'), daemon!.uri(v.name), ['--flush']);
      expect(up.code, explain(up)).toBe(0);
      await readsBackRight(v, 'written');
      expect(Object.values(await counts(v)).every((c) => c.mismatches === 0), JSON.stringify(await counts(v))).toBe(true);
    }
  }, 60_000);

  const repairedBlocks: number[] = [];
  for (const leg of ['a1', 'n0']) {
    it(`r5: a byte flipped in a data unit of ${leg}: original bytes served, ${leg} counted (no other leg), leg repaired`, async () => {
      const { row, j } = rowWithData(R5, R5.legs.indexOf(leg), 3);
      const at = volumeOffsetOf(R5, row, j, 3 * BLOCK_BYTES + 123);
      const where = dataAt(R5, at);
      expect(where.leg).toBe(leg);
      const block = blockOf(at);
      const fileBlock = where.fileOffset - (at - block);
      expect(await readAt(file(leg), fileBlock, BLOCK_BYTES)).toEqual(src.subarray(block, block + BLOCK_BYTES));
      const before = await counts(R5);
      flipBytes(file(leg), where.fileOffset);
      await readsBackRight(R5, `flip-${leg}`);
      const after = await counts(R5);
      for (const e of R5.legs) {
        if (e === leg) {
          expect(after[e]!.mismatches, `${e}: ${JSON.stringify(after)}\n${daemon!.logs()}`).toBeGreaterThan(before[e]!.mismatches);
          expect(after[e]!.repaired).toBeGreaterThan(before[e]!.repaired);
          expect(after[e]!.unrecoverable).toBe(0);
        } else {
          expect(after[e], `${e} must not count ${leg}'s block`).toEqual(before[e]);
        }
      }
      await legHolds(leg, fileBlock, src.subarray(block, block + BLOCK_BYTES));
      repairedBlocks.push(block);
    }, 120_000);
  }

  it('r5: nbdinfo --map=x-onestack:integrity marks exactly the repaired blocks (flag 2)', async () => {
    const r = await runOk('nbdinfo', ['--map=x-onestack:integrity', '--json', daemon!.uri('r5')], { timeoutMs: 30_000 });
    const flagged = (JSON.parse(r.stdout) as { offset: number; length: number; type: number }[]).filter((e) => e.type !== 0)
      .map(({ offset, length, type }) => ({ offset, length, type }));
    expect(flagged).toEqual([...repairedBlocks].sort((a, b) => a - b).map((offset) => ({ offset, length: BLOCK_BYTES, type: 2 })));
  }, 60_000);

  it('r5: a flipped parity unit (remote) and data unit (local) are named by scrub, repaired, and a second scrub finds none', async () => {
    const rowP = [4, 5, 6, 7].find((row) => parityAt(R5, row, 0).leg === 'n0')!;
    const p = parityAt(R5, rowP, 5 * BLOCK_BYTES + 7);
    const { row: rowD, j } = rowWithData(R5, R5.legs.indexOf('a2'), 9);
    const d = dataAt(R5, volumeOffsetOf(R5, rowD, j, 2 * BLOCK_BYTES - 5)); // 10 bytes over two blocks
    const pBlock = p.fileOffset - 7;
    const dBlocks = d.fileOffset - (BLOCK_BYTES - 5);
    const pWant = await readAt(file('n0'), pBlock, BLOCK_BYTES);
    const dWant = await readAt(file('a2'), dBlocks, 2 * BLOCK_BYTES);
    flipBytes(file('n0'), p.fileOffset);
    flipBytes(file('a2'), d.fileOffset, 10);

    const check = await cli(['volume', 'scrub', 'r5', '--wait', '--json']);
    expect(check.code, explain(check)).toBe(1);
    expect((JSON.parse(check.stdout) as ScrubResult).byElement, check.stdout).toEqual([
      { element: 'a2', badBlocks: 2, repairedBlocks: 0, unrecoverableBlocks: 0 },
      { element: 'n0', badBlocks: 1, repairedBlocks: 0, unrecoverableBlocks: 0 },
    ]);
    const repair = await cli(['volume', 'scrub', 'r5', '--repair', '--wait', '--json']);
    expect(repair.code, explain(repair)).toBe(0);
    expect((JSON.parse(repair.stdout) as ScrubResult).byElement, repair.stdout).toEqual([
      { element: 'a2', badBlocks: 2, repairedBlocks: 2, unrecoverableBlocks: 0 },
      { element: 'n0', badBlocks: 1, repairedBlocks: 1, unrecoverableBlocks: 0 },
    ]);
    const again = await cli(['volume', 'scrub', 'r5', '--wait', '--json']);
    expect(again.code, explain(again)).toBe(0);
    expect(JSON.parse(again.stdout)).toMatchObject({ outcome: 'done', mismatchedUnits: 0, byElement: [] });
    expect((await readAt(file('n0'), pBlock, BLOCK_BYTES)).equals(pWant), 'n0 parity block repaired').toBe(true);
    expect((await readAt(file('a2'), dBlocks, 2 * BLOCK_BYTES)).equals(dWant), 'a2 data blocks repaired').toBe(true);
    expect(await badParityRows(R5.legs.map(file), 1, CHUNK_BYTES, Math.ceil(PATTERN_BYTES / (3 * CHUNK_BYTES)))).toEqual([]);
    await readsBackRight(R5, 'scrubbed');
  }, 180_000);

  it('r6: the same block of two data units of one row flipped in two legs: read right, both counted, both repaired', async () => {
    const row = 6;
    const within = 4 * BLOCK_BYTES + 50;
    const roles = legRoles(R6.legs.length, 2, row).data.slice(0, 2);
    const before = await counts(R6);
    const wants = roles.map((role, j) => {
      const block = blockOf(volumeOffsetOf(R6, row, j, within));
      return { leg: R6.legs[role]!, fileBlock: DATA_OFFSET_BYTES + row * CHUNK_BYTES + blockOf(within), want: src.subarray(block, block + BLOCK_BYTES) };
    });
    for (const w of wants) {
      expect(await readAt(file(w.leg), w.fileBlock, BLOCK_BYTES)).toEqual(w.want);
      flipBytes(file(w.leg), w.fileBlock + (within % BLOCK_BYTES));
    }
    await readsBackRight(R6, 'double-flip');
    const after = await counts(R6);
    for (const e of R6.legs) {
      if (wants.some((w) => w.leg === e)) {
        expect(after[e]!.mismatches, `${e}: ${JSON.stringify(after)}\n${daemon!.logs()}`).toBeGreaterThan(before[e]!.mismatches);
        expect(after[e]!.repaired).toBeGreaterThan(before[e]!.repaired);
      } else {
        expect(after[e], `${e} must not count`).toEqual(before[e]);
      }
    }
    for (const w of wants) await legHolds(w.leg, w.fileBlock, w.want);
  }, 120_000);

  for (const v of [R5, R6]) {
    it(`${v.name}: a partial-row write over a row with a bad parity block and a bad block of another data unit bakes neither into parity`, async () => {
      // Row 14, data index 0, blocks 4..7 written; P bad at block 5, data index 1 bad at block 6
      // (a read-modify-write reads P, a reconstruct-write reads index 1: both must be verified).
      const row = 14;
      const roles = legRoles(v.legs.length, v.np, row);
      const at = volumeOffsetOf(v, row, 0, 4 * BLOCK_BYTES);
      flipBytes(file(v.legs[roles.p]!), parityAt(v, row, 5 * BLOCK_BYTES + 11).fileOffset);
      flipBytes(file(v.legs[roles.data[1]!]!), DATA_OFFSET_BYTES + row * CHUNK_BYTES + 6 * BLOCK_BYTES + 22);
      const w = await qemuIo(daemon!.uri(v.name), [`write -P 0x77 ${at} 16k`, 'flush']);
      expect(qemuIoFailed(w), explain(w) + daemon!.logs()).toBe(false);
      src.fill(0x77, at, at + 4 * BLOCK_BYTES); // what both volumes hold there once both ran
      const r = await qemuIo(daemon!.uri(v.name), [`read -P 0x77 ${at} 16k`]);
      expect(qemuIoFailed(r), explain(r)).toBe(false);
      const want = Buffer.from(src);
      want.fill(0x77, at, at + 4 * BLOCK_BYTES);
      const back = path.join(dir, `${v.name}-rmw.raw`);
      const down = await nbdcopy(daemon!.uri(v.name), back);
      expect(down.code, explain(down)).toBe(0);
      expect((await readAt(back, 0, PATTERN_BYTES)).findIndex((b, i) => b !== want[i]), `${v.name}: first wrong byte`).toBe(-1);
      // Parity of the row is right on the legs, and a scrub finds no unit failing its checksums.
      expect(await badParityRows(v.legs.map(file), v.np, CHUNK_BYTES, row + 1), daemon!.logs()).toEqual([]);
      const check = await cli(['volume', 'scrub', v.name, '--wait', '--json']);
      expect(check.code, explain(check) + daemon!.logs()).toBe(0);
      expect(JSON.parse(check.stdout)).toMatchObject({ outcome: 'done', mismatchedUnits: 0, byElement: [] });
    }, 120_000);
  }

  it('kill -9 during heavy writes, restart: reading everything back counts no mismatch, flushed data intact', async () => {
    // fio on both volumes over [16M, 40M), killed mid-flight; [0, 8M) was flushed long before.
    const writers = [R5, R6].map((v) => run('fio', ['--name=crash', '--ioengine=nbd', `--uri=${daemon!.uri(v.name)}`, '--rw=randwrite', '--bsrange=4k-192k',
      '--iodepth=32', '--offset=16M', '--size=24M', '--time_based', '--runtime=20', '--output-format=json'], { timeoutMs: 60_000 }));
    await sleep(2500);
    const { dataDir, nbdPort, apiPort } = daemon!;
    await daemon!.crash();
    await Promise.all(writers);
    daemon = await Daemon.start({ dataDir, configPath, nbdPort, apiPort });
    expect(daemon.stderr + daemon.stdout, daemon.logs()).toMatch(/r5 was not closed cleanly: its stripe journal was replayed/);
    for (const v of [R5, R6]) await readsBackRight(v, 'after-crash');
    // Let any resync of the volumes end, then read everything again.
    const deadline = Date.now() + 60_000;
    for (const v of [R5, R6]) {
      while ((await vol(v.name)).rebuild != null && Date.now() < deadline) await sleep(200);
    }
    for (const v of [R5, R6]) {
      await readsBackRight(v, 'after-crash-2');
      const c = await counts(v);
      for (const e of v.legs) expect(c[e], `${v.name}/${e}\n${daemon.logs()}`).toEqual(ZERO);
    }
    // A scrub verifies every unit, parity too, against its checksums: none may fail.
    for (const v of [R5, R6]) {
      const check = await cli(['volume', 'scrub', v.name, '--wait', '--json']);
      expect(check.code, explain(check) + daemon.logs()).toBe(0);
      expect(JSON.parse(check.stdout), v.name).toMatchObject({ outcome: 'done', mismatchedUnits: 0, byElement: [] });
    }
    const rows = Math.floor(40 * MiB / (3 * CHUNK_BYTES));
    expect(await badParityRows(R5.legs.map(file), 1, CHUNK_BYTES, rows), 'r5 parity after the crash').toEqual([]);
  }, 180_000);

  it('onestack volume create --integrity makes a raid5 whose flipped byte is caught and repaired', async () => {
    const created = await cli(['volume', 'create', 'late', '--layout', 'raid5', '--element', 'c0', 'c1', 'c2', '--chunk-kib', '64', '--integrity']);
    expect(created.code, explain(created)).toBe(0);
    expect((await vol('late')).integrity).toBe(true);
    const w = await qemuIo(daemon!.uri('late'), ['write -P 0x6c 0 1m', 'flush']);
    expect(qemuIoFailed(w), explain(w)).toBe(false);
    // Volume byte 200 KiB: chunk 3, row 1 (P on c1), data index 1 -> (1 + 1 + 1) mod 3 = c0.
    const fileOffset = DATA_OFFSET_BYTES + CHUNK_BYTES + 8 * 1024 + 9;
    flipBytes(file('c0'), fileOffset);
    const r = await qemuIo(daemon!.uri('late'), ['read -P 0x6c 0 1m']);
    expect(qemuIoFailed(r), explain(r)).toBe(false);
    const c0 = (await vol('late')).elements.find((e) => e.name === 'c0')?.integrity;
    expect(c0, daemon!.logs()).toEqual({ mismatches: 1, repaired: 1, unrecoverable: 0 });
    await legHolds('c0', blockOf(fileOffset), Buffer.alloc(BLOCK_BYTES, 0x6c));
  }, 60_000);

  it('degraded r5 (the remote leg gone): a rebuild input that fails its checksum gives EIO, never wrong bytes', async () => {
    const d = daemon!;
    const w = await qemuIo(d.uri('r5'), [`write -P 0x3c ${DEGRADED_AT} 1m`, 'flush']);
    expect(qemuIoFailed(w), explain(w)).toBe(false);
    const firstRow = Math.ceil(DEGRADED_AT / (3 * CHUNK_BYTES));
    const { row, j: jRemote } = rowWithData(R5, 3, firstRow); // n0 is role 3
    const jLocal = (jRemote + 1) % 3;
    const within = 6 * BLOCK_BYTES + 300;
    const lost = dataAt(R5, volumeOffsetOf(R5, row, jLocal, within));
    await remote!.stop('SIGKILL');
    // A read of n0's unit fails over to parity; wait until the daemon has failed the leg.
    for (let i = 0; i < 100; i++) {
      const r = await qemuIo(d.uri('r5'), [`read -P 0x3c ${volumeOffsetOf(R5, row, jRemote, 0)} 4k`]);
      expect(qemuIoFailed(r), explain(r)).toBe(false);
      if ((await vol('r5')).elements.find((e) => e.name === 'n0')?.state !== 'active') break;
      await sleep(300);
    }
    expect((await vol('r5')).state, JSON.stringify(await vol('r5'))).toBe('degraded');
    const before = (await counts(R5))[lost.leg]!;
    flipBytes(file(lost.leg), lost.fileOffset);
    const flipped = await readAt(file(lost.leg), blockOf(lost.fileOffset), BLOCK_BYTES);
    // n0's block at the same place needs lost's block to be rebuilt; lost's own block needs n0's.
    async function eioButTheRestReads(): Promise<void> {
      for (const at of [volumeOffsetOf(R5, row, jRemote, within), volumeOffsetOf(R5, row, jLocal, within)]) {
        const r = await qemuIo(daemon!.uri('r5'), [`read -P 0x3c ${blockOf(at)} 4k`]);
        expect(r.stdout + r.stderr, `read at ${at}: ${explain(r)}`).toMatch(/Input\/output error/);
        expect(r.stdout + r.stderr).not.toMatch(/Pattern verification failed/);
      }
      // The other blocks of the row still read right.
      const ok = await qemuIo(daemon!.uri('r5'), [`read -P 0x3c ${volumeOffsetOf(R5, row, jRemote, 0)} 16k`, `read -P 0x3c ${volumeOffsetOf(R5, row, jLocal, 8 * BLOCK_BYTES)} 32k`]);
      expect(qemuIoFailed(ok), explain(ok)).toBe(false);
    }
    await eioButTheRestReads();
    const after = (await counts(R5))[lost.leg]!;
    // Counted unrecoverable (as raid1 does, not also as a mismatch), never repaired.
    expect(after.unrecoverable, `${lost.leg}: ${JSON.stringify(after)}\n${d.logs()}`).toBeGreaterThan(before.unrecoverable);
    expect(after.repaired).toBe(before.repaired);
    // No good copy: the bad block is left as it is, never overwritten with a guess.
    expect(await readAt(file(lost.leg), blockOf(lost.fileOffset), BLOCK_BYTES)).toEqual(flipped);
    // Restarted with the remote still gone (n0 missing from the start): the same.
    const { dataDir, nbdPort, apiPort } = d;
    await d.stop();
    daemon = await Daemon.start({ dataDir, configPath, nbdPort, apiPort });
    expect((await vol('r5')).state).toBe('degraded');
    await eioButTheRestReads();
  }, 120_000);

  it('degraded r6 (a leg failed): one bad input besides the lost leg is rebuilt and repaired; two give EIO', async () => {
    const failed = await cli(['element', 'fail', 'b4']);
    expect(failed.code, explain(failed)).toBe(0);
    expect((await vol('r6')).state).toBe('degraded');
    const { row, j } = rowWithData(R6, 4, 20); // b4 is role 4
    const others = legRoles(R6.legs.length, 2, row).data.filter((role) => role !== 4);
    const lostAt = (block: number): number => volumeOffsetOf(R6, row, j, block * BLOCK_BYTES);
    const legBlock = (role: number, block: number): { leg: string; fileOffset: number } => ({ leg: R6.legs[role]!, fileOffset: DATA_OFFSET_BYTES + row * CHUNK_BYTES + block * BLOCK_BYTES });
    // One bad input (block 2 of another data unit): the lost unit's block 2 is still rebuilt right.
    const one = legBlock(others[0]!, 2);
    const oneWant = await readAt(file(one.leg), one.fileOffset, BLOCK_BYTES);
    const before = (await counts(R6))[one.leg]!;
    flipBytes(file(one.leg), one.fileOffset + 100);
    const r = await qemuIo(daemon!.uri('r6'), [`read -v ${lostAt(2)} 4k`]);
    expect(qemuIoFailed(r), explain(r) + daemon!.logs()).toBe(false);
    expect(hexDump(r.stdout)).toEqual(src.subarray(lostAt(2), lostAt(2) + BLOCK_BYTES));
    const after = (await counts(R6))[one.leg]!;
    expect(after.mismatches, `${one.leg}: ${JSON.stringify(after)}\n${daemon!.logs()}`).toBeGreaterThan(before.mismatches);
    await legHolds(one.leg, one.fileOffset, oneWant);
    // Two bad inputs at block 3 besides the lost leg: more than two parities can rebuild.
    for (const role of others) flipBytes(file(legBlock(role, 3).leg), legBlock(role, 3).fileOffset + 7);
    const eio = await qemuIo(daemon!.uri('r6'), [`read -v ${lostAt(3)} 4k`]);
    expect(eio.stdout + eio.stderr, explain(eio)).toMatch(/Input\/output error/);
    expect(eio.stdout).not.toMatch(/^[0-9a-f]{8}:/m); // no bytes printed
  }, 120_000);
});
