// Acceptance (issue 12, first part), gateway path: rbd://POOL/IMAGE?path=gateway elements through
// a qemu-nbd gateway that onestack starts and supervises (the path taken where librbd cannot be
// loaded; rbd-librbd.test.ts tests the default librbd path), against the real one-node Ceph of
// ../shared/tools. A raid1 of a
// local file and rbd://rbd/img carries an nbdcopy round trip with equal sha256; `rbd export`
// (librbd, not onestack) finds the same bytes after the 4 MiB header; a SIGKILLed gateway is
// restarted and the leg comes back active.
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLI_MAIN, Daemon, REPO_ROOT } from './lib/daemon.js';
import { DATA_OFFSET_BYTES, MiB, randomFile, removeDir, sha256Range, tempDir, writeConfig } from './lib/files.js';
import { nbdcopy } from './lib/peers.js';
import { explain, run, sleep } from './lib/proc.js';
import { elementView, osdStopUnderFio, roundTripWithExport, type ElementView } from './lib/rbd-cases.js';
import { CEPH_CONF, adminKey, cephMissing, ensureCeph, rbdExportHead, zeroRbd } from './lib/ceph.js';

const DATA_BYTES = 48 * MiB;
const COPY_BYTES = 8 * MiB;
const missing = cephMissing();


