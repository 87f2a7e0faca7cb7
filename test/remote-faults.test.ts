// Acceptance (issue 4): remote legs that die, stall or restart. raid1 goes on from the local leg
// without an error reaching the NBD client and `status` names the failed element; a target that
// restarts within timeoutMs is reconnected to and nothing fails.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Daemon } from './lib/daemon.js';
import { DATA_OFFSET_BYTES, MiB, firstDifference, removeDir, sparseFile, tempDir, writeConfig, type ElementSpec, type VolumeSpec } from './lib/files.js';
import { fio, qemuIo, qemuIoFailed } from './lib/peers.js';
import { explain, missingTools, sleep } from './lib/proc.js';
import { startNbdkit, startTgtd, type NbdkitPeer, type TgtdPeer } from './lib/remotes.js';

const ELEMENT_BYTES = DATA_OFFSET_BYTES + 128 * MiB;
const missing = missingTools(['nbdkit', 'tgtd', 'tgtadm', 'fio', 'qemu-io']);

interface Rig {
  readonly dir: string;
  readonly daemon: Daemon;
}

async function startRig(dir: string, elements: readonly ElementSpec[], volumes: readonly VolumeSpec[]): Promise<Rig> {
  const { configPath } = await writeConfig(dir, elements, volumes);
  // The earlier read rule (least queued, alternating): the faulty remote leg must get about half
  // the reads; the latency-aware default (docs/transport.md) would keep them on the local leg.
  return { dir, daemon: await Daemon.start({ dataDir: path.join(dir, 'data'), configPath, env: { ONESTACK_READ_POLICY: 'queue' } }) };
}

function fioVerifyArgs(uri: string): string[] {
  return ['--name=verify', '--ioengine=nbd', `--uri=${uri}`, '--rw=randwrite', '--bs=4k', '--iodepth=16', '--size=48m',
    '--verify=crc32c', '--do_verify=1', '--verify_fatal=1', '--verify_dump=0'];
}

async function elementState(d: Daemon, name: string): Promise<{ state: string; volume: string }> {
  const status = await d.status();
  const vol = status.volumes.find((v) => v.elements.some((e) => e.name === name));
  return { state: status.elements.find((e) => e.name === name)?.state ?? 'absent', volume: vol?.state ?? 'absent' };
}

