// nbd.listen as a Unix socket (unix:PATH) and the preferred NBD block size per layout.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../src/config/load.js';
import { parseNbdListen } from '../src/config/uri.js';
import { preferredBytes } from '../src/nbd-adapter.js';

let dir: string;
beforeAll(() => { dir = fs.mkdtempSync(path.join(os.tmpdir(), 'onestack-nbd-listen-')); });
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

describe('parseNbdListen', () => {
  it('HOST:PORT stays a TCP address; unix:PATH resolves against the base dir', () => {
    expect(parseNbdListen('127.0.0.1:0', 'nbd.listen', '/etc/onestack')).toEqual({ host: '127.0.0.1', port: 0 });
    expect(parseNbdListen('unix:nbd.sock', 'nbd.listen', '/etc/onestack')).toEqual({ socketPath: '/etc/onestack/nbd.sock' });
    expect(parseNbdListen('unix:/run/onestack/nbd.sock', 'nbd.listen', '/etc')).toEqual({ socketPath: '/run/onestack/nbd.sock' });
  });

  it('refuses an empty path, control characters and paths over 107 bytes, naming the field', () => {
    expect(() => parseNbdListen('unix:', 'nbd.listen', '/')).toThrow(/^nbd\.listen: unix: needs a socket path/);
    expect(() => parseNbdListen('unix:/tmp/a\nb', 'nbd.listen', '/')).toThrow(/control character/);
    expect(() => parseNbdListen(`unix:/${'x'.repeat(107)}`, '--nbd', '/')).toThrow(/^--nbd: socket path .* is longer than 107 bytes/);
    expect(() => parseNbdListen('nope', 'nbd.listen', '/')).toThrow(/^nbd\.listen: invalid listen address "nope"/);
  });

  it('config files: relative to the file; errors carry FILE:LINE; --nbd relative to the cwd', () => {
    const file = path.join(dir, 'a.yaml');
    fs.writeFileSync(file, 'nbd:\n  listen: unix:sock/nbd.sock\n');
    expect(loadConfig({ path: file }).nbd.listen).toEqual({ socketPath: path.join(dir, 'sock/nbd.sock') });
    fs.writeFileSync(file, 'nbd:\n  allow: []\n  listen: "unix:"\n');
    expect(() => loadConfig({ path: file })).toThrow(expect.objectContaining({ where: expect.stringMatching(/a\.yaml:3:\d+ nbd\.listen$/) as unknown }));
    expect(loadConfig({ object: {} }, { nbdListen: 'unix:rel.sock' }).nbd.listen).toEqual({ socketPath: path.resolve('rel.sock') });
  });
});

describe('preferredBytes', () => {
  const KiB = 1024;
  const MiB = 1024 * KiB;
  it.each([
    ['linear', 64 * KiB, 2, 512, 4 * KiB],
    ['raid1', 64 * KiB, 2, 512, 4 * KiB],
    ['raid1', 64 * KiB, 2, 8 * KiB, 8 * KiB], // elements with 8 KiB blocks: the minimum wins
    ['raid0', 64 * KiB, 2, 512, 128 * KiB],
    ['raid0', 64 * KiB, 3, 512, 64 * KiB],
    ['raid0', 16 * MiB, 4, 512, 16 * MiB], // a 64 MiB stripe is over the 32 MiB maximum
    ['raid10', 64 * KiB, 4, 512, 128 * KiB],
    ['raid10', 64 * KiB, 6, 512, 64 * KiB],
    ['raid5', 64 * KiB, 3, 512, 128 * KiB],
    ['raid5', 64 * KiB, 4, 512, 64 * KiB],
    ['raid5', 64 * KiB, 5, 512, 256 * KiB],
    ['raid6', 64 * KiB, 4, 512, 128 * KiB],
    ['raid6', 4 * KiB, 4, 8 * KiB, 8 * KiB], // stripe 8 KiB >= minimum
    ['raid6', 4 * KiB, 5, 8 * KiB, 8 * KiB], // neither stripe (12 KiB) nor chunk fits: the minimum
  ] as const)('%s, chunk %d, %d elements, minimum %d -> %d', (layout, chunk, n, min, want) => {
    const got = preferredBytes(layout, chunk, n, min);
    expect(got).toBe(want);
    expect(got & (got - 1)).toBe(0);
    expect(got).toBeGreaterThanOrEqual(min);
  });
});
