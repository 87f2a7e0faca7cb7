// Issue 11, transport-aware reads (docs/transport.md): a raid1 of a local file and a remote leg
// that nbdkit's delay filter slows to 20 ms per request serves its reads from the local leg (the
// element read counters prove it), and status shows the remote's read EWMA far above the
// local's; a raid10 whose pairs are local + delayed remote does the same per pair; a raid1 of two
// local legs still spreads its reads over both (no regression). Reads come from nbdcopy.
import { mkdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLI_MAIN, Daemon } from './lib/daemon.js';
import { DATA_OFFSET_BYTES, MiB, removeDir, sparseFile, tempDir, writeConfig } from './lib/files.js';
import { nbdcopy } from './lib/peers.js';
import { explain, missingTools, run } from './lib/proc.js';
import { parseProm, value } from './lib/prom-parse.js';
import { startNbdkit, type NbdkitPeer } from './lib/remotes.js';

const VOLUME_BYTES = 128 * MiB;
const ELEMENT_BYTES = DATA_OFFSET_BYTES + VOLUME_BYTES;
const missing = missingTools(['nbdkit', 'nbdcopy']);

interface ElementView {
  readonly name: string;
  readonly stats?: { readOps: number; readBytes: number };
  readonly latency?: { readUsEwma: number | null; writeUsEwma: number | null; readMiBPerSec: number; writeMiBPerSec: number };
}