describe.skipIf(missing !== null)(`remote leg faults on raid1${missing !== null ? ` (skipped: ${missing})` : ''}`, () => {
  let dir = '';
  let rig: Rig | null = null;
  let nbdkit: NbdkitPeer | null = null;
  let slow: NbdkitPeer | null = null;
  let tgtd: TgtdPeer | null = null;
  let logged: NbdkitPeer | null = null;
  let flaky: NbdkitPeer | null = null;
  const file = (name: string): string => path.join(dir, `${name}.img`);

  beforeAll(async () => {
    dir = tempDir('faults');
    for (const name of ['kill', 'slow', 'lun', 'logged', 'flaky']) await sparseFile(file(name), ELEMENT_BYTES);
    flaky = await startNbdkit(['file', file('flaky')]); // healthy until the test adds the error filter
    logged = await startNbdkit(['--filter=log', 'file', file('logged'), `logfile=${path.join(dir, 'nbdkit.log')}`]);
    nbdkit = await startNbdkit(['file', file('kill')]);
    // Healthy while the array is created; the test restarts it with writes delayed 3 s.
    slow = await startNbdkit(['file', file('slow')]);
    tgtd = await startTgtd({ backingFiles: [file('lun')] });
    rig = await startRig(dir, [
      { name: 'a0', sizeBytes: ELEMENT_BYTES }, { name: 'b0', sizeBytes: ELEMENT_BYTES }, { name: 'c0', sizeBytes: ELEMENT_BYTES }, { name: 'd0', sizeBytes: ELEMENT_BYTES }, { name: 'e0', sizeBytes: ELEMENT_BYTES },
      { name: 'rflaky', uri: `nbd://127.0.0.1:${flaky.port}/`, options: { timeoutMs: 5000 } },
      { name: 'rlog', uri: `nbd://127.0.0.1:${logged.port}/`, options: { timeoutMs: 5000 } },
      { name: 'rkill', uri: `nbd://127.0.0.1:${nbdkit.port}/`, options: { timeoutMs: 2000 } },
      { name: 'rslow', uri: `nbd://127.0.0.1:${slow.port}/`, options: { timeoutMs: 1000 } },
      { name: 'rlun', uri: tgtd.uri(), options: { timeoutMs: 30_000 } },
    ], [
      { name: 'killed', layout: 'raid1', elements: ['a0', 'rkill'] },
      { name: 'stalled', layout: 'raid1', elements: ['b0', 'rslow'] },
      { name: 'restarted', layout: 'raid1', elements: ['c0', 'rlun'] },
      { name: 'ordered', layout: 'raid1', elements: ['d0', 'rlog'] },
      { name: 'flaky', layout: 'raid1', elements: ['e0', 'rflaky'] },
    ]);
  }, 120_000);

  afterAll(async () => {
    await rig?.daemon.stop();
    for (const peer of [nbdkit, slow, tgtd, logged, flaky]) await peer?.stop();
    if (dir !== '') removeDir(dir);
  });

  it('writes reach the remote leg before the FLUSH that follows them, and FUA is passed on (nbdkit log filter)', async () => {
    const r = await qemuIo(rig!.daemon.uri('ordered'), ['write -P 1 0 64k', 'flush', 'write -f -P 2 64k 64k', 'write -P 3 128k 64k', 'flush']);
    expect(qemuIoFailed(r), explain(r)).toBe(false);
    const log = readFileSync(path.join(dir, 'nbdkit.log'), 'utf8').split('\n');
    // Element offsets: volume data starts 4 MiB into the element.
    const at = (re: RegExp): number => log.findIndex((l) => re.test(l));
    const writeReturn = (hexOffset: string): number => {
      const id = /Write id=(\d+) offset=0x/.exec(log.find((l) => l.includes(`Write id=`) && l.includes(`offset=0x${hexOffset} `)) ?? '')?.[1];
      expect(id, `no write at 0x${hexOffset} in the nbdkit log`).toBeDefined();
      return at(new RegExp(`\\.\\.\\.Write id=${id} return=0`));
    };
    const firstData = at(/Write id=\d+ offset=0x400000 /);
    const flushes = log.map((l, i) => (/ Flush id=\d+ \.\.\./.test(l) && i > firstData ? i : -1)).filter((i) => i >= 0);
    expect(flushes.length, log.join('\n')).toBeGreaterThanOrEqual(2);
    expect(writeReturn('400000')).toBeLessThan(flushes[0]!);
    expect(writeReturn('410000')).toBeLessThan(flushes[1]!);
    expect(writeReturn('420000')).toBeLessThan(flushes[1]!);
    // qemu-io (cache=writethrough) asks FUA on every write; the remote leg must see it on each.
    expect(log.filter((l) => /Write id=\d+ offset=0x4[0-2]0000 /.test(l)).map((l) => /fua=(\d)/.exec(l)?.[1])).toEqual(['1', '1', '1']);
  }, 60_000);

  it('a remote leg behind nbdkit --filter=error (10% EIO): every read returns the right data, errors counted and shown', async () => {
    const w = await qemuIo(rig!.daemon.uri('flaky'), ['write -P 0x4d 0 4m', 'flush']);
    expect(qemuIoFailed(w), explain(w)).toBe(false);
    const port = flaky!.port;
    await flaky!.stop();
    flaky = await startNbdkit(['--filter=error', 'file', file('flaky'), 'error-rate=10%', 'error=EIO'], port);
    // ~128 of these reach the remote leg: the chance that none meets a 10% error is about 1e-6.
    const reads = Array.from({ length: 256 }, (_, i) => `read -P 0x4d ${i * 16}k 16k`);
    const r = await qemuIo(rig!.daemon.uri('flaky'), reads);
    expect(qemuIoFailed(r), explain(r)).toBe(false);
    const status = await rig!.daemon.status();
    const leg = status.elements.find((e) => e.name === 'rflaky');
    expect(leg?.errors, 'the remote leg\'s errors are counted').toBeGreaterThan(0);
    expect(leg?.state, 'a failed remote leg is probed again: stale').toBe('stale');
    expect(status.volumes.find((v) => v.name === 'flaky')?.state).toBe('degraded');
  }, 60_000);

  it('nbdkit killed with SIGKILL during a fio verify run: fio finishes clean, status says degraded', async () => {
    const run = fio(fioVerifyArgs(rig!.daemon.uri('killed')), dir);
    await sleep(1500);
    await nbdkit!.stop('SIGKILL');
    const { result, jobs } = await run;
    expect(result.code, explain(result)).toBe(0);
    expect(jobs[0]?.error, explain(result)).toBe(0);
    expect(jobs[0]?.read.io_bytes, 'the verify pass read the data back').toBeGreaterThan(0);
    expect(await elementState(rig!.daemon, 'rkill')).toEqual({ state: 'stale', volume: 'degraded' });
    expect(rig!.daemon.alive).toBe(true);
  }, 180_000);

  it('a remote that stalls beyond timeoutMs is marked failed; the write completes from the local leg, no hang', async () => {
    const port = slow!.port;
    await slow!.stop();
    slow = await startNbdkit(['--filter=delay', 'file', file('slow'), 'wdelay=3'], port);
    const started = Date.now();
    const r = await qemuIo(rig!.daemon.uri('stalled'), ['write -P 0x33 0 64k', 'read -P 0x33 0 64k'], 30_000);
    expect(qemuIoFailed(r), explain(r)).toBe(false);
    expect(Date.now() - started, 'bounded by timeoutMs (1 s) plus slack, not by the 3 s stall').toBeLessThan(2900);
    expect(await elementState(rig!.daemon, 'rslow')).toEqual({ state: 'stale', volume: 'degraded' });
  }, 60_000);

  it('tgtd killed and restarted mid-run: the initiator logs in again, fio verifies, nothing failed', async () => {
    const run = fio(fioVerifyArgs(rig!.daemon.uri('restarted')), dir);
    await sleep(1500);
    const port = tgtd!.port;
    await tgtd!.stop('SIGKILL');
    await sleep(500);
    tgtd = await startTgtd({ backingFiles: [file('lun')], port });
    const { result, jobs } = await run;
    expect(result.code, explain(result)).toBe(0);
    expect(jobs[0]?.error, explain(result)).toBe(0);
    expect(await elementState(rig!.daemon, 'rlun')).toEqual({ state: 'active', volume: 'optimal' });
    const at = await firstDifference(file('c0'), file('lun'), DATA_OFFSET_BYTES, 48 * MiB);
    expect(at, `legs differ at ${at}`).toBe(-1);
  }, 180_000);
});
