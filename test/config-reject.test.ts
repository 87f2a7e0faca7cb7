// Acceptance (issue 8, config): a rejected change leaves the running daemon and its on-disk state
// untouched. With a daemon serving a config volume (m: raid1 a0+a1) and a run-time volume (n:
// raid1 b0+b1, so the state file exists), every rejected API change — bad volume create bodies,
// element add with a bad URI, a volume over an element of another volume, changes refused while
// a rebuild runs — gets its 4xx, and afterwards the status (without counters), the state file
// (<dataDir>/onestack-state.json) and every element's first 4 MiB (superblock, bitmap, journal)
// are byte-identical to before, and both volumes still serve their data. `serve` reads its config
// at start only: SIGHUP with a broken config file on disk is ignored (logged), and a restart on a
// broken config is refused with path:line (a layout that contradicts the superblocks: refused
// naming the element), leaving the disk as it was.
import { writeFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NbdClient } from '@onestack/nbd';
import { CLI_MAIN, Daemon, REPO_ROOT } from './lib/daemon.js';
import { apiCall, diskState, fullState, type FullState } from './lib/daemon-state.js';
import { DATA_OFFSET_BYTES, MiB, removeDir, sparseFile, tempDir, writeConfig } from './lib/files.js';
import { run, sleep } from './lib/proc.js';

const LEG_BYTES = DATA_OFFSET_BYTES + 64 * MiB;
const TINY_BYTES = DATA_OFFSET_BYTES + MiB + 64 * 1024;
const PATTERN_BYTES = 256 * 1024;
const SETTLE_MS = 4_000; // bitmap bits clear 2-3 s after the last write

interface Rejected {
  readonly title: string;
  readonly method: 'POST' | 'DELETE' | 'GET';
  readonly route: string;
  readonly body?: unknown;
  readonly status: number;
  /** Part of the error message or its `where`. */
  readonly says: RegExp;
}

const pattern = (seed: number): Uint8Array => Uint8Array.from({ length: PATTERN_BYTES }, (_, i) => (i * 31 + seed) & 0xff);

