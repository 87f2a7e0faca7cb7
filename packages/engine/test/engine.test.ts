import { execFile, execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
// Workers are .js files, so this imports the BUILT dist (run tsc -b packages/engine first).
import { Engine, EngineError, readStateFile, startNbdExport } from '../dist/index.js';
import { readSuperblockFile } from '../dist/meta/element-io.js';
import { DATA_OFFSET_BYTES } from '../dist/meta/types.js';

const MiB = 1024 * 1024;
const hasNbdinfo = ((): boolean => {
  try {
    execFileSync('nbdinfo', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
})();

function nbdinfo(args: readonly string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile('nbdinfo', [...args], { timeout: 20_000 }, (err, stdout) => (err ? reject(err) : resolve(stdout)));
  });
}
const quiet = (): void => {};
let dir: string;
beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'onestack-engine-'));
});
afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

/** Byte comparison without deep-equality cost (vitest's toEqual is slow on large arrays). */
function expectBytes(actual: Uint8Array, expected: Uint8Array): void {
  expect(actual.length).toBe(expected.length);
  expect(Buffer.compare(actual, expected)).toBe(0);
}

function pattern(length: number, seed: number): Uint8Array {
  const bytes = new Uint8Array(length);
  for (let i = 0; i < length; i++) bytes[i] = (i * 31 + seed) & 0xff;
  return bytes;
}

