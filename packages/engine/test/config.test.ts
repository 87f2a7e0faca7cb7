import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EngineError } from '../src/api-types.js';
import { embeddedDefaultConfig, loadConfig } from '../src/config/load.js';
import { normalizeElement, normalizeVolume } from '../src/config/validate.js';
import { parseElementUri, parseListen } from '../src/config/uri.js';

let dir: string;
beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'onestack-config-'));
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

const GOOD = `dataDir: ./data
nbd: { listen: 127.0.0.1:10809 }
api: { listen: 127.0.0.1:9090 }
pools: { top: 1, middle: 1, bottom: 2 }
elements:
  - { name: d0, uri: file:./data/disk0.img, cache: writeback }
  - { name: d1, uri: ./data/disk1.img, cache: none, createSizeBytes: 1GiB }
  - name: r0
    uri: nbd://127.0.0.1:10810/disk
    timeoutMs: 3000
volumes:
  - name: default
    layout: raid1
    elements: [d0, d1]
    boot: true
`;

function write(name: string, text: string): string {
  const file = path.join(dir, name);
  fs.writeFileSync(file, text);
  return file;
}

/** Loads TEXT from a file and returns the config error it raises. */
function errorOf(text: string, name = 'onestack.yaml'): EngineError {
  const file = write(name, text);
  try {
    loadConfig({ path: file });
  } catch (err) {
    expect(err).toBeInstanceOf(EngineError);
    expect((err as EngineError).code).toBe('config');
    return err as EngineError;
  }
  throw new Error('expected a config error');
}

