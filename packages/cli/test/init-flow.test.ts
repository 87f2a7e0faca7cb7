// `onestack init` end to end in-process: runInit() with answers on a stream (not a terminal),
// fixture /sys/block and mounts, and a fake discover. Each written config is read back by the
// engine's loader; every refusal leaves no file behind and no secret in the output.
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { loadConfig, type EngineConfig } from '@onestack/engine';
import { afterAll, beforeEach, describe, expect, it } from 'vitest';
import { runInit } from '../src/commands/init.js';
import type { DiscoverFn } from '../src/commands/init-enumerate.js';
import { formatError, toCliError } from '../src/errors.js';
import { captureIo } from './helpers.js';

const SECRET = 'init-chap-secret-5150';
const root = mkdtempSync(join(tmpdir(), 'onestack-init-flow-'));
let dir = '';
let discovered: string[] = [];
afterAll(() => { rmSync(root, { recursive: true, force: true }); });
beforeEach(() => {
  dir = mkdtempSync(join(root, 't-'));
  discovered = [];
});

const fakeDiscover: DiscoverFn = async (uri) => {
  discovered.push(uri);
  if (uri.includes('down')) throw Object.assign(new Error(`discover ${uri}: connect ECONNREFUSED`), { name: 'EngineError', code: 'io' });
  return { kind: 'nbd', where: uri, items: [{ name: 'a', uri: `${uri}/a` }, { name: 'b', uri: `${uri}/b` }] };
};

interface Outcome { code: number; out: string; err: string; config?: EngineConfig; text?: string }

/** Runs init in `dir` with `answers` as its stdin lines (undefined: --yes style, no input at all). */
async function init(argv: readonly string[], answers: readonly string[] = []): Promise<Outcome> {
  const sys = join(root, 'sys-block');
  mkdirSync(join(sys, 'vdb', 'device'), { recursive: true });
  writeFileSync(join(sys, 'vdb', 'size'), String(2 * 1024 * 2048));
  writeFileSync(join(sys, 'vdb', 'device', 'model'), 'FIXTURE DISK');
  const input = new PassThrough();
  input.end(answers.map((a) => `${a}\n`).join(''));
  const io = captureIo();
  let code: number;
  try {
    code = await runInit(argv, io, {
      input, terminal: false, now: new Date('2026-11-29T00:00:00Z'),
      env: { cwd: dir, defaultDataDir: './data', sysBlockDir: sys, devDir: join(root, 'dev'), discover: fakeDiscover,
        readMounts: () => ({ mounts: '', swaps: '' }) },
    });
  } catch (err) {
    const e = toCliError(err);
    io.stderr(formatError(e));
    code = e.exitCode;
  }
  const file = join(dir, 'onestack.yaml');
  const outcome: Outcome = { code, out: io.out(), err: io.err() };
  if (existsSync(file)) { outcome.text = readFileSync(file, 'utf8'); outcome.config = loadConfig({ path: file }); }
  expect(outcome.out + outcome.err).not.toContain(SECRET);
  return outcome;
}

