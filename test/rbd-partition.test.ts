// Issue 12, failover safety: host A, serving a raid1 of a local file and an rbd:// image, is cut
// off from the Ceph cluster while host B still reaches it — a real partition: A runs in a cgroup
// of its own and an nft rule drops its (and its rados/ceph commands') packets to the monitors and
// OSDs; NBD clients still reach A. A must acknowledge no write that only its local leg holds
// (remote/rbd-ack-gate.ts), stop serving at its lease deadline (rbd-lease.ts), and B, taking over
// from the image, must hold every write A acknowledged. Needs root, nft and cgroup v2.
import { existsSync, mkdirSync, readFileSync, rmdirSync } from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Daemon, REPO_ROOT } from './lib/daemon.js';
import { DATA_OFFSET_BYTES, MiB, removeDir, tempDir, writeConfig } from './lib/files.js';
import { qemuIo, qemuIoFailed } from './lib/peers.js';
import { PEER_ENV, explain, run, sleep } from './lib/proc.js';
import { CEPH_CONF, cephMissing, ensureCeph } from './lib/ceph.js';

const CGROUP_ROOT = '/sys/fs/cgroup/unified';
const NAME = `onestack-part-${process.pid}`;
const CGROUP = path.join(CGROUP_ROOT, NAME);
const TABLE = `onestack_part_${process.pid}`;
const IMAGE = `partition-${process.pid}`;
/** Lease 10 s: margin 1.7 s, renewal every 3.3 s; the rbd leg gives up after 2 s, well before the self-fence. */
const LEASE_MS = 10_000;
const LEG_TIMEOUT_MS = 2_000;
const BLOCK_BYTES = 64 * 1024;
const DATA_BYTES = 16 * MiB;
const CEPH_ENV = { ...PEER_ENV, CEPH_CONF };
const PRELOAD = pathToFileURL(path.join(REPO_ROOT, 'test', 'lib', 'join-cgroup.mjs')).href;

function partitionMissing(): string | null {
  if (process.getuid?.() !== 0) return 'not root (nft and cgroups need it)';
  if (!existsSync(`${CGROUP_ROOT}/cgroup.procs`)) return `no cgroup v2 at ${CGROUP_ROOT}`;
  if (!['/usr/sbin/nft', '/sbin/nft'].some((p) => existsSync(p))) return 'no nft (apt-get install nftables, as .ci/run does)';
  return null;
}
const missing = cephMissing() ?? partitionMissing();
const nft = (args: readonly string[]) => run('nft', args, { timeoutMs: 10_000 });
const ceph = (tool: string, args: readonly string[]) => run(tool, args, { env: CEPH_ENV, timeoutMs: 60_000 });