describe('loadConfig from a file', () => {
  it('loads a good YAML file with defaults and resolved paths', () => {
    const config = loadConfig({ path: write('good.yaml', GOOD) });
    expect(config.dataDir).toBe(path.join(dir, 'data'));
    expect(config.sourcePath).toBe(path.join(dir, 'good.yaml'));
    expect(config.queue).toEqual({ depth: 1024, slots: 256, slotKiB: 256 });
    expect(config.pools).toEqual({ top: 1, middle: 1, bottom: 2, remote: 1 });
    expect(config.elements[0]).toMatchObject({ name: 'd0', cache: 'writeback', timeoutMs: 5000, location: { kind: 'local', path: path.join(dir, 'data/disk0.img') } });
    expect(config.elements[1]).toMatchObject({ cache: 'none', createSizeBytes: 1024 ** 3 });
    expect(config.elements[2]).toMatchObject({ timeoutMs: 3000, location: { kind: 'nbd', host: '127.0.0.1', port: 10810, exportName: 'disk', tls: false } });
    expect(config.volumes[0]).toEqual({ name: 'default', layout: 'raid1', elements: ['d0', 'd1'], chunkKiB: 64, order: 'fifo', boot: true });
  });

  it('loads the same config written as JSON', () => {
    const json = JSON.stringify({ elements: [{ name: 'a', uri: '/tmp/a.img' }, { name: 'b', uri: '/tmp/b.img' }], volumes: [{ name: 'v', layout: 'raid0', elements: ['a', 'b'], chunkKiB: 128 }] }, null, 2);
    const config = loadConfig({ path: write('onestack.json', json) });
    expect(config.volumes[0]?.chunkKiB).toBe(128);
    const err = errorOf(json.replace('"raid0"', '"raid9"'), 'bad.json');
    expect(err.where).toMatch(/^.*bad\.json:\d+:\d+ volumes\[0\]\.layout$/);
  });

  it('names field and FILE:LINE:COL for a bad layout (the example of the brief)', () => {
    const err = errorOf(GOOD.replace('layout: raid1', 'layout: raid7'));
    expect(err.message).toBe('volumes[0].layout: unknown layout "raid7" (expected linear, raid0, raid1, raid10, raid5, raid6)');
    expect(err.where).toBe(`${path.join(dir, 'onestack.yaml')}:13:13 volumes[0].layout`);
    expect(err.hint).toBeTruthy();
  });

  it('reports unknown keys at the key, with did-you-mean', () => {
    const err = errorOf(GOOD.replace('{ top: 1, middle: 1', '{ top: 1, midle: 1'));
    expect(err.message).toBe('pools.midle: unknown key "midle" (did you mean "middle"?)');
    expect(err.where).toMatch(/:4:18 pools\.midle$/);
    const top = errorOf(`${GOOD}volume: []\n`);
    expect(top.message).toContain('did you mean "volumes"?');
    expect(top.where).toMatch(/:16:1 volume$/);
  });

  it('reports type and range errors with their lines', () => {
    const cases: [string, RegExp, RegExp][] = [
      [GOOD.replace('bottom: 2', 'bottom: 65'), /pools\.bottom: 65 is out of range \(1\.\.64\)/, /:4:37 pools\.bottom$/],
      [GOOD.replace('bottom: 2', 'bottom: two'), /pools\.bottom: expected an integer, got "two"/, /:4:37 pools\.bottom$/],
      [GOOD.replace('top: 1,', 'top: 0,'), /pools\.top: 0 is out of range/, /pools\.top$/],
      [`${GOOD}queue: { depth: 1000 }\n`, /queue\.depth: 1000 is not a power of two/, /:16:17 queue\.depth$/],
      [`${GOOD}queue: { depth: 32 }\n`, /queue\.depth: 32 is out of range \(64\.\.65536\)/, /queue\.depth$/],
      [`${GOOD}queue: { slotKiB: 6 }\n`, /queue\.slotKiB: 6 is not a multiple of 4/, /queue\.slotKiB$/],
      [GOOD.replace('127.0.0.1:10809', '127.0.0.1'), /nbd\.listen: invalid listen address "127\.0\.0\.1": missing port/, /:2:16 nbd\.listen$/],
      [GOOD.replace('127.0.0.1:9090', 'localhost:99999'), /api\.listen: .*port 99999 is out of range/, /:3:16 api\.listen$/],
      [GOOD.replace('cache: none', 'cache: off'), /elements\[1\]\.cache: unknown cache mode "off" \(expected writeback, none\)/, /:7:47 elements\[1\]\.cache$/],
      [GOOD.replace('boot: true', 'boot: yes please'), /volumes\[0\]\.boot: expected true or false/, /:15:11 volumes\[0\]\.boot$/],
      [GOOD.replace('timeoutMs: 3000', 'timeoutMs: 0'), /elements\[2\]\.timeoutMs: 0 is out of range/, /:10:16 elements\[2\]\.timeoutMs$/],
      [GOOD.replace('layout: raid1', 'layout: raid1\n    order: random'), /volumes\[0\]\.order: unknown order "random" \(expected fifo, lifo, priority\)/, /:14:12 volumes\[0\]\.order$/],
      [GOOD.replace('layout: raid1', 'layout: raid1\n    chunkKiB: 48'), /volumes\[0\]\.chunkKiB: 48 is not a power of two/, /:14:15/],
      [GOOD.replace('layout: raid1', 'layout: raid1\n    chunkKiB: 2'), /volumes\[0\]\.chunkKiB: 2 is out of range/, /:14:15/],
    ];
    for (const [text, message, where] of cases) {
      const err = errorOf(text);
      expect(err.message).toMatch(message);
      expect(err.where).toMatch(where);
    }
  });

  it('checks names, references and layout element counts', () => {
    const cases: [string, RegExp, RegExp][] = [
      [GOOD.replace('name: r0', 'name: d0'), /elements\[2\]\.name: duplicate element name "d0" \(also elements\[0\]\)/, /:8:11 elements\[2\]\.name$/],
      [GOOD.replace('[d0, d1]', '[d0, d2]'), /volumes\[0\]\.elements\[1\]: unknown element "d2" \(did you mean "d0"\?\)/, /:14:20 volumes\[0\]\.elements\[1\]$/],
      [GOOD.replace('[d0, d1]', '[d0, d0]'), /volumes\[0\]\.elements\[1\]: element "d0" is listed twice/, /:14:20/],
      [GOOD.replace('[d0, d1]', '[d0]'), /volumes\[0\]\.elements: raid1 needs at least 2 elements, got 1/, /:14:5 volumes\[0\]\.elements$/],
      [GOOD.replace('raid1', 'raid10').replace('[d0, d1]', '[d0, d1, r0]'), /raid10 needs at least 4 elements, got 3/, /volumes\[0\]\.elements$/],
      [GOOD.replace('raid1', 'raid5'), /raid5 needs at least 3 elements, got 2/, /volumes\[0\]\.elements$/],
      [GOOD.replace('raid1', 'raid6').replace('[d0, d1]', '[d0, d1, r0]'), /raid6 needs at least 4 elements, got 3/, /volumes\[0\]\.elements$/],
      [GOOD.replace('raid1', 'raid0').replace('[d0, d1]', '[d0]'), /raid0 needs at least 2 elements, got 1/, /volumes\[0\]\.elements$/],
      [`${GOOD}  - { name: other, layout: linear, elements: [d1] }\n`, /volumes\[1\]\.elements\[0\]: element "d1" is already used by volume "default"/, /:16:47 volumes\[1\]\.elements\[0\]$/],
      [`${GOOD}  - { name: default, layout: linear, elements: [r0] }\n`, /volumes\[1\]\.name: duplicate volume name "default"/, /:16:13/],
      [`${GOOD}  - { name: b2, layout: linear, elements: [r0], boot: true }\n`, /volumes\[1\]\.boot: only one volume may be the boot volume/, /:16:55/],
      [GOOD.replace('name: default', 'name: "bad name"'), /volumes\[0\]\.name: invalid name "bad name"/, /:12:11/],
      [GOOD.replace('- name: default\n    layout', '- layout'), /volumes\[0\]\.name: missing/, /:12:5 volumes\[0\]\.name$/],
      [GOOD.replace('uri: ./data/disk1.img', 'uri: ./data/disk0.img'), /elements\[1\]\.uri: same file as elements\[0\]/, /:7:22/],
      [GOOD.replace('uri: ./data/disk1.img', 'uri: ftp://x/y'), /elements\[1\]\.uri: unknown URI scheme "ftp:"/, /:7:22/],
      [GOOD.replace('timeoutMs: 3000', 'createSizeBytes: 1GiB'), /elements\[2\]\.createSizeBytes: createSizeBytes is for local elements only/, /:10:22/],
      [GOOD.replace('1GiB', '1000'), /elements\[1\]\.createSizeBytes: 1000 bytes is too small/, /:7:70/],
    ];
    for (const [text, message, where] of cases) {
      const err = errorOf(text);
      expect(err.message).toMatch(message);
      expect(err.where).toMatch(where);
    }
  });

  it('reports YAML syntax errors, missing files and duplicate keys with positions', () => {
    const syntax = errorOf('elements:\n  - { name: d0, uri: x\nvolumes: [\n');
    expect(syntax.message).toMatch(/^invalid YAML\/JSON: /);
    expect(syntax.where).toMatch(/onestack\.yaml:\d+:\d+$/);
    const dup = errorOf('dataDir: a\ndataDir: b\n');
    expect(dup.where).toMatch(/:2:1$/);
    expect(() => loadConfig({ path: path.join(dir, 'missing.yaml') })).toThrow(/cannot read config file: file not found/);
    const notMap = errorOf('- 1\n- 2\n');
    expect(notMap.message).toMatch(/expected a mapping, got a list/);
  });

  it('applies overrides and resolves dataDir against the config directory', () => {
    const config = loadConfig({ path: write('o.yaml', 'dataDir: rel/data\n') }, { nbdListen: '[::1]:0', apiListen: '0.0.0.0:8080' });
    expect(config.dataDir).toBe(path.join(dir, 'rel/data'));
    expect(config.nbd.listen).toEqual({ host: '::1', port: 0 });
    expect(config.api.listen).toEqual({ host: '0.0.0.0', port: 8080 });
    expect(loadConfig({ path: write('o2.yaml', 'dataDir: x\n') }, { dataDir: '/srv/os' }).dataDir).toBe('/srv/os');
    expect(() => loadConfig({ object: {} }, { nbdListen: 'nope' })).toThrow(/--nbd: invalid listen address/);
  });

  it('validates TLS and allow lists', () => {
    const ok = loadConfig({ object: { nbd: { tls: { cert: 'c.pem', key: 'k.pem', require: true }, allow: ['127.0.0.1/32', '::1'] } }, baseDir: dir });
    expect(ok.nbd.tls).toEqual({ cert: path.join(dir, 'c.pem'), key: path.join(dir, 'k.pem'), require: true, verifyClient: false });
    expect(() => loadConfig({ object: { nbd: { tls: { cert: 'c.pem' } } } })).toThrow(/nbd\.tls\.key: TLS needs both cert and key/);
    expect(() => loadConfig({ object: { nbd: { tls: { require: true } } } })).toThrow(/nbd\.tls\.require: require: true needs cert and key/);
    expect(() => loadConfig({ object: { nbd: { tls: { cert: 'c.pem', key: 'k.pem', verifyClient: true } } } })).toThrow(/nbd\.tls\.verifyClient: .*needs cert, key and ca/);
    expect(() => loadConfig({ object: { nbd: { tls: { cert: 'c.pem', key: 'k.pem', verifyClient: 'yes' } } } })).toThrow(/nbd\.tls\.verifyClient: expected true or false/);
    const verify = loadConfig({ object: { nbd: { tls: { cert: 'c.pem', key: 'k.pem', ca: 'ca.pem', verifyClient: true } } }, baseDir: dir });
    expect(verify.nbd.tls).toMatchObject({ ca: path.join(dir, 'ca.pem'), require: false, verifyClient: true });
    expect(() => loadConfig({ object: { nbd: { allow: ['10.0.0.0/33'] } } })).toThrow(/nbd\.allow\[0\]: invalid address or CIDR/);
  });
});