describe('onestack init --yes', () => {
  it('with nothing found: a raid1 of two new 1 GiB images, boot volume "default"', async () => {
    const r = await init(['--yes']);
    expect(r.code, r.err).toBe(0);
    expect(r.out).toContain(`wrote ${join(dir, 'onestack.yaml')}: volume "default" (raid1 over 2 elements, boot)`);
    expect(r.config?.elements.map((e) => [e.name, e.uri, e.createSizeBytes])).toEqual([
      ['d0', 'file:./data/disk0.img', 1024 ** 3], ['d1', 'file:./data/disk1.img', 1024 ** 3]]);
    expect(r.config?.volumes[0]).toMatchObject({ name: 'default', layout: 'raid1', elements: ['d0', 'd1'], boot: true });
    expect(r.config?.dataDir).toBe(join(dir, 'data'));
  });

  it('takes the flags: elements in role order, --remote servers asked, --volume, --boot none, --size-gib', async () => {
    const r = await init(['--yes', '--layout', 'raid10', '--element', 'x.img', 'file:./y.img', '--remote', 'nbd://127.0.0.1:10810',
      '--volume', 'vm', '--boot', 'none', '--size-gib', '2']);
    expect(r.code, r.err).toBe(0);
    expect(discovered).toEqual(['nbd://127.0.0.1:10810']);
    expect(r.config?.elements.map((e) => [e.name, e.uri, e.createSizeBytes])).toEqual([
      ['d0', 'file:./x.img', 2 * 1024 ** 3], ['d1', 'file:./y.img', 2 * 1024 ** 3],
      ['n0', 'nbd://127.0.0.1:10810/a', undefined], ['n1', 'nbd://127.0.0.1:10810/b', undefined]]);
    expect(r.config?.volumes[0]).toMatchObject({ name: 'vm', layout: 'raid10', elements: ['d0', 'd1', 'n0', 'n1'], boot: false });
  });

  it('uses the image files already in the data dir and leaves block devices alone', async () => {
    mkdirSync(join(dir, 'data'));
    for (const f of ['a.img', 'b.raw']) writeFileSync(join(dir, 'data', f), Buffer.alloc(8 * 1024 * 1024));
    const r = await init(['--yes']);
    expect(r.code, r.err).toBe(0);
    expect(r.config?.elements.map((e) => [e.uri, e.createSizeBytes])).toEqual([['file:./data/a.img', undefined], ['file:./data/b.raw', undefined]]);
  });

  it('refuses, writing nothing: a bad layout, too few elements, a mismatched --boot, secrets on the command line', async () => {
    const cases: [string[], RegExp][] = [
      [['--yes', '--layout', 'raid7'], /--layout does not accept "raid7" \(--layout\)\nonestack: hint: did you mean raid0\?/],
      [['--yes', '--layout', 'raid5', '--element', 'a.img'], /raid5 needs at least 3 elements, got 1 \(--element\)/],
      [['--yes', '--volume', 'vm', '--boot', 'other'], /--boot other names no volume: init writes one volume, "vm"/],
      [['--yes', `--secret=${SECRET}`], /option --secret is not accepted: secrets are never taken on the command line/],
      [['--yes', '--remote', `iscsi://alice%${SECRET}@127.0.0.1/iqn.2026-11.x:y/1`], /carries a secret/],
      [['--yes', '--remote', 'iscsi://alice@127.0.0.1/iqn.2026-11.x:y/1'], /CHAP user alice needs a secret: pass --secret-file FILE/],
      [['--yes', '--element', 'nbd://127.0.0.1:1'], /names a server, not one disk/],
      [['--yes', '--size-gib', '0'], /--size-gib wants a whole number/],
      [['--yes', 'extra'], /unexpected argument "extra"/],
    ];
    for (const [argv, want] of cases) {
      const r = await init(argv);
      expect(r.code, argv.join(' ')).toBe(2);
      expect(r.err, argv.join(' ')).toMatch(want);
      expect(r.text, argv.join(' ')).toBeUndefined();
    }
  });

  it('shows a config the loader rejects with its field path, and writes nothing', async () => {
    const r = await init(['--yes', '--volume', 'bad name!']);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/^onestack: error: the configuration is not valid: volumes\[0\]\.name: invalid name "bad name!"; nothing written \(.*onestack\.yaml volumes\[0\]\.name\)/);
    expect(r.text).toBeUndefined();
    expect(existsSync(join(dir, 'data'))).toBe(false);
  });

  it('a remote that cannot be asked is a runtime failure (exit 1)', async () => {
    const r = await init(['--yes', '--remote', 'nbd://down:1']);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/ECONNREFUSED/);
    expect(r.text).toBeUndefined();
  });

  it('does not overwrite an existing config without --force', async () => {
    writeFileSync(join(dir, 'onestack.yaml'), 'volumes: []\n');
    const refused = await init(['--yes']);
    expect(refused.code).toBe(2);
    expect(refused.err).toMatch(/onestack\.yaml exists; not overwriting it \(init\)\nonestack: hint: pass --force/);
    expect(refused.text).toBe('volumes: []\n');
    const forced = await init(['--yes', '--force']);
    expect(forced.code, forced.err).toBe(0);
    expect(forced.config?.volumes).toHaveLength(1);
  });

  it('references an existing --secret-file for iSCSI CHAP, and never copies it', async () => {
    const secretFile = join(dir, 'chap.secret');
    writeFileSync(secretFile, `${SECRET}\n`, { mode: 0o600 });
    const r = await init(['--yes', '--layout', 'linear', '--remote', 'iscsi://127.0.0.1:3260/iqn.2026-11.x:y/1', '--chap-user', 'alice', '--secret-file', secretFile]);
    expect(r.code, r.err).toBe(0);
    expect(r.config?.elements).toMatchObject([{ name: 'i0', uri: 'iscsi://alice@127.0.0.1:3260/iqn.2026-11.x:y/1', secretFile }]);
    expect(r.text).not.toContain(SECRET);
  });
});