describe.skipIf(missing !== null)(`rbd:// elements via the qemu-nbd gateway${missing !== null ? ` (skipped: missing ${missing})` : ''}`, () => {
  let dir = '';
  let daemon: Daemon | null = null;
  let localImage = '';

  const r0 = (): Promise<ElementView> => elementView(daemon!, 'r0');
  const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

  beforeAll(async () => {
    await ensureCeph();
    // rbd/img is the cluster's test image: drop any superblock and data an earlier run left there
    // (a new raid1 is not synced first, so the legs must start equal for reads to agree).
    await zeroRbd(DATA_OFFSET_BYTES + DATA_BYTES);
    dir = tempDir('rbd');
    const { configPath, images } = await writeConfig(dir, [
      { name: 'l0', sizeBytes: DATA_OFFSET_BYTES + DATA_BYTES },
      { name: 'r0', uri: `rbd://rbd/img?conf=${CEPH_CONF}&id=admin&path=gateway` },
    ], [{ name: 'v', layout: 'raid1', elements: ['l0', 'r0'] }]);
    localImage = images.get('l0')!;
    daemon = await Daemon.start({ dataDir: path.join(dir, 'data'), configPath, readyTimeoutMs: 60_000 });
  }, 300_000);

  afterAll(async () => {
    await daemon?.stop();
    if (dir !== '') removeDir(dir);
  });

  it('status names the gateway path, its qemu-nbd pid and image; the text says "rbd via qemu-nbd gateway"; no key anywhere', async () => {
    const e = await r0();
    expect(e).toMatchObject({ kind: 'nbd', state: 'active', uri: `rbd://rbd/img?conf=${CEPH_CONF}&id=admin&path=gateway` });
    expect(e.rbd).toMatchObject({ path: 'gateway', pool: 'rbd', image: 'img', restarts: 0, state: 'up' });
    const pid = e.rbd!.pid!;
    const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'latin1').split('\0');
    expect(cmdline[0]).toMatch(/qemu-nbd$/);
    expect(cmdline).toContain('--cache=none');
    expect(cmdline.some((a) => a.startsWith(`rbd:rbd/img:id=admin:conf=${CEPH_CONF}`))).toBe(true);
    const text = await run(process.execPath, [CLI_MAIN, 'status', '--api', `127.0.0.1:${daemon!.apiPort}`],
      { cwd: REPO_ROOT, env: { ...process.env, ONESTACK_DATA_DIR: daemon!.dataDir }, timeoutMs: 30_000 });
    expect(text.code, explain(text)).toBe(0);
    expect(text.stdout).toMatch(new RegExp(`rbd via qemu-nbd gateway: rbd/img, up, pid ${pid}`));
    // The gateway's stderr goes to a log in the data dir; the cluster key goes nowhere.
    const logs = readdirSync(path.join(daemon!.dataDir, 'rbd')).filter((f) => f.endsWith('.log'));
    expect(logs).toHaveLength(1);
    const key = adminKey();
    expect(key.length).toBeGreaterThan(10);
    const everything = [daemon!.stdout, daemon!.stderr, text.stdout, JSON.stringify(await daemon!.status()), readFileSync(path.join(daemon!.dataDir, 'rbd', logs[0]!), 'utf8')].join('\n');
    expect(everything).not.toContain(key);
  });

  it('raid1 of a local file + rbd://rbd/img (48 MiB volume): nbdcopy round trip with equal sha256; rbd export finds the bytes after the 4 MiB header', async () => {
    const want = await roundTripWithExport(daemon!, dir, 'img', COPY_BYTES);
    expect(await sha256Range(localImage, DATA_OFFSET_BYTES, COPY_BYTES)).toBe(want);
  });

  it('a SIGKILLed gateway is restarted by the supervisor; writes go on and the leg comes back active with the data', async () => {
    const before = (await r0()).rbd!;
    const src = path.join(dir, 'src2.bin');
    const want = await randomFile(src, COPY_BYTES);
    process.kill(before.pid!, 'SIGKILL');
    // Written through the restarted gateway (or, while it cannot take the image's lock, to the local leg alone).
    const up = await nbdcopy(src, daemon!.uri('v'), ['--flush']);
    expect(up.code, `${explain(up)}\n${daemon!.logs()}`).toBe(0);
    // librbd's exclusive lock of the killed gateway is broken only once its watch times out (~30 s):
    // until then writes to the new gateway stall, the leg may go stale and is resynced when it answers.
    const deadline = Date.now() + 150_000;
    let e = await r0();
    while (Date.now() < deadline && !(e.state === 'active' && e.rbd?.state === 'up' && e.rbd.restarts >= 1)) {
      await sleep(1000);
      e = await r0();
    }
    expect(e.state, daemon!.logs()).toBe('active');
    expect(e.rbd!.restarts).toBeGreaterThanOrEqual(1);
    expect(e.rbd!.pid).not.toBe(before.pid);
    expect(existsSync(`/proc/${e.rbd!.pid!}`)).toBe(true);
    expect((await daemon!.status()).volumes.find((v) => v.name === 'v')?.state).toBe('optimal');
    expect(daemon!.stderr).toMatch(/rbd gateway rbd\/img \(element r0\): qemu-nbd killed by SIGKILL; restarting with back-off/);
    const back = path.join(dir, 'back2.bin');
    const down = await nbdcopy(daemon!.uri('v'), back);
    expect(down.code, explain(down)).toBe(0);
    expect(await sha256Range(back, 0, COPY_BYTES)).toBe(want);
    const exported = await rbdExportHead(DATA_OFFSET_BYTES + COPY_BYTES);
    expect(sha(exported.subarray(DATA_OFFSET_BYTES))).toBe(want);
  }, 200_000);

  it('the OSD stopped during fio verify: fio finishes without error, the leg goes away; OSD back: only dirty regions resync', async () => {
    await osdStopUnderFio(daemon!, dir, localImage, 'img');
  }, 200_000);

  it('element add of a missing image fails with qemu-nbd\'s reason, and leaves no gateway running', async () => {
    const cli = (args: readonly string[]) => run(process.execPath, [CLI_MAIN, ...args, '--api', `127.0.0.1:${daemon!.apiPort}`],
      { cwd: REPO_ROOT, env: { ...process.env, ONESTACK_DATA_DIR: daemon!.dataDir }, timeoutMs: 60_000 });
    const added = await cli(['element', 'add', `rbd://rbd/no-such-image?conf=${CEPH_CONF}&path=gateway`]);
    expect(added.code, explain(added)).toBe(1);
    expect(added.stderr).toMatch(/cannot reach rbd:\/\/rbd\/no-such-image.*rbd gateway rbd\/no-such-image .* is down \(qemu-nbd exit status 1: .*No such file or directory/);
    const bad = await cli(['element', 'add', 'rbd://rbd/img?id=client.admin']);
    expect(bad.code, explain(bad)).toBe(2);
    expect(bad.stderr).toMatch(/give the user without "client\."/);
    const pgrep = await run('pgrep', ['-f', 'rbd:rbd/no-such-image']);
    expect(pgrep.stdout.trim()).toBe('');
    expect((await daemon!.status()).elements.map((e) => e.name)).toEqual(['l0', 'r0']);
  });

  it('a daemon killed with SIGKILL leaves its gateway; the next start stops that one by its pid file and serves the same bytes', async () => {
    const old = (await r0()).rbd!.pid!;
    const before = path.join(dir, 'before3.bin');
    const read1 = await nbdcopy(daemon!.uri('v'), before);
    expect(read1.code, explain(read1)).toBe(0);
    const { dataDir, nbdPort, apiPort } = daemon!;
    await daemon!.crash();
    expect(existsSync(`/proc/${old}`)).toBe(true); // own process group: not taken down with the daemon
    daemon = await Daemon.start({ dataDir, configPath: path.join(dir, 'onestack.yaml'), nbdPort, apiPort, readyTimeoutMs: 60_000 });
    expect(daemon.stderr).toContain(`rbd gateway: stopping qemu-nbd pid ${old} left by an earlier run`);
    expect(existsSync(`/proc/${old}`)).toBe(false);
    const e = await r0();
    expect(e.rbd).toMatchObject({ state: 'up', restarts: 0 });
    expect(e.rbd!.pid).not.toBe(old);
    const back = path.join(dir, 'back3.bin');
    const down = await nbdcopy(daemon.uri('v'), back);
    expect(down.code, explain(down)).toBe(0);
    expect(await sha256Range(back)).toBe(await sha256Range(before));
  }, 120_000);

  it('stopping the daemon stops its gateway and removes the pid file', async () => {
    const pid = (await r0()).rbd!.pid!;
    const d = daemon!;
    const stopped = await d.stop();
    daemon = null;
    expect(stopped.killed, d.logs()).toBe(false);
    expect(d.stderr).toMatch(/rbd gateway rbd\/img \(element r0\): stopped/);
    for (let i = 0; i < 50 && existsSync(`/proc/${pid}`); i++) await sleep(100);
    expect(existsSync(`/proc/${pid}`)).toBe(false);
    const rbdDir = path.join(dir, 'data', 'rbd');
    expect(readdirSync(rbdDir).filter((f) => f.endsWith('.pid'))).toEqual([]);
  });
  it('without the native addon (ONESTACK_NATIVE=off) an rbd:// element with no ?path= falls back to the gateway and status says why', async () => {
    await daemon?.stop(); // it holds rbd/img's lock when this test runs alone
    daemon = null;
    await zeroRbd(DATA_OFFSET_BYTES); // the image still carries volume v's superblock
    const sub = path.join(dir, 'fallback');
    mkdirSync(sub);
    const { configPath } = await writeConfig(sub, [{ name: 'f0', uri: `rbd://rbd/img?conf=${CEPH_CONF}&id=admin` }], [{ name: 'fv', layout: 'linear', elements: ['f0'] }]);
    const d = await Daemon.start({ dataDir: path.join(sub, 'data'), configPath, readyTimeoutMs: 60_000, env: { ONESTACK_NATIVE: 'off' } });
    try {
      const f0 = ((await d.status()).elements as readonly ElementView[]).find((e) => e.name === 'f0')!;
      expect(f0.rbd).toMatchObject({ path: 'gateway', state: 'up', fallback: expect.stringMatching(/native addon not loaded \(ONESTACK_NATIVE=off\)/) as unknown });
      expect(d.stderr).toMatch(/rbd rbd\/img \(element f0\): qemu-nbd gateway, because native addon not loaded/);
    } finally {
      await d.stop();
    }
  }, 120_000);
});