describe('inline objects and the embedded default', () => {
  it('resolves relative paths against baseDir (default cwd) and names fields without a file', () => {
    const config = loadConfig({ object: { elements: [{ name: 'a', uri: 'a.img' }] }, baseDir: '/base' });
    expect(config.elements[0]?.location).toEqual({ kind: 'local', path: '/base/a.img' });
    expect(config.sourcePath).toBeUndefined();
    try {
      loadConfig({ object: { volumes: [{ name: 'v', layout: 'raid1', elements: ['x', 'y'] }] } });
      expect.unreachable();
    } catch (err) {
      expect((err as EngineError).where).toBe('volumes[0].elements[0]');
    }
  });

  it('builds the embedded default of SPEC.md', () => {
    const config = embeddedDefaultConfig('/var/lib/onestack');
    expect(config.nbd.listen).toEqual({ host: '127.0.0.1', port: 10809 });
    expect(config.api.listen).toEqual({ host: '127.0.0.1', port: 9090 });
    expect(config.pools).toEqual({ top: 1, middle: 1, bottom: 2, remote: 1 });
    expect(config.volumes).toEqual([{ name: 'default', layout: 'raid1', elements: ['d0', 'd1'], chunkKiB: 64, order: 'fifo', boot: true }]);
    expect(config.elements.map((e) => [e.name, e.uri, e.createSizeBytes])).toEqual([
      ['d0', 'file:/var/lib/onestack/disk0.img', 1024 ** 3],
      ['d1', 'file:/var/lib/onestack/disk1.img', 1024 ** 3],
    ]);
  });

  it('takes the data dir from the override, then ONESTACK_DATA_DIR, then ./data', () => {
    const saved = process.env.ONESTACK_DATA_DIR;
    try {
      delete process.env.ONESTACK_DATA_DIR;
      expect(loadConfig({ embeddedDefault: true }).dataDir).toBe(path.resolve('data'));
      process.env.ONESTACK_DATA_DIR = '/env/dir';
      expect(loadConfig({ embeddedDefault: true }).dataDir).toBe('/env/dir');
      const c = loadConfig({ embeddedDefault: true }, { dataDir: '/flag/dir', nbdListen: '127.0.0.1:0' });
      expect(c.dataDir).toBe('/flag/dir');
      expect(c.elements[0]?.location).toEqual({ kind: 'local', path: '/flag/dir/disk0.img' });
      expect(c.nbd.listen.port).toBe(0);
    } finally {
      if (saved === undefined) delete process.env.ONESTACK_DATA_DIR;
      else process.env.ONESTACK_DATA_DIR = saved;
    }
  });
});

