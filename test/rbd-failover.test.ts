// Acceptance (issue 12 item 2): a raid1 of a local file and an rbd:// image fails over between two
// "hosts" — two daemons with their own data dirs, configs and local legs — under the ownership
// lock of remote/rbd-lock.ts, against the real one-node Ceph of ../shared/tools. Host A writes and
// is SIGKILLed; host B takes over once A's lease stopped moving (fencing A's gateway), serves the
// same bytes degraded and rebuilds onto its blank local leg; A restarted refuses while B holds the
// lock; B stopped cleanly hands the volume back to A at once; a daemon whose lock is stolen stops
// writing. Run on both paths to the image: librbd in the daemon, and the qemu-nbd gateway (whose
// process outlives a SIGKILLed daemon and must be fenced).
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLI_MAIN, Daemon, REPO_ROOT } from './lib/daemon.js';
import { DATA_OFFSET_BYTES, MiB, randomFile, readAt, removeDir, sha256Range, tempDir, writeConfig } from './lib/files.js';
import { nbdcopy, qemuIo, qemuIoFailed } from './lib/peers.js';
import { PEER_ENV, explain, run, sleep } from './lib/proc.js';
import { CEPH_CONF, cephMissing, ensureCeph } from './lib/ceph.js';

const DATA_BYTES = 48 * MiB;
const COPY_BYTES = 8 * MiB;
/** Short in tests; FAILOVER_LEASE_MS=15000 measures the default. */
const LEASE_MS = Number(process.env.FAILOVER_LEASE_MS ?? 4000);
const CEPH_ENV = { ...PEER_ENV, CEPH_CONF };
const DAEMON_ENV = { ONESTACK_RBD_LEASE_MS: String(LEASE_MS) };
const missing = cephMissing();

interface Host { dir: string; dataDir: string; configPath: string; localImage: string; daemon: Daemon | null; nbdPort?: number; apiPort?: number }

const ceph = (tool: string, args: readonly string[]) => run(tool, args, { env: CEPH_ENV, timeoutMs: 60_000 });

async function headerOf(image: string): Promise<string> {
  const info = await ceph('rbd', ['info', '--format', 'json', `rbd/${image}`]);
  return `rbd_header.${(JSON.parse(info.stdout) as { id: string }).id}`;
}

async function headerLockersOf(image: string): Promise<{ name: string; cookie: string }[]> {
  const id = (await headerOf(image)).slice('rbd_header.'.length);
  const r = await ceph('rados', ['-p', 'rbd', 'lock', 'info', `rbd_header.${id}`, 'onestack', '--format', 'json']);
  return (JSON.parse(r.stdout) as { lockers: { name: string; cookie: string }[] }).lockers;
}

/** Kills a gateway a SIGKILLed daemon left (its pid file), so nothing of the test outlives it. */
function killOrphans(dataDir: string, image: string): void {
  const dir = path.join(dataDir, 'rbd');
  if (!existsSync(dir)) return;
  for (const f of readdirSync(dir).filter((x) => x.endsWith('.pid'))) {
    const pid = Number(readFileSync(path.join(dir, f), 'utf8').trim());
    const cmd = existsSync(`/proc/${pid}/cmdline`) ? readFileSync(`/proc/${pid}/cmdline`, 'latin1') : '';
    if (cmd.includes("qemu-nbd") && cmd.includes(image)) process.kill(pid, 'SIGKILL');
  }
}

