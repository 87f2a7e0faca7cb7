// rbd://POOL/IMAGE?conf=PATH&id=USER[&keyring=PATH]: parsed into an NBD element over a Unix socket
// in the data dir (config/rbd.ts), with clear errors for what qemu's rbd: filename cannot carry.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { defaultElementName, parseElementUri } from '../dist/config/uri.js';
import { rbdFiles, withRbdRunDir } from '../dist/config/rbd.js';
import { gatewayArgs } from '../dist/remote/rbd-gateway.js';
import { loadConfig } from '../dist/config/load.js';
import type { ElementLocation, RbdTarget } from '../dist/config/types.js';

const BASE = '/cfg';

function rbdOf(loc: ElementLocation): RbdTarget {
  if (loc.kind !== 'nbd' || loc.rbd === undefined) throw new Error(`not an rbd location: ${JSON.stringify(loc)}`);
  return loc.rbd;
}

function parseError(uri: string): string {
  try {
    parseElementUri(uri, 'elements[0].uri', BASE);
  } catch (err) {
    return (err as Error).message + ' | ' + String((err as { hint?: string }).hint ?? '');
  }
  throw new Error(`${uri} was accepted`);
}

describe('rbd:// element URIs', () => {
  it('parses pool, image and the defaults (conf /etc/ceph/ceph.conf, id admin), as an NBD element over a socket', () => {
    const { location, maskedUri } = parseElementUri('rbd://rbd/img', 'e', BASE);
    expect(maskedUri).toBe('rbd://rbd/img');
    expect(location.kind).toBe('nbd');
    if (location.kind !== 'nbd') return;
    expect(location.uri).toBe('rbd://rbd/img');
    expect(location.tls).toBe(false);
    expect(location.exportName).toBe('');
    expect(location.host).toBeUndefined();
    expect(location.rbd).toEqual({ pool: 'rbd', image: 'img', conf: '/etc/ceph/ceph.conf', id: 'admin', runDir: BASE });
    expect(location.socketPath).toBe(rbdFiles(location.rbd!).socketPath);
    expect(location.socketPath!.startsWith('/cfg/rbd/rbd-img-')).toBe(true);
    expect(defaultElementName(location)).toBe('img');
  });

  it('takes conf, id and keyring (relative paths against the config directory, percent-decoded)', () => {
    const t = rbdOf(parseElementUri('rbd://pool.a/vm-1_disk?conf=ceph/c%20x.conf&id=onestack&keyring=/etc/ceph/k.keyring', 'e', BASE).location);
    expect(t).toEqual({ pool: 'pool.a', image: 'vm-1_disk', conf: '/cfg/ceph/c x.conf', id: 'onestack', keyring: '/etc/ceph/k.keyring', runDir: BASE });
  });

  it('takes path=librbd|gateway (absent: librbd where it loads)', () => {
    expect(rbdOf(parseElementUri('rbd://rbd/img?path=gateway', 'e', BASE).location)?.path).toBe('gateway');
    expect(rbdOf(parseElementUri('rbd://rbd/img?path=librbd', 'e', BASE).location)?.path).toBe('librbd');
    expect(rbdOf(parseElementUri('rbd://rbd/img', 'e', BASE).location)?.path).toBeUndefined();
  });

  it('refuses what it cannot serve, with the reason', () => {
    expect(parseError('rbd:///img')).toMatch(/has no pool/);
    expect(parseError('rbd://rbd')).toMatch(/has no image/);
    expect(parseError('rbd://rbd/')).toMatch(/has no image/);
    expect(parseError('rbd://rbd/ns/img')).toMatch(/invalid rbd image name "ns\/img".*namespaces/);
    expect(parseError('rbd://rbd/img@snap')).toMatch(/invalid rbd image name/);
    expect(parseError('rbd://rbd/img?user=x')).toMatch(/unsupported rbd URI parameter "user" \(supported: conf, id, keyring, path\)/);
    expect(parseError('rbd://rbd/img?path=krbd')).toMatch(/rbd path "krbd" is not one of librbd, gateway/);
    expect(parseError('rbd://rbd/img?key=AQBsecret')).toMatch(/no key or secret.*keyring=PATH/);
    expect(parseError('rbd://rbd/img?id=')).toMatch(/"id" is empty/);
    expect(parseError('rbd://rbd/img?id=a&id=b')).toMatch(/given twice/);
    expect(parseError('rbd://rbd/img?id=client.admin')).toMatch(/without "client\."/);
    expect(parseError('rbd://admin:pw@rbd/img')).toMatch(/no user, secret or port/);
    expect(parseError('rbd://rbd/img?conf=%zz')).toMatch(/bad percent-encoding/);
    expect(parseError('rbd://rb:d/img')).toMatch(/no user, secret or port/);
    // a secret-looking value never shows up in the error
    expect(parseError('rbd://admin:s3cret@rbd/img')).not.toContain('s3cret');
    expect(parseError('rbd://rbd/img?key=s3cret#frag')).not.toContain('s3cret');
  });

  it('qemu-nbd gets the legacy rbd: filename with escaped separators, the keyring path and a bounded mount timeout', () => {
    const t: RbdTarget = { pool: 'rbd', image: 'img', conf: '/etc/ceph:x/ceph.conf', id: 'admin', keyring: '/k@1', runDir: '/d' };
    const args = gatewayArgs(t, '/d/rbd/s.sock');
    expect(args).toEqual(['--socket=/d/rbd/s.sock', '--format=raw', '--cache=none', '--shared=64', '--persistent',
      'rbd:rbd/img:id=admin:conf=/etc/ceph\\:x/ceph.conf:keyring=/k\\@1:client_mount_timeout=15']);
  });

  it('gateway files live in the data dir; a deep data dir moves only the socket to a short path', () => {
    const t: RbdTarget = { pool: 'rbd', image: 'img', conf: '/etc/ceph/ceph.conf', id: 'admin', runDir: '/data' };
    const f = rbdFiles(t);
    expect(path.dirname(f.socketPath)).toBe('/data/rbd');
    expect(f.logPath).toBe(f.socketPath.replace(/\.sock$/, '.log'));
    const deep = rbdFiles({ ...t, runDir: `/${'d'.repeat(120)}` });
    expect(Buffer.byteLength(deep.socketPath)).toBeLessThanOrEqual(107);
    expect(deep.logPath.startsWith(`/${'d'.repeat(120)}/rbd/`)).toBe(true);
  });

  it('config elements are placed in the data dir, and one image under two names is refused', () => {
    const config = loadConfig({ object: { dataDir: '/srv/os', elements: [{ name: 'r0', uri: 'rbd://rbd/img?conf=c.conf' }], volumes: [] }, baseDir: '/etc/onestack' });
    const t = rbdOf(config.elements[0]!.location);
    expect(t.runDir).toBe('/srv/os');
    expect(t.conf).toBe('/etc/onestack/c.conf');
    const loc = config.elements[0]!.location;
    expect(loc.kind === 'nbd' && loc.socketPath?.startsWith('/srv/os/rbd/')).toBe(true);
    const moved = loadConfig({ object: { dataDir: '/srv/os', elements: [{ name: 'r0', uri: 'rbd://rbd/img' }], volumes: [] } }, { dataDir: '/srv/other' });
    expect(rbdOf(moved.elements[0]!.location).runDir).toBe('/srv/other');
    expect(() => loadConfig({ object: { dataDir: '/srv/os', elements: [{ name: 'r0', uri: 'rbd://rbd/img' }, { name: 'r1', uri: 'rbd://rbd/img?id=other' }], volumes: [] } }))
      .toThrow(/elements\[1\]\.uri: rbd image rbd\/img is already element "r0"/);
    // in a config file, both kinds of error point at FILE:LINE:COL of the element's uri
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rbd-uri-'));
    try {
      const file = path.join(dir, 'onestack.yaml');
      fs.writeFileSync(file, 'elements:\n  - { name: r0, uri: "rbd://rbd/img" }\n  - { name: r1, uri: "rbd://rbd/img?id=client.x" }\nvolumes: []\n');
      expect(() => loadConfig({ path: file })).toThrow(expect.objectContaining({ where: `${file}:3:22 elements[1].uri` }));
      fs.writeFileSync(file, 'elements:\n  - { name: r0, uri: "rbd://rbd/img" }\n  - { name: r1, uri: "rbd://rbd/img" }\nvolumes: []\n');
      expect(() => loadConfig({ path: file })).toThrow(expect.objectContaining({ where: `${file}:3:22 elements[1].uri` }));
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
    // non-rbd configs pass through untouched
    const plain = { dataDir: '/d', elements: [] };
    expect(withRbdRunDir(plain)).toBe(plain);
  });
});