describe('onestack init answered line by line (stdin not a terminal)', () => {
  it('asks every question with its default, re-asks a bad layout, stores a typed CHAP secret 0600', async () => {
    const r = await init([], [
      '',                                              // data dir [./data]
      'iscsi://alice@127.0.0.1:3260/iqn.2026-11.x:y/1', // a remote disk
      SECRET,                                          // its CHAP secret
      '',                                              // no more remotes
      'raid7',                                         // unknown layout: asked again
      'raid1',
      '',                                              // create 1 new image [Y/n]
      '3',                                             // of 3 GiB
      '',                                              // elements [1,2]
      'vm',                                            // volume name
      'n',                                             // not the boot volume
      'y',                                             // write it
    ]);
    expect(r.code, r.out + r.err).toBe(0);
    expect(r.out).toContain('Data directory (images, state, API token) [./data]: \n');
    expect(r.out).toContain('CHAP secret for alice (input hidden): (hidden)\n');
    expect(r.out).toMatch(/Layout \[linear\]: raid7\n {2}! unknown layout "raid7" \(did you mean raid0\?\); one of .* - please answer again\nLayout \[linear\]: raid1\n/);
    expect(r.out).toMatch(/raid1 needs at least 2 elements and 1 is ready\. Create 1 new image file in .*\? \[Y\/n\]: \n/);
    expect(r.out).toMatch(/Elements for the raid1 volume, in role order .* \[2,3\]: \n/); // 1 is the block device: never by default
    expect(r.config?.elements.map((e) => [e.name, e.uri])).toEqual([['i0', 'iscsi://alice@127.0.0.1:3260/iqn.2026-11.x:y/1'], ['d0', 'file:./data/disk0.img']]);
    expect(r.config?.volumes[0]).toMatchObject({ name: 'vm', layout: 'raid1', boot: false });
    const secretFile = join(dir, 'data', 'chap-alice.secret');
    expect(r.config?.elements[0]?.secretFile).toBe(secretFile);
    expect(readFileSync(secretFile, 'utf8')).toBe(`${SECRET}\n`);
    expect(statSync(secretFile).mode & 0o777).toBe(0o600);
    expect(r.text).not.toContain(SECRET);
  });

  it('offers the fixture block device by number, and asks before overwriting it', async () => {
    const r = await init(['--layout', 'linear'], ['', '', 'y', '', '1', 'y', '', '', 'y']);
    expect(r.code, r.out + r.err).toBe(0);
    expect(r.out).toMatch(/1 +.*\/dev\/vdb +2\.00 GiB +block device, FIXTURE DISK/);
    expect(r.out).toContain(`Everything on ${join(root, 'dev', 'vdb')} will be overwritten. Go on? [y/N]: y\n`);
    expect(r.config?.elements.map((e) => e.uri)).toEqual([`file:${join(root, 'dev', 'vdb')}`]);
  });

  it('input that ends early, too many bad answers, or "no" to writing: nothing is written', async () => {
    const ended = await init([], ['', '', 'raid7']);
    expect(ended.code).toBe(2);
    expect(ended.err).toMatch(/^onestack: error: input ended before "Layout" was answered; nothing written \(init\)/);
    const stubborn = await init([], ['', '', 'x', 'x', 'x', 'x', 'x']);
    expect(stubborn.code).toBe(2);
    expect(stubborn.err).toMatch(/no usable answer to "Layout" after 5 tries; nothing written/);
    const declined = await init(['--layout', 'raid1'], ['', '', '', '', '', '', '', 'n']);
    expect(declined.code, declined.out + declined.err).toBe(1);
    expect(declined.out).toMatch(/Write .*onestack\.yaml\? \[Y\/n\]: n\nnothing written\n$/);
    for (const r of [ended, stubborn, declined]) expect(r.text).toBeUndefined();
  });
});