describe.skipIf(missing !== null)(`transport-aware reads${missing !== null ? ` (skipped: ${missing})` : ''}`, () => {
  let dir = '';
  let nbdkit: NbdkitPeer | null = null;
  let daemon: Daemon | null = null;
  /** The same local raid1 with the fast lane off: every read is placed by the middle stage's rule. */
  let laneOff: Daemon | null = null;

  beforeAll(async () => {
    dir = tempDir('transport');
    const remoteDir = path.join(dir, 'remote');
    mkdirSync(remoteDir);
    for (const name of ['r0', 'r1', 'r2']) await sparseFile(path.join(remoteDir, `${name}.img`), ELEMENT_BYTES);
    // Every file of remoteDir is an export of its own name, each request delayed by 20 ms.
    nbdkit = await startNbdkit(['--filter=delay', 'file', `dir=${remoteDir}`, 'rdelay=20ms', 'wdelay=20ms']);
    const remote = (name: string) => ({ name, uri: `nbd://127.0.0.1:${nbdkit!.port}/${name}.img`, options: { timeoutMs: 10_000 } });
    const local = (name: string) => ({ name, sizeBytes: ELEMENT_BYTES });
    const { configPath } = await writeConfig(dir, [local('l0'), remote('r0'), local('a'), local('b'), local('p0'), remote('r1'), local('p1'), remote('r2')], [
      { name: 'mixed', layout: 'raid1', elements: ['l0', 'r0'] },
      { name: 'locals', layout: 'raid1', elements: ['a', 'b'] },
      { name: 'pairs', layout: 'raid10', elements: ['p0', 'r1', 'p1', 'r2'], chunkKiB: 64 },
    ]);
    daemon = await Daemon.start({ dataDir: path.join(dir, 'data'), configPath });
    const offDir = path.join(dir, 'lane-off');
    mkdirSync(offDir);
    const off = await writeConfig(offDir, [local('a'), local('b')], [{ name: 'locals', layout: 'raid1', elements: ['a', 'b'] }]);
    laneOff = await Daemon.start({ dataDir: path.join(offDir, 'data'), configPath: off.configPath, env: { ONESTACK_NOWAIT: 'off' } });
  }, 120_000);

  afterAll(async () => {
    await daemon?.stop();
    await laneOff?.stop();
    await nbdkit?.stop();
    if (dir !== '') removeDir(dir);
  });

  const elements = async (d = daemon!): Promise<Map<string, ElementView>> => {
    const s = (await d.status()) as unknown as { elements: ElementView[] };
    return new Map(s.elements.map((e) => [e.name, e]));
  };
  const readOps = (m: Map<string, ElementView>, name: string): number => m.get(name)?.stats?.readOps ?? NaN;
  /** Whole volume in 64 KiB reads (--no-extents: holes are read too, not skipped). */
  const readAll = async (volume: string, d = daemon!): Promise<void> => {
    const r = await nbdcopy(d.uri(volume), 'null:', ['--no-extents', '--request-size=65536']);
    expect(r.code, explain(r)).toBe(0);
  };

  it('raid1 local + delayed remote: ≥ 90 % of reads from the local leg; the remote EWMA is far above the local', async () => {
    const before = await elements();
    await readAll('mixed');
    const after = await elements();
    const local = readOps(after, 'l0') - readOps(before, 'l0');
    const far = readOps(after, 'r0') - readOps(before, 'r0');
    expect(local + far).toBeGreaterThanOrEqual(VOLUME_BYTES / (64 * 1024));
    expect(local / (local + far), `l0 ${local} r0 ${far}`).toBeGreaterThanOrEqual(0.9);
    expect(far, 'the remote is still probed now and then').toBeGreaterThan(0);
    const l = after.get('l0')?.latency;
    const r = after.get('r0')?.latency;
    console.info(`transport-reads: raid1 reads l0 ${local} r0 ${far}; read EWMA l0 ${l?.readUsEwma} µs r0 ${r?.readUsEwma} µs`);
    expect(r?.readUsEwma ?? 0, JSON.stringify({ l, r })).toBeGreaterThan(10_000); // 20 ms rdelay
    // Loose on purpose: on a loaded 2-core box a local pread can wait milliseconds for a CPU.
    expect(l?.readUsEwma ?? Infinity, JSON.stringify({ l, r })).toBeLessThan((r?.readUsEwma ?? 0) / 2);
  }, 120_000);

  it('raid10 with local + delayed remote pairs: each pair reads from its local leg', async () => {
    const before = await elements();
    await readAll('pairs');
    const after = await elements();
    const delta = (name: string): number => readOps(after, name) - readOps(before, name);
    const local = delta('p0') + delta('p1');
    const far = delta('r1') + delta('r2');
    console.info(`transport-reads: raid10 reads p0 ${delta('p0')} r1 ${delta('r1')} p1 ${delta('p1')} r2 ${delta('r2')}`);
    expect(local / (local + far), `locals ${local} remotes ${far}`).toBeGreaterThanOrEqual(0.9);
    expect(delta('p0'), 'both pairs served').toBeGreaterThan(0);
    expect(delta('p1'), 'both pairs served').toBeGreaterThan(0);
  }, 120_000);

  it('raid1 of two local legs still spreads reads over both (fast lane on, and off)', async () => {
    for (const [label, d] of [['lane on', daemon!], ['lane off', laneOff!]] as const) {
      const before = await elements(d);
      await readAll('locals', d);
      const after = await elements(d);
      const a = readOps(after, 'a') - readOps(before, 'a');
      const b = readOps(after, 'b') - readOps(before, 'b');
      console.info(`transport-reads: local raid1 (${label}) reads a ${a} b ${b}`);
      expect(a + b).toBeGreaterThanOrEqual(VOLUME_BYTES / (64 * 1024));
      expect(Math.min(a, b) / (a + b), `${label}: a ${a} b ${b}`).toBeGreaterThanOrEqual(0.1);
    }
  }, 120_000);

  it('status text shows the measured latency per element', async () => {
    const s = (await daemon!.status()) as unknown as { elements: ElementView[] };
    const r0 = s.elements.find((e) => e.name === 'r0');
    expect(r0?.latency?.readUsEwma).not.toBeNull();
    const text = await run(process.execPath, [CLI_MAIN, 'status', '--api', `127.0.0.1:${daemon!.apiPort}`, '--data-dir', path.join(dir, 'data')]);
    expect(text.code, explain(text)).toBe(0);
    expect(text.stdout).toMatch(/r0\[1\] .*lat read \d+(\.\d)?ms write/);
  }, 60_000);

  it('/metrics has the EWMAs in base units (strict Prometheus parse)', async () => {
    const token = readFileSync(path.join(dir, 'data', 'api-token'), 'utf8').trim();
    const res = await fetch(`http://127.0.0.1:${daemon!.apiPort}/api/v1/metrics`, { headers: { authorization: `Bearer ${token}` }, signal: AbortSignal.timeout(10_000) });
    expect(res.status).toBe(200);
    const m = parseProm(await res.text());
    expect(value(m, 'onestack_element_read_latency_ewma_seconds', { element: 'r0' })).toBeGreaterThan(0.01);
    expect(value(m, 'onestack_element_read_latency_ewma_seconds', { element: 'l0' })).toBeLessThan(value(m, 'onestack_element_read_latency_ewma_seconds', { element: 'r0' }));
    expect(value(m, 'onestack_element_read_throughput_ewma_bytes_per_second', { element: 'l0' })).toBeGreaterThanOrEqual(0);
  }, 60_000);
});