describe.skipIf(missing !== null)(`rbd: a holder cut off from the cluster${missing !== null ? ` (skipped: ${missing})` : ''}`, () => {
  const dirs: string[] = [];
  let a: Daemon | null = null;
  let b: Daemon | null = null;
  let configs: { a: string; b: string } = { a: '', b: '' };

  const hostConfig = async (key: string): Promise<string> => {
    const dir = tempDir(`rbd-partition-${key}`);
    dirs.push(dir);
    const { configPath } = await writeConfig(dir, [
      { name: `l${key}`, sizeBytes: DATA_OFFSET_BYTES + DATA_BYTES },
      { name: 'r0', uri: `rbd://rbd/${IMAGE}?conf=${CEPH_CONF}&id=admin`, options: { timeoutMs: LEG_TIMEOUT_MS } },
    ], [{ name: 'v', layout: 'raid1', elements: [`l${key}`, 'r0'] }]);
    return configPath;
  };
  const pattern = (gen: number): number => (gen * 37) & 0xff || 1;
  const write = (d: Daemon, gen: number) => qemuIo(d.uri('v'), [`write -P ${pattern(gen)} ${gen * BLOCK_BYTES} ${BLOCK_BYTES}`, 'flush'], 60_000);

  beforeAll(async () => {
    await ensureCeph();
    const made = await ceph('rbd', ['create', `rbd/${IMAGE}`, '--size', `${(DATA_OFFSET_BYTES + DATA_BYTES) / MiB}M`]);
    expect(made.code, explain(made)).toBe(0);
    configs = { a: await hostConfig('a'), b: await hostConfig('b') };
    mkdirSync(CGROUP, { recursive: true });
  }, 300_000);

  afterAll(async () => {
    await nft(['delete', 'table', 'inet', TABLE]);
    for (const d of [a, b]) await d?.stop();
    if (existsSync(CGROUP)) rmdirSync(CGROUP);
    for (const dir of dirs) removeDir(dir);
    await ceph('rbd', ['rm', '--no-progress', `rbd/${IMAGE}`]);
  }, 120_000);

  it('A acknowledges nothing only its local leg holds and stops at its deadline; B takes over with every acknowledged write', async () => {
    const env = { ONESTACK_RBD_LEASE_MS: String(LEASE_MS) };
    a = await Daemon.start({ dataDir: path.join(dirs[0]!, 'data'), configPath: configs.a, readyTimeoutMs: 90_000,
      env: { ...env, NODE_OPTIONS: `--import=${PRELOAD}`, ONESTACK_TEST_CGROUP: CGROUP } });
    expect(readFileSync(`${CGROUP}/cgroup.procs`, 'latin1').split('\n')).toContain(String(a.child.pid));
    const acked: number[] = [];
    for (let gen = 1; gen <= 3; gen++) {
      const w = await write(a, gen);
      expect(qemuIoFailed(w), explain(w)).toBe(false);
      acked.push(gen);
    }
    // The partition: A's sockets (its cgroup) may not reach the monitors (3300, 6789) or OSDs.
    for (const args of [['add', 'table', 'inet', TABLE], ['add', 'chain', 'inet', TABLE, 'out', '{ type filter hook output priority 0; }'],
      ['add', 'rule', 'inet', TABLE, 'out', 'socket', 'cgroupv2', 'level', '1', `"${path.relative('/sys/fs/cgroup', CGROUP)}"`, 'tcp', 'dport', '{ 3300, 6789, 6800-7300 }', 'drop']]) {
      const r = await nft(args);
      expect(r.code, explain(r)).toBe(0);
    }
    const cutMs = Date.now();
    let failed = 0;
    // Writes every ~0.1 s until two fail (A stopped serving); blocks 4..199 stay inside the 16 MiB volume.
    for (let gen = 4; gen < 200 && failed < 2 && Date.now() - cutMs < 60_000; gen++) {
      const w = await write(a, gen);
      if (qemuIoFailed(w)) failed++;
      else acked.push(gen);
      await sleep(100);
    }
    expect(failed, a.logs()).toBe(2);
    expect(a.stderr).toMatch(/volume v: stopped serving: element r0 lost its ownership lock/);
    // Nothing A acknowledged after the cut can be missing from the image: none was acknowledged
    // once the rbd leg had left (the gate held them until the self-fence failed them).
    const stoppedS = ((Date.now() - cutMs) / 1000).toFixed(1);
    process.stdout.write(`rbd partition: A stopped within ${stoppedS} s of the cut; ${acked.length} writes acknowledged in all\n`);
    b = await Daemon.start({ dataDir: path.join(dirs[1]!, 'data'), configPath: configs.b, readyTimeoutMs: 120_000, env });
    expect(b.stderr, b.logs()).toMatch(/lease did not move for [\d.]+ s: fenced client\.\d+ at \S+ \(blocklisted 3600 s\)/);
    for (const gen of acked) {
      const r = await qemuIo(b.uri('v'), [`read -P ${pattern(gen)} ${gen * BLOCK_BYTES} ${BLOCK_BYTES}`]);
      expect(qemuIoFailed(r), `write ${gen} acknowledged by A is missing on B\n${explain(r)}\n--- A\n${a.logs()}\n--- B\n${b.logs()}`).toBe(false);
    }
  }, 300_000);
});