describe.skipIf(missing !== null).each(['librbd', 'gateway'] as const)(`rbd failover between two hosts, path %s${missing !== null ? ` (skipped: missing ${missing})` : ''}`, (via) => {
  const IMAGE = `failover-${via}-${process.pid}`;
  const URI = `rbd://rbd/${IMAGE}?conf=${CEPH_CONF}&id=admin&path=${via}`;
  const headerLockers = (image = IMAGE) => headerLockersOf(image);
  const hosts: { a: Host; b: Host } = { a: null as unknown as Host, b: null as unknown as Host };
  let want8 = '';
  const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

  const start = async (h: Host, env: NodeJS.ProcessEnv = {}): Promise<Daemon> => {
    const d = await Daemon.start({ dataDir: h.dataDir, configPath: h.configPath, readyTimeoutMs: 90_000, env: { ...DAEMON_ENV, ...env },
      ...(h.nbdPort !== undefined ? { nbdPort: h.nbdPort, apiPort: h.apiPort } : {}) });
    h.daemon = d;
    h.nbdPort = d.nbdPort;
    h.apiPort = d.apiPort;
    return d;
  };
  const volumeOf = async (d: Daemon) => (await d.status()).volumes.find((v) => v.name === 'v')!;
  const waitOptimal = async (d: Daemon): Promise<void> => {
    const deadline = Date.now() + 120_000;
    while (Date.now() < deadline && (await volumeOf(d)).state !== 'optimal') await sleep(500);
    expect((await volumeOf(d)).state, d.logs()).toBe('optimal');
  };
  const read = async (d: Daemon, file: string, bytes: number): Promise<Buffer> => {
    const r = await nbdcopy(d.uri('v'), file);
    expect(r.code, explain(r)).toBe(0);
    return readAt(file, 0, bytes);
  };

  beforeAll(async () => {
    await ensureCeph();
    const made = await ceph('rbd', ['create', `rbd/${IMAGE}`, '--size', `${(DATA_OFFSET_BYTES + DATA_BYTES) / MiB}M`]);
    expect(made.code, explain(made)).toBe(0);
    for (const key of ['a', 'b'] as const) {
      const dir = tempDir(`rbd-failover-${key}`);
      const local = `l${key}`;
      const { configPath, images } = await writeConfig(dir, [
        { name: local, sizeBytes: DATA_OFFSET_BYTES + DATA_BYTES },
        { name: 'r0', uri: URI },
      ], [{ name: 'v', layout: 'raid1', elements: [local, 'r0'] }]);
      hosts[key] = { dir, dataDir: path.join(dir, 'data'), configPath, localImage: images.get(local)!, daemon: null };
    }
  }, 300_000);

  afterAll(async () => {
    for (const h of [hosts.a, hosts.b]) {
      if (h === null) continue;
      await h.daemon?.stop();
      killOrphans(h.dataDir, IMAGE);
      removeDir(h.dir);
    }
    await ceph('rbd', ['rm', '--no-progress', `rbd/${IMAGE}`]);
    await ceph('rbd', ['rm', '--no-progress', `rbd/${IMAGE}-2`]);
  }, 120_000);

  it('host A takes the image\'s lock before serving, with its host id as the cookie, and writes through both legs', async () => {
    const a = await start(hosts.a);
    const hostA = readFileSync(path.join(hosts.a.dataDir, 'host-id'), 'utf8').trim();
    expect(a.stderr).toMatch(new RegExp(`rbd rbd/${IMAGE} \\(element r0\\): locked by this host \\(${hostA}\\), lease ${LEASE_MS / 1000} s`));
    expect((await headerLockers()).map((l) => l.cookie)).toEqual([hostA]);
    const lease = await ceph('rados', ['-p', 'rbd', 'getxattr', await headerOf(IMAGE), 'onestack.lease']);
    expect(JSON.parse(lease.stdout)).toMatchObject({ host: hostA, leaseMs: LEASE_MS });
    const src = path.join(hosts.a.dir, 'src.bin');
    want8 = await randomFile(src, COPY_BYTES);
    const up = await nbdcopy(src, a.uri('v'), ['--flush']);
    expect(up.code, explain(up)).toBe(0);
    expect((await volumeOf(a)).state).toBe('optimal');
  }, 120_000);

  it('A SIGKILLed: B waits out A\'s lease, fences A\'s client, serves the same sha256 degraded and rebuilds onto its blank local leg', async () => {
    const a = hosts.a.daemon!;
    const orphan = via === 'gateway'
      ? readFileSync(readdirSync(path.join(hosts.a.dataDir, 'rbd')).map((f) => path.join(hosts.a.dataDir, 'rbd', f)).find((f) => f.endsWith('.pid'))!, 'utf8').trim()
      : null;
    await a.crash();
    hosts.a.daemon = null;
    const t0 = Date.now();
    const b = await start(hosts.b);
    const takeoverMs = Date.now() - t0;
    const hostA = readFileSync(path.join(hosts.a.dataDir, 'host-id'), 'utf8').trim();
    const hostB = readFileSync(path.join(hosts.b.dataDir, 'host-id'), 'utf8').trim();
    // A's gateway survived the SIGKILL (own process group) and still had the image open: fenced.
    // A's librbd died with it, but its watch lingers until Ceph times it out: fenced too.
    expect(b.stderr, b.logs()).toMatch(new RegExp(`host ${hostA}'s lease did not move for [\\d.]+ s: fenced client\\.\\d+ at \\S+ \\(blocklisted 3600 s\\)`));
    if (orphan !== null) expect(existsSync(`/proc/${orphan}`)).toBe(true);
    expect((await headerLockers()).map((l) => l.cookie)).toEqual([hostB]);
    const r0 = (await b.status()).elements.find((e) => e.name === 'r0') as unknown as { rbd: { lock?: { host: string; leaseMs: number } } };
    expect(r0.rbd.lock).toEqual({ host: hostB, leaseMs: LEASE_MS });
    expect(b.stderr).toMatch(/volume v: rebuild of lb \(everything\) started/);
    const back = await read(b, path.join(hosts.b.dir, 'back.bin'), COPY_BYTES);
    expect(sha(back)).toBe(want8);
    await waitOptimal(b);
    expect(await sha256Range(hosts.b.localImage, DATA_OFFSET_BYTES, COPY_BYTES)).toBe(want8);
    // B writes on: what A must find when it gets the volume back.
    const w = await qemuIo(b.uri('v'), [`write -P 0xab ${COPY_BYTES} ${4 * MiB}`, 'flush']);
    expect(qemuIoFailed(w), explain(w)).toBe(false);
    process.stdout.write(`rbd failover: B ready ${takeoverMs} ms after A was killed (lease ${LEASE_MS} ms)\n`);
    if (process.env.FAILOVER_DEBUG !== undefined) process.stdout.write(`${b.stderr}\n`);
    expect(takeoverMs).toBeLessThan(LEASE_MS + 60_000);
  }, 200_000);

  it('A restarted refuses to serve the volume while B holds the lock, naming B and the way to force it; B serves on', async () => {
    const hostB = readFileSync(path.join(hosts.b.dataDir, 'host-id'), 'utf8').trim();
    const err = await start(hosts.a).then(() => null, (e: Error) => e);
    expect(err, 'A must not start').not.toBeNull();
    expect(err!.message).toMatch(new RegExp(`rbd image rbd/${IMAGE} is held by host ${hostB} \\(its lease moved within ${LEASE_MS / 1000} s.*refusing to serve its volume`));
    expect(err!.message).toMatch(/ONESTACK_RBD_TAKEOVER=force/);
    hosts.a.daemon = null;
    killOrphans(hosts.a.dataDir, IMAGE); // A's old gateway (blocklisted by B) is stopped by A's next successful start
    const b = hosts.b.daemon!;
    expect((await headerLockers()).map((l) => l.cookie)).toEqual([hostB]);
    const r0 = (await b.status()).elements.find((e) => e.name === 'r0')!;
    expect(r0.state).toBe('active');
    const w = await qemuIo(b.uri('v'), [`write -P 0xab ${COPY_BYTES} 64k`, 'flush']);
    expect(qemuIoFailed(w), `${explain(w)}\n${b.logs()}`).toBe(false);
  }, 200_000);

  it('B stopped cleanly releases the lock; A takes the volume at once and serves what B wrote', async () => {
    const b = hosts.b.daemon!;
    const stopped = await b.stop();
    hosts.b.daemon = null;
    expect(stopped.killed, b.logs()).toBe(false);
    expect(b.stderr).toMatch(new RegExp(`rbd rbd/${IMAGE} \\(element r0\\): lock released`));
    expect(await headerLockers()).toEqual([]);
    const t0 = Date.now();
    const a = await start(hosts.a);
    const readyMs = Date.now() - t0;
    expect(a.stderr).not.toMatch(/lease did not move/);
    const back = await read(a, path.join(hosts.a.dir, 'back2.bin'), COPY_BYTES + 4 * MiB);
    expect(sha(back.subarray(0, COPY_BYTES))).toBe(want8);
    expect(back.subarray(COPY_BYTES).every((x) => x === 0xab)).toBe(true);
    await waitOptimal(a);
    // A's own leg caught up with B's writes (resync or rebuild from the rbd leg).
    expect(await sha256Range(hosts.a.localImage, DATA_OFFSET_BYTES, COPY_BYTES + 4 * MiB)).toBe(sha(back));
    process.stdout.write(`rbd failover: A ready ${readyMs} ms after B's clean stop\n`);
    if (process.env.FAILOVER_DEBUG !== undefined) process.stdout.write(`${b.stderr}\n---A\n${a.stderr}\n`);
  }, 200_000);

  it('a daemon whose lock is taken away stops writing the volume: clients get errors, its path to the image is closed for good', async () => {
    const a = hosts.a.daemon!;
    const [mine] = await headerLockers();
    const info = await ceph('rbd', ['info', '--format', 'json', `rbd/${IMAGE}`]);
    const header = `rbd_header.${(JSON.parse(info.stdout) as { id: string }).id}`;
    const broke = await ceph('rados', ['-p', 'rbd', 'lock', 'break', header, 'onestack', mine!.name, '--lock-cookie', mine!.cookie]);
    expect(broke.code, explain(broke)).toBe(0);
    const stole = await ceph('rados', ['-p', 'rbd', 'lock', 'get', header, 'onestack', '--lock-cookie', 'thief', '--lock-tag', 'onestack']);
    expect(stole.code, explain(stole)).toBe(0);
    const deadline = Date.now() + 30_000;
    while (Date.now() < deadline && !/lost its ownership lock/.test(a.stderr)) await sleep(250);
    expect(a.stderr, a.logs()).toMatch(/volume v: stopped serving: element r0 lost its ownership lock \((the lock is now held by host thief|its lock was removed)\)/);
    const w = await qemuIo(a.uri('v'), ['write -P 0xcd 0 64k', 'flush']);
    expect(qemuIoFailed(w), explain(w)).toBe(true);
    const r0 = (await a.status()).elements.find((e) => e.name === 'r0') as unknown as { rbd: { state: string; error?: string; lock?: { lost?: string } } };
    expect(r0.rbd).toMatchObject({ path: via, state: via === 'gateway' ? 'stopped' : 'fenced' });
    expect(r0.rbd.lock?.lost).toMatch(/thief|removed/);
    expect((await a.status()).volumes.find((v) => v.name === 'v')?.state).not.toBe('optimal');
    expect(r0.rbd.error).toMatch(/ownership lock lost/);
    // Nothing of A's last attempt reached the image.
    const head = await ceph('rbd', ['export', '--no-progress', `rbd/${IMAGE}`, path.join(hosts.a.dir, 'export.bin')]);
    expect(head.code, explain(head)).toBe(0);
    expect(sha((await readAt(path.join(hosts.a.dir, 'export.bin'), DATA_OFFSET_BYTES, COPY_BYTES)))).toBe(want8);
  }, 120_000);

  it('a forced takeover (ONESTACK_RBD_TAKEOVER=force) does not wait for the holder\'s lease: it breaks the foreign lock and serves', async () => {
    expect((await headerLockers()).map((l) => l.cookie)).toEqual(['thief']);
    const t0 = Date.now();
    const b = await start(hosts.b, { ONESTACK_RBD_TAKEOVER: 'force' });
    const readyMs = Date.now() - t0;
    expect(b.stderr, b.logs()).toMatch(new RegExp(`rbd rbd/${IMAGE} \\(element r0\\): forced takeover \\(ONESTACK_RBD_TAKEOVER=force\\): fenced .*removed its locks`));
    const hostB = readFileSync(path.join(hosts.b.dataDir, 'host-id'), 'utf8').trim();
    expect((await headerLockers()).map((l) => l.cookie)).toEqual([hostB]);
    const back = await read(b, path.join(hosts.b.dir, 'back3.bin'), COPY_BYTES);
    expect(sha(back)).toBe(want8);
    process.stdout.write(`rbd failover: forced takeover ready in ${readyMs} ms\n`);
  }, 120_000);

  // element add waits up to 120 s for the daemon (CLI bound for slow control operations), past a 15 s lease too.
  it('an rbd element added at run time is locked before use (a dead holder fenced first); element remove releases the lock', async () => {
    const b = hosts.b.daemon!;
    const image2 = `${IMAGE}-2`;
    const made = await ceph('rbd', ['create', `rbd/${image2}`, '--size', '16M']);
    expect(made.code, explain(made)).toBe(0);
    // A holder that never renews a lease: dead, so the add waits one lease and fences it.
    const dead = await ceph('rados', ['-p', 'rbd', 'lock', 'get', await headerOf(image2), 'onestack', '--lock-cookie', 'deadhost', '--lock-tag', 'onestack']);
    expect(dead.code, explain(dead)).toBe(0);
    const cli = (args: readonly string[]) => run(process.execPath, [CLI_MAIN, ...args, '--api', `127.0.0.1:${b.apiPort}`],
      { cwd: REPO_ROOT, env: { ...process.env, ONESTACK_DATA_DIR: b.dataDir }, timeoutMs: 90_000 });
    const added = await cli(['element', 'add', `rbd://rbd/${image2}?conf=${CEPH_CONF}&id=admin`]);
    expect(added.code, `${explain(added)}\n${b.logs()}`).toBe(0);
    const name = (await b.status()).elements.find((e) => e.uri.includes(image2))!.name;
    expect(b.stderr, b.logs()).toMatch(new RegExp(`rbd rbd/${image2} \\(element ${name}\\): host deadhost's lease did not move for [\\d.]+ s: fenced no open client`));
    const hostB = readFileSync(path.join(hosts.b.dataDir, 'host-id'), 'utf8').trim();
    expect((await headerLockers(image2)).map((l) => l.cookie)).toEqual([hostB]);
    const removed = await cli(['element', 'remove', name]);
    expect(removed.code, explain(removed)).toBe(0);
    expect(b.stderr).toMatch(new RegExp(`rbd rbd/${image2} \\(element ${name}\\): lock released`));
    expect(await headerLockers(image2)).toEqual([]);
  }, 120_000);
});
