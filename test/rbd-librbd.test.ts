// Acceptance (issue 12, item 1, preferred path): rbd:// elements through librbd loaded by the
// native crate, in the daemon, against the real one-node Ceph of ../shared/tools. Status says
// 'librbd' and Ceph itself (`rbd status`) sees the daemon's client at the address status gives;
// no qemu-nbd runs. A raid1 of a local file and the image carries an nbdcopy round trip that
// `rbd export` finds too; the OSD stopped under fio verify costs no fio error and only dirty
// regions are resynced; a missing image is refused with librbd's reason; a SIGKILLed daemon's
// successor serves the same bytes.
import { existsSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLI_MAIN, Daemon, REPO_ROOT } from './lib/daemon.js';
import { DATA_OFFSET_BYTES, MiB, removeDir, sha256Range, tempDir, writeConfig } from './lib/files.js';
import { nbdcopy } from './lib/peers.js';
import { PEER_ENV, explain, run } from './lib/proc.js';
import { elementView, osdStopUnderFio, roundTripWithExport, type ElementView } from './lib/rbd-cases.js';
import { CEPH_CONF, adminKey, cephMissing, ensureCeph } from './lib/ceph.js';

const DATA_BYTES = 48 * MiB;
const COPY_BYTES = 8 * MiB;
const IMAGE = `librbd-${process.pid}`;
const CEPH_ENV = { ...PEER_ENV, CEPH_CONF };
const missing = cephMissing();


const ceph = (tool: string, args: readonly string[]) => run(tool, args, { env: CEPH_ENV, timeoutMs: 60_000 });