describe('element URIs', () => {
  it('parses local forms', () => {
    expect(parseElementUri('file:./d.img', 'f', '/cfg').location).toEqual({ kind: 'local', path: '/cfg/d.img' });
    expect(parseElementUri('file:///abs/d%20x.img', 'f', '/cfg').location).toEqual({ kind: 'local', path: '/abs/d x.img' });
    expect(parseElementUri('disk.img', 'f', '/cfg').location).toEqual({ kind: 'local', path: '/cfg/disk.img' });
    expect(parseElementUri('/dev/nvme0n1', 'f', '/cfg').location).toEqual({ kind: 'local', path: '/dev/nvme0n1' });
  });

  it('parses NBD forms', () => {
    expect(parseElementUri('nbd://10.0.0.2/exp', 'f', '/').location).toMatchObject({ kind: 'nbd', host: '10.0.0.2', port: 10809, exportName: 'exp', tls: false });
    expect(parseElementUri('nbds://[::1]:10900/a%2Fb', 'f', '/').location).toMatchObject({ host: '::1', port: 10900, exportName: 'a/b', tls: true });
    expect(parseElementUri('nbd+unix:///disk?socket=run/nbd.sock', 'f', '/cfg').location).toMatchObject({ kind: 'nbd', socketPath: '/cfg/run/nbd.sock', exportName: 'disk' });
    expect(() => parseElementUri('nbd+unix:///disk', 'f', '/')).toThrow(/needs \?socket=PATH/);
    expect(() => parseElementUri('nbd:///disk', 'f', '/')).toThrow(/has no host/);
    expect(() => parseElementUri('nbd://h/x?tls=1', 'f', '/')).toThrow(/unsupported URI parameter "tls"/);
  });

  it('parses iSCSI and masks the secret everywhere', () => {
    const parsed = parseElementUri('iscsi://alice%s3cr%40t@127.0.0.1:3261/iqn.2026-11.test:disk/1', 'f', '/');
    expect(parsed.secret).toBe('s3cr@t');
    expect(parsed.user).toBe('alice');
    expect(parsed.maskedUri).toBe('iscsi://alice%***@127.0.0.1:3261/iqn.2026-11.test:disk/1');
    expect(parsed.location).toEqual({ kind: 'iscsi', uri: parsed.maskedUri, host: '127.0.0.1', port: 3261, targetIqn: 'iqn.2026-11.test:disk', lun: 1, user: 'alice' });
    const element = normalizeElement({ name: 'i0', uri: 'iscsi://alice%hunter2@h/iqn.2026-11.test:disk/0' }, 'elements[0]', '/');
    expect(element.secret).toBe('hunter2');
    expect(JSON.stringify(element)).not.toContain('hunter2');
    expect(JSON.stringify({ ...element })).not.toContain('hunter2');
    expect(element.location).toMatchObject({ port: 3260, lun: 0 });
    const colon = parseElementUri('iscsi://carol:pa55@h/iqn.2026-11.test:disk/2', 'f', '/');
    expect([colon.user, colon.secret, colon.maskedUri]).toEqual(['carol', 'pa55', 'iscsi://carol:***@h/iqn.2026-11.test:disk/2']);
    // A masked URI read back carries no secret (it then comes from secretFile).
    expect(parseElementUri(parsed.maskedUri, 'f', '/').secret).toBeUndefined();
    for (const bad of ['iscsi://bob%hunter2@h/notaniqn/1', 'iscsi://bob%hunter2@h/iqn.x:y/99999', 'iscsi://bob%hunter2@/iqn.x:y/1', 'iscsi://bob%hunter2@h/iqn.x:y']) {
      try {
        parseElementUri(bad, 'f', '/');
        expect.unreachable();
      } catch (err) {
        expect(String((err as Error).message) + String((err as EngineError).hint)).not.toContain('hunter2');
      }
    }
  });

  it('parses listen addresses', () => {
    expect(parseListen('127.0.0.1:10809', 'x')).toEqual({ host: '127.0.0.1', port: 10809 });
    expect(parseListen('[::]:0', 'x')).toEqual({ host: '::', port: 0 });
    expect(() => parseListen('10809', 'x')).toThrow(/missing port/);
    expect(() => parseListen('a b:1', 'x')).toThrow(/invalid listen address/);
  });
});

describe('normalizeVolume', () => {
  it('rejects an unknown element with a hint and applies defaults', () => {
    const names = new Set(['a', 'b']);
    expect(normalizeVolume({ name: 'v', layout: 'linear', elements: ['a'] }, 'v', names)).toEqual({ name: 'v', layout: 'linear', elements: ['a'], chunkKiB: 64, order: 'fifo', boot: false });
    expect(normalizeVolume({ name: 'v', layout: 'raid1', elements: ['a', 'b'], sizeBytes: '512MiB' }, 'v', names).sizeBytes).toBe(512 * 1024 ** 2);
    expect(() => normalizeVolume({ name: 'v', layout: 'linear', elements: ['c'] }, 'v', names)).toThrow(/v\.elements\[0\]: unknown element "c"/);
  });
});