describe('config: rejected changes leave the daemon and the disk untouched', () => {
  let dir = '';
  let configPath = '';
  let goodConfig = '';
  let images: ReadonlyMap<string, string> = new Map();
  let daemon: Daemon | null = null;
  const d = (): Daemon => daemon!;

  const readBack = async (volume: string, seed: number): Promise<void> => {
    const c = await NbdClient.connect({ host: '127.0.0.1', port: d().nbdPort, exportName: volume, timeoutMs: 10_000 });
    try {
      const buf = new Uint8Array(PATTERN_BYTES);
      await c.read(MiB, buf);
      expect(Buffer.compare(Buffer.from(buf), Buffer.from(pattern(seed))), `${volume} still serves its data`).toBe(0);
    } finally { await c.close(); }
  };

  /** The state now, after checking it does not move by itself (so a difference means the request changed it). */
  const settled = async (): Promise<FullState> => {
    const first = await fullState(d(), images);
    await sleep(1000);
    const second = await fullState(d(), images);
    expect(second, 'the state is steady before the rejected requests').toEqual(first);
    return second;
  };

  const expectRejected = async (cases: readonly Rejected[], before: FullState): Promise<void> => {
    for (const c of cases) {
      const r = await apiCall(d(), c.method, c.route, c.body);
      expect.soft(r.status, `${c.title}: ${c.method} ${c.route} → ${r.text}`).toBe(c.status);
      expect.soft(r.text, c.title).toMatch(c.says);
      expect(await fullState(d(), images), `${c.title}: status, state file and element headers unchanged`).toEqual(before);
    }
    expect(d().alive).toBe(true);
  };

  beforeAll(async () => {
    dir = tempDir('reject');
    const legs = ['a0', 'a1', 'b0', 'b1', 's0', 's1'].map((name) => ({ name, sizeBytes: LEG_BYTES }));
    ({ configPath, images } = await writeConfig(dir, [...legs, { name: 't0', sizeBytes: TINY_BYTES }], [
      { name: 'm', layout: 'raid1', elements: ['a0', 'a1'] },
    ], ['rebuild: { maxMiBPerSec: 1 }'])); // slow, so a rebuild is still running while it is poked at
    goodConfig = await readFile(configPath, 'utf8');
    await sparseFile(path.join(dir, 'tiny-extra.img'), DATA_OFFSET_BYTES);
    daemon = await Daemon.start({ dataDir: path.join(dir, 'data'), configPath });
    const created = await apiCall(d(), 'POST', 'volumes', { name: 'n', layout: 'raid1', elements: ['b0', 'b1'] });
    expect(created.status, created.text).toBe(201);
    for (const [volume, seed] of [['m', 1], ['n', 2]] as const) {
      const c = await NbdClient.connect({ host: '127.0.0.1', port: d().nbdPort, exportName: volume, timeoutMs: 10_000 });
      await c.write(MiB, pattern(seed));
      await c.flush();
      await c.close();
    }
    await sleep(SETTLE_MS);
  });

  afterAll(async () => {
    await daemon?.stop();
    if (dir !== '') removeDir(dir);
  });

  it('bad volume create bodies, bad element adds, and changes that conflict with other volumes: 4xx, nothing changed', async () => {
    const before = await settled();
    const img = (name: string): string => images.get(name)!;
    await expectRejected([
      { title: 'body is not JSON', method: 'POST', route: 'volumes', body: '{"name": "z",', status: 400, says: /JSON/ },
      { title: 'body is a list', method: 'POST', route: 'volumes', body: [1, 2], status: 400, says: /JSON object/ },
      { title: 'unknown field', method: 'POST', route: 'volumes', body: { name: 'z', layout: 'raid1', elements: ['s0', 's1'], colour: 'red' }, status: 400, says: /colour/ },
      { title: 'bad volume name', method: 'POST', route: 'volumes', body: { name: '../z', layout: 'raid1', elements: ['s0', 's1'] }, status: 400, says: /name/ },
      { title: 'unknown layout', method: 'POST', route: 'volumes', body: { name: 'z', layout: 'raid9', elements: ['s0', 's1'] }, status: 400, says: /layout/ },
      { title: 'no elements', method: 'POST', route: 'volumes', body: { name: 'z', layout: 'raid1', elements: [] }, status: 400, says: /elements/ },
      { title: 'an element twice', method: 'POST', route: 'volumes', body: { name: 'z', layout: 'raid1', elements: ['s0', 's0'] }, status: 400, says: /twice/ },
      { title: 'raid1 of one element', method: 'POST', route: 'volumes', body: { name: 'z', layout: 'raid1', elements: ['s0'] }, status: 400, says: /at least 2/ },
      { title: 'raid5 of two elements', method: 'POST', route: 'volumes', body: { name: 'z', layout: 'raid5', elements: ['s0', 's1'] }, status: 400, says: /at least 3/ },
      { title: 'chunkKiB not a power of two', method: 'POST', route: 'volumes', body: { name: 'z', layout: 'raid0', elements: ['s0', 's1'], chunkKiB: 48 }, status: 400, says: /power of two/ },
      { title: 'unknown element', method: 'POST', route: 'volumes', body: { name: 'z', layout: 'raid1', elements: ['s0', 'nope'] }, status: 404, says: /nope/ },
      { title: 'an element of another volume (config volume m)', method: 'POST', route: 'volumes', body: { name: 'z', layout: 'raid1', elements: ['s0', 'a1'] }, status: 409, says: /a1 is already used by volume m/ },
      { title: 'an element of another volume (run-time volume n)', method: 'POST', route: 'volumes', body: { name: 'z', layout: 'raid1', elements: ['b0', 's1'] }, status: 409, says: /b0 is already used by volume n/ },
      { title: 'the name of an existing volume', method: 'POST', route: 'volumes', body: { name: 'n', layout: 'raid1', elements: ['s0', 's1'] }, status: 409, says: /already exists/ },
      { title: 'an element smaller than one chunk', method: 'POST', route: 'volumes', body: { name: 'z', layout: 'raid0', elements: ['s0', 't0'], chunkKiB: 16384 }, status: 400, says: /smaller than one/ },
      { title: 'element add: unknown scheme', method: 'POST', route: 'elements', body: { uri: 'ftp://127.0.0.1/x', name: 'x' }, status: 400, says: /uri|scheme/i },
      { title: 'element add: unreachable nbd://', method: 'POST', route: 'elements', body: { uri: 'nbd://127.0.0.1:1/x', name: 'x' }, status: 502, says: /cannot reach.*"code":"unreachable"/ },
      { title: 'element add: missing file', method: 'POST', route: 'elements', body: { uri: `file:${path.join(dir, 'no-such-dir', 'x.img')}`, name: 'x' }, status: 404, says: /not found|no such/i },
      { title: 'element add: the file of element a0', method: 'POST', route: 'elements', body: { uri: `file:${img('a0')}`, name: 'x' }, status: 409, says: /a0/ },
      { title: 'element add: the name of element a0', method: 'POST', route: 'elements', body: { uri: `file:${path.join(dir, 'tiny-extra.img')}`, name: 'a0' }, status: 409, says: /a0/ },
      { title: 'element add: secretFile on nbd://', method: 'POST', route: 'elements', body: { uri: 'nbd://127.0.0.1:1/x', secretFile: '/etc/passwd' }, status: 400, says: /secretFile/ },
      { title: 'delete an unknown volume', method: 'DELETE', route: 'volumes/nope', status: 404, says: /nope/ },
      { title: 'remove an element in use', method: 'DELETE', route: 'elements/a0', status: 409, says: /used by volume m/ },
      { title: 'replace with an element of another volume', method: 'POST', route: 'volumes/m/replace', body: { old: 'a1', new: 'b0' }, status: 409, says: /b0/ },
      { title: 'replace with a too small element', method: 'POST', route: 'volumes/m/replace', body: { old: 'a1', new: 't0' }, status: 400, says: /t0/ },
      { title: 'replace an element that is not a leg', method: 'POST', route: 'volumes/m/replace', body: { old: 's1', new: 's0' }, status: 404, says: /s1 is not part of volume m/ },
      { title: 'boot with a body', method: 'POST', route: 'volumes/m/boot', body: { now: true }, status: 400, says: /now|body/ },
      { title: 'scrub with a bad option', method: 'POST', route: 'volumes/m/scrub', body: { repair: 'yes' }, status: 400, says: /repair/ },
    ], before);
    await readBack('m', 1);
    await readBack('n', 2);
  }, 120_000);

  it('while a rebuild runs: changes that would cut into it are refused, nothing changed, the rebuild goes on', async () => {
    const started = await apiCall(d(), 'POST', 'volumes/n/replace', { old: 'b1', new: 's0' });
    expect(started.status, started.text).toBe(202);
    await sleep(1500); // the new leg's superblock and the state file are written when the rebuild starts
    const before = await settled();
    const n = (before.status as { volumes: { name: string; rebuild: unknown }[] }).volumes.find((v) => v.name === 'n');
    expect(n?.rebuild, 'the rebuild onto s0 runs').toEqual({ kind: 'rebuild', element: 's0' });
    await expectRejected([
      { title: 'remove the element being rebuilt', method: 'DELETE', route: 'elements/s0', status: 409, says: /s0 is used by volume n/ },
      { title: 'fail the only leg the rebuild copies from', method: 'POST', route: 'elements/b0/fail', body: {}, status: 409, says: /without its data/ },
      { title: 'scrub during the rebuild', method: 'POST', route: 'volumes/n/scrub', body: {}, status: 409, says: /rebuilding/ },
      { title: 'replace the only source leg', method: 'POST', route: 'volumes/n/replace', body: { old: 'b0', new: 's1' }, status: 409, says: /b0|active/ },
      { title: 'a new volume over the element being rebuilt', method: 'POST', route: 'volumes', body: { name: 'z', layout: 'raid1', elements: ['s0', 's1'] }, status: 409, says: /s0 is already used by volume n/ },
    ], before);
    await readBack('n', 2);
  }, 120_000);

  // Not a rejected change, by design: deleting a volume cancels its rebuild (like its scrub), so a
  // volume whose rebuild cannot finish can still be removed. It must touch nothing of volume m.
  it('deleting the volume under rebuild is accepted: the rebuild stops, volume m is untouched', async () => {
    const before = await fullState(d(), images);
    const mOf = (st: typeof before): unknown => (st.status as { volumes: { name: string }[] }).volumes.find((v) => v.name === 'm');
    const deleted = await apiCall(d(), 'DELETE', 'volumes/n');
    expect(deleted.status, deleted.text).toBe(204);
    const after = await fullState(d(), images);
    expect((after.status as { volumes: { name: string }[] }).volumes.map((v) => v.name)).toEqual(['m']);
    expect(mOf(after)).toEqual(mOf(before));
    expect([after.headers['a0'], after.headers['a1']]).toEqual([before.headers['a0'], before.headers['a1']]);
    const states = Object.fromEntries((await d().status()).elements.map((e) => [e.name, e.state]));
    expect([states['b0'], states['s0']]).toEqual(['spare', 'spare']);
    await readBack('m', 1);
    // Back as it was for the tests below: n over b0 and s0 (rebuilt onto), data written again.
    const again = await apiCall(d(), 'POST', 'volumes', { name: 'n', layout: 'raid1', elements: ['b0', 's0'] });
    expect(again.status, again.text).toBe(201);
    const c = await NbdClient.connect({ host: '127.0.0.1', port: d().nbdPort, exportName: 'n', timeoutMs: 10_000 });
    await c.write(MiB, pattern(2));
    await c.flush();
    await c.close();
    await sleep(SETTLE_MS);
  }, 60_000);

  it('SIGHUP with a broken config on disk is ignored and logged: the daemon serves on, nothing changed', async () => {
    const before = await settled();
    writeFileSync(configPath, goodConfig.replace('layout: raid1', 'layout: raid9'));
    d().child.kill('SIGHUP');
    await sleep(1000);
    expect(d().alive, `SIGHUP ended the daemon\n${d().logs()}`).toBe(true);
    expect(d().stderr).toMatch(/SIGHUP ignored: the config is read at start only/);
    expect(await fullState(d(), images)).toEqual(before);
    await readBack('m', 1);
  });

  it('a restart on a broken config is refused with path:line and changes nothing on disk; the good config serves again', async () => {
    const stopped = await d().stop();
    expect(stopped.killed).toBe(false);
    const dataDir = d().dataDir;
    const before = await diskState(dataDir, images);
    const broken: readonly { text: string; says: RegExp; code?: number }[] = [
      { text: goodConfig.replace('layout: raid1', 'layout: raid9'), says: /volumes\[0\]\.layout: unknown layout "raid9".*onestack\.yaml:\d+:\d+ volumes\[0\]\.layout/ },
      { text: goodConfig.replace('rebuild: { maxMiBPerSec: 1 }', 'rebuild: { maxMiBPerSec: -1 }'), says: /rebuild\.maxMiBPerSec: -1 is out of range.*onestack\.yaml:\d+:\d+ rebuild\.maxMiBPerSec/ },
      { text: goodConfig.replace('elements: [a0, a1]', 'elements: [a0, a1, a0]'), says: /volumes\[0\]\.elements\[2\].*onestack\.yaml:\d+:\d+ volumes\[0\]\.elements\[2\]/ },
      { text: `${goodConfig}pools: { bottom: 0 }\n`, says: /pools\.bottom: 0 is out of range.*onestack\.yaml:\d+:\d+ pools\.bottom/ },
      // Valid as a file, but not what the elements hold: refused by the assembler (it names the element, not the line).
      { text: goodConfig.replace('layout: raid1', 'layout: raid0'), says: /volume m: element a\d says raid1, 2 elements.*the config says raid0/, code: 1 },
    ];
    for (const b of broken) {
      writeFileSync(configPath, b.text);
      const r = await run(process.execPath, [CLI_MAIN, 'serve', '--config', configPath, '--data-dir', dataDir, '--nbd', `127.0.0.1:${d().nbdPort}`, '--api', `127.0.0.1:${d().apiPort}`],
        { timeoutMs: 30_000, cwd: REPO_ROOT });
      expect(r.code, `${r.stdout}\n${r.stderr}`).toBe(b.code ?? 2);
      expect(r.stderr.split('\n').find((l) => l.startsWith('onestack: error:')), r.stderr).toMatch(b.says);
      expect(await diskState(dataDir, images), 'state file and element headers unchanged').toEqual(before);
    }
    writeFileSync(configPath, goodConfig);
    daemon = await Daemon.start({ dataDir, configPath, nbdPort: d().nbdPort, apiPort: d().apiPort });
    await readBack('m', 1);
    await readBack('n', 2);
  }, 120_000);
});