describe('Engine', () => {
  it('opens the embedded default, writes, closes, reopens and reads the same data', async () => {
    const engine = await Engine.open({ dataDir: dir, log: quiet });
    const vol = engine.volume('default');
    expect(vol.sizeBytes).toBe(1024 ** 3);
    expect(engine.bootVolume()).toBe(vol);
    expect(fs.statSync(path.join(dir, 'disk0.img')).size).toBe(1024 ** 3 + DATA_OFFSET_BYTES);
    const data = pattern(256 * 1024, 7);
    await vol.write(1 * MiB, data, { fua: true });
    await vol.write(1024 ** 3 - 4096, pattern(4096, 9));
    await vol.flush();
    expectBytes(await vol.read(1 * MiB, data.length), data);
    const status = engine.status();
    expect(status.volumes[0]).toMatchObject({ name: 'default', layout: 'raid1', sizeBytes: 1024 ** 3, state: 'optimal', rebuild: null });
    expect(status.volumes[0]?.elements.map((e) => [e.name, e.kind, e.state, e.role])).toEqual([['d0', 'local', 'active', 0], ['d1', 'local', 'active', 1]]);
    expect(status.volumes[0]?.stats.writeOps).toBeGreaterThan(0);
    expect(status.pools.bottom.threads).toBe(2);
    expect((await readSuperblockFile(path.join(dir, 'disk1.img')) as { clean: boolean }).clean).toBe(false);
    await engine.close();
    await expect(vol.read(0, 512)).rejects.toThrow(/closed/);
    const sb = await readSuperblockFile(path.join(dir, 'disk0.img')) as { clean: boolean; eventCount: number };
    expect(sb.clean).toBe(true);
    expect(sb.eventCount).toBe(3);

    const again = await Engine.open({ dataDir: dir, log: quiet });
    const vol2 = again.volume('default');
    expectBytes(await vol2.read(1 * MiB, data.length), data);
    expectBytes(await vol2.read(1024 ** 3 - 4096, 4096), pattern(4096, 9));
    // Both legs hold the data (raid1): each file has it right after the header area.
    for (const disk of ['disk0.img', 'disk1.img']) {
      const fd = fs.openSync(path.join(dir, disk), 'r');
      const buf = Buffer.alloc(data.length);
      fs.readSync(fd, buf, 0, data.length, DATA_OFFSET_BYTES + 1 * MiB);
      fs.closeSync(fd);
      expectBytes(new Uint8Array(buf), data);
    }
    await again.close();
  });

  it('creates, persists and deletes run-time volumes and elements', async () => {
    const config = { dataDir: dir, nbd: { listen: '127.0.0.1:0' } };
    const engine = await Engine.open({ config, log: quiet });
    expect(engine.volumes()).toEqual([]);
    const changes: unknown[] = [];
    engine.events.on('change', (s) => changes.push(s));
    const vol = await engine.createVolume({ name: 'fast', layout: 'raid0', elements: [path.join(dir, 'a.img'), path.join(dir, 'b.img')], sizeBytes: 8 * MiB, chunkKiB: 128 });
    expect(vol.sizeBytes).toBe(16 * MiB);
    expect(engine.status().elements.map((e) => [e.name, e.volume, e.role])).toEqual([['a', 'fast', 0], ['b', 'fast', 1]]);
    await vol.write(3 * MiB, pattern(65536, 1));
    await expect(engine.createVolume({ name: 'fast', layout: 'linear', elements: ['a'] })).rejects.toThrow(/already exists/);
    await expect(engine.createVolume({ name: 'other', layout: 'linear', elements: ['a'] })).rejects.toThrow(/already used by volume fast/);
    await expect(engine.createVolume({ name: 'r10', layout: 'raid10', elements: ['a'] })).rejects.toMatchObject({ code: 'invalid' });
    await expect(engine.removeElement('a')).rejects.toMatchObject({ code: 'conflict' });
    const spare = await engine.addElement({ uri: `file:${path.join(dir, 'a.img')}`, name: 'dup' }).catch((err: EngineError) => err);
    expect(spare).toMatchObject({ code: 'conflict' });
    fs.writeFileSync(path.join(dir, 'c.img'), '');
    fs.truncateSync(path.join(dir, 'c.img'), DATA_OFFSET_BYTES + 4 * MiB);
    expect(await engine.addElement({ uri: 'c.img' })).toMatchObject({ name: 'c', state: 'spare', sizeBytes: 4 * MiB, volume: null });
    // Nothing listens on port 1: a remote element is checked when added, with a clear error.
    await expect(engine.addElement({ uri: 'nbd://127.0.0.1:1/x', name: 'r0' })).rejects.toMatchObject({ code: 'unreachable', message: expect.stringMatching(/cannot reach nbd:\/\/127\.0\.0\.1:1\/x/) });
    expect(readStateFile(dir).volumes.map((v) => v.name)).toEqual(['fast']);
    expect(changes.length).toBeGreaterThanOrEqual(2);
    await engine.close();

    const again = await Engine.open({ config, log: quiet });
    expectBytes(await again.volume('fast').read(3 * MiB, 65536), pattern(65536, 1));
    expect(again.status().elements.map((e) => e.name)).toEqual(['a', 'b', 'c']);
    await again.deleteVolume('fast');
    expect(() => again.volume('fast')).toThrow(EngineError);
    expect('kind' in (await readSuperblockFile(path.join(dir, 'a.img')))).toBe(true);
    expect(fs.existsSync(path.join(dir, 'a.img'))).toBe(true);
    await again.removeElement('c');
    expect(readStateFile(dir).elements.map((e) => e.name)).toEqual(['a', 'b']);
    await again.close();
  });

  it('serves a volume built from elements added earlier (spare → active → spare)', async () => {
    const engine = await Engine.open({ config: { dataDir: dir, nbd: { listen: '127.0.0.1:0' } }, log: quiet });
    for (const name of ['e2', 'e3']) {
      const file = path.join(dir, `${name}.img`);
      fs.writeFileSync(file, '');
      fs.truncateSync(file, DATA_OFFSET_BYTES + 8 * MiB);
      expect(await engine.addElement({ uri: `file:${file}`, name })).toMatchObject({ state: 'spare' });
    }
    const vol = await engine.createVolume({ name: 'm', layout: 'raid1', elements: ['e2', 'e3'] });
    expect(engine.status().elements.map((e) => [e.name, e.state])).toEqual([['e2', 'active'], ['e3', 'active']]);
    await vol.write(MiB, pattern(8192, 3));
    await vol.flush();
    expectBytes(await vol.read(MiB, 8192), pattern(8192, 3));
    await engine.deleteVolume('m');
    expect(engine.status().elements.map((e) => [e.name, e.state])).toEqual([['e2', 'spare'], ['e3', 'spare']]);
    await engine.close();
  });

  it('fails an element: the volume degrades, the leg comes back stale', async () => {
    const engine = await Engine.open({ dataDir: dir, log: quiet });
    await engine.failElement('d1');
    expect(engine.status().volumes[0]?.state).toBe('degraded');
    await expect(engine.failElement('d0')).rejects.toThrow(/would leave volume default without its data/);
    await engine.volume('default').write(0, pattern(4096, 3));
    await engine.close();
    const again = await Engine.open({ dataDir: dir, log: quiet });
    expect(again.status().volumes[0]?.elements.map((e) => e.state)).toEqual(['active', 'stale']);
    expectBytes(await again.volume('default').read(0, 4096), pattern(4096, 3));
    await again.close();
  });

  it('records a leg the data path failed in the superblocks at once, so a crash cannot revive it', async () => {
    const engine = await Engine.open({ dataDir: dir, log: quiet });
    const events = async (file: string): Promise<number> => {
      const sb = await readSuperblockFile(path.join(dir, file));
      if (!('eventCount' in sb)) throw new Error(`${file}: no superblock`);
      return Number(sb.eventCount);
    };
    const before = [await events('disk0.img'), await events('disk1.img')];
    expect(before[0]).toBe(before[1]);
    // Deterministic fault: what the bottom stage does when a mirror leg returns an I/O error.
    const dataPath = (engine as unknown as { dataPath: { setElementState(i: number, s: string): void } }).dataPath;
    dataPath.setElementState(1, 'failed');
    for (let i = 0; i < 40 && (await events('disk0.img')) === before[0]; i++) await new Promise((r) => setTimeout(r, 50));
    expect(await events('disk0.img')).toBeGreaterThan(before[0]!);
    expect(await events('disk1.img')).toBe(before[1]); // the failed leg is not written
    expect(engine.status().volumes[0]?.state).toBe('degraded');
    await engine.volume('default').write(0, pattern(4096, 9));
    await engine.close();
    // Reassembled stale and resynced at once (issue 5): only the bitmap's dirty regions are copied.
    const again = await Engine.open({ dataDir: dir, log: quiet });
    expect(again.status().volumes[0]?.elements.map((e) => e.state)).toEqual(['active', 'rebuilding']);
    expectBytes(await again.volume('default').read(0, 4096), pattern(4096, 9));
    for (let i = 0; i < 100 && again.status().volumes[0]?.state !== 'optimal'; i++) await new Promise((r) => setTimeout(r, 50));
    expect(again.status().volumes[0]).toMatchObject({ state: 'optimal', lastRebuild: { kind: 'resync', outcome: 'done' } });
    expect(again.status().volumes[0]?.lastRebuild?.totalBytes).toBeLessThan(1024 ** 3 / 100);
    await again.close();
  });

  // Needs nbdinfo (Debian package libnbd-bin, installed by scripts/test.sh) as the real peer.
  it.skipIf(!hasNbdinfo)('exports volumes over NBD by name, and the boot volume under the empty name', async () => {
    const engine = await Engine.open({ dataDir: dir, log: quiet });
    await engine.createVolume({ name: 'lin', layout: 'linear', elements: [path.join(dir, 'l.img')], sizeBytes: 8 * MiB });
    const nbd = await startNbdExport(engine, { host: '127.0.0.1', port: 0 });
    const list = JSON.parse(await nbdinfo(['--list', '--json', `nbd://127.0.0.1:${nbd.port}`])) as { exports: { 'export-name': string; 'export-size': number }[] };
    expect(list.exports.map((e) => [e['export-name'], e['export-size']])).toEqual([['default', 1024 ** 3], ['lin', 8 * MiB]]);
    const boot = JSON.parse(await nbdinfo(['--json', `nbd://127.0.0.1:${nbd.port}`])) as { exports: { 'export-size': number }[] };
    expect(boot.exports[0]?.['export-size']).toBe(1024 ** 3);
    await expect(nbdinfo([`nbd://127.0.0.1:${nbd.port}/nope`])).rejects.toThrow();
    await engine.close(); // closes the export too
    await nbd.close();
    await expect(nbdinfo([`nbd://127.0.0.1:${nbd.port}/default`])).rejects.toThrow();
  });

  it('refuses a config error before starting anything', async () => {
    await expect(Engine.open({ config: { volumes: [{ name: 'v', layout: 'raid1', elements: ['x'] }] }, log: quiet })).rejects.toMatchObject({ code: 'config', where: 'volumes[0].elements[0]' });
  });
});