describe.skipIf(missing !== null)(`rbd:// elements through librbd in the daemon${missing !== null ? ` (skipped: missing ${missing})` : ''}`, () => {
  let dir = '';
  let daemon: Daemon | null = null;
  let localImage = '';
  let configPath = '';

  const r0 = (): Promise<ElementView> => elementView(daemon!, 'r0');
  const cli = (args: readonly string[]) => run(process.execPath, [CLI_MAIN, ...args, '--api', `127.0.0.1:${daemon!.apiPort}`],
    { cwd: REPO_ROOT, env: { ...process.env, ONESTACK_DATA_DIR: daemon!.dataDir }, timeoutMs: 60_000 });

  beforeAll(async () => {
    await ensureCeph();
    // A fresh image reads as zeroes, as the fresh local leg does (a new raid1 is not synced first).
    const made = await ceph('rbd', ['create', `rbd/${IMAGE}`, '--size', `${(DATA_OFFSET_BYTES + DATA_BYTES) / MiB}M`]);
    expect(made.code, explain(made)).toBe(0);
    dir = tempDir('rbd-librbd');
    const written = await writeConfig(dir, [
      { name: 'l0', sizeBytes: DATA_OFFSET_BYTES + DATA_BYTES },
      { name: 'r0', uri: `rbd://rbd/${IMAGE}?conf=${CEPH_CONF}&id=admin` },
    ], [{ name: 'v', layout: 'raid1', elements: ['l0', 'r0'] }]);
    configPath = written.configPath;
    localImage = written.images.get('l0')!;
    daemon = await Daemon.start({ dataDir: path.join(dir, 'data'), configPath, readyTimeoutMs: 60_000 });
  }, 300_000);

  afterAll(async () => {
    await daemon?.stop();
    if (dir !== '') removeDir(dir);
    await ceph('rbd', ['rm', '--no-progress', `rbd/${IMAGE}`]);
  }, 120_000);

  it('status says librbd with the client address Ceph sees as the image\'s watcher; no qemu-nbd runs; the text says "rbd via librbd"; no key anywhere', async () => {
    const e = await r0();
    expect(e).toMatchObject({ kind: 'nbd', state: 'active' });
    expect(e.rbd).toMatchObject({ path: 'librbd', pool: 'rbd', image: IMAGE, pid: null, state: 'up' });
    expect(e.rbd!.fallback).toBeUndefined();
    const addrs = e.rbd!.clientAddrs ?? [];
    expect(addrs.length).toBeGreaterThan(0);
    // rados_getaddrs says "127.0.0.1:0/NONCE" (or v2:/v1: prefixed); `rbd status` lists watchers' addresses.
    const nonce = /\/(\d+)$/.exec(addrs[0]!)?.[1];
    expect(nonce, addrs.join(',')).toBeDefined();
    const st = await ceph('rbd', ['status', '--format', 'json', `rbd/${IMAGE}`]);
    expect(st.code, explain(st)).toBe(0);
    const watchers = (JSON.parse(st.stdout) as { watchers: { address: string }[] }).watchers.map((w) => w.address);
    expect(watchers.some((w) => w.endsWith(`/${nonce!}`)), `watchers ${watchers.join(',')} vs ${addrs.join(',')}`).toBe(true);
    const pgrep = await run('pgrep', ['-f', `rbd:rbd/${IMAGE}`]);
    expect(pgrep.stdout.trim()).toBe('');
    expect(existsSync(path.join(daemon!.dataDir, 'rbd'))).toBe(false); // no gateway socket, pid or log
    const text = await cli(['status']);
    expect(text.code, explain(text)).toBe(0);
    expect(text.stdout).toMatch(new RegExp(`rbd via librbd: rbd/${IMAGE}, up`));
    const key = adminKey();
    expect(key.length).toBeGreaterThan(10);
    expect([daemon!.stdout, daemon!.stderr, text.stdout, JSON.stringify(await daemon!.status())].join('\n')).not.toContain(key);
  });

  it('raid1 of a local file + the image: nbdcopy round trip with equal sha256; rbd export finds the bytes after the 4 MiB header', async () => {
    const want = await roundTripWithExport(daemon!, dir, IMAGE, COPY_BYTES);
    expect(await sha256Range(localImage, DATA_OFFSET_BYTES, COPY_BYTES)).toBe(want);
  });

  it('the OSD stopped during fio verify: fio finishes without error, the leg goes away; OSD back: only dirty regions resync', async () => {
    await osdStopUnderFio(daemon!, dir, localImage, IMAGE);
    expect((await r0()).rbd).toMatchObject({ path: 'librbd', state: 'up' });
  }, 200_000);

  it('element add of a missing image fails with librbd\'s reason and adds nothing', async () => {
    const added = await cli(['element', 'add', `rbd://rbd/no-such-image?conf=${CEPH_CONF}`]);
    expect(added.code, explain(added)).toBe(1);
    expect(added.stderr).toMatch(/cannot reach rbd:\/\/rbd\/no-such-image.*librbd: ENOENT: opening image rbd\/no-such-image failed/);
    const badPath = await cli(['element', 'add', `rbd://rbd/${IMAGE}?conf=${CEPH_CONF}&path=krbd`]);
    expect(badPath.code, explain(badPath)).toBe(2);
    expect(badPath.stderr).toMatch(/rbd path "krbd" is not one of librbd, gateway/);
    expect((await daemon!.status()).elements.map((e) => e.name)).toEqual(['l0', 'r0']);
  });

  it('a SIGKILLed daemon\'s successor on the same data dir serves the same bytes through librbd', async () => {
    const before = path.join(dir, 'before.bin');
    const read1 = await nbdcopy(daemon!.uri('v'), before);
    expect(read1.code, explain(read1)).toBe(0);
    const { dataDir, nbdPort, apiPort } = daemon!;
    await daemon!.crash();
    daemon = await Daemon.start({ dataDir, configPath, nbdPort, apiPort, readyTimeoutMs: 60_000 });
    // The killed run's librbd client still watches the image and holds librbd's exclusive lock
    // until Ceph times it out (~30 s): named by the lease, it is fenced, so the first write does not wait.
    expect(daemon.stderr, daemon.logs()).toMatch(/holds the lock from an earlier run; keeping it; fenced that run's librbd client client\.\d+ at \S+ \(blocklisted 3600 s\)/);
    const e = await r0();
    expect(e.rbd).toMatchObject({ path: 'librbd', state: 'up', restarts: 0 });
    const back = path.join(dir, 'back2.bin');
    const down = await nbdcopy(daemon.uri('v'), back);
    expect(down.code, explain(down)).toBe(0);
    expect(await sha256Range(back)).toBe(await sha256Range(before));
  }, 120_000);
});
