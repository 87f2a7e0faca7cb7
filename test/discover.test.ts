// `onestack discover URI` against real peers: nbdkit's file plugin with dir= (NBD_OPT_LIST lists
// its files; also over TLS), the onestack daemon itself (lists its volumes), tgtd (SendTargets lists the target
// IQN), tgtd demanding CHAP in discovery (right and wrong secret). Listings are cross-checked with
// independent clients (nbdinfo --list, iscsi-ls). Some calls go through the daemon's API, some
// run in-process (--local). No secret may appear in any output.
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeTestPki, type TestPki } from './lib/certs.js';
import { CLI_MAIN, Daemon } from './lib/daemon.js';
import { MiB, removeDir, sparseFile, tempDir } from './lib/files.js';
import { explain, freePort, missingTools, run, runOk, type RunResult } from './lib/proc.js';
import { startNbdkit, startTgtd, type NbdkitPeer, type TgtdPeer } from './lib/remotes.js';

const CHAP = { user: 'alice', secret: 'discover-chap-secret-42' };
const WRONG = 'not-the-right-secret-99';
const missing = missingTools(['nbdkit', 'nbdinfo', 'tgtd', 'tgtadm', 'iscsi-ls', 'openssl']);

interface Listing { kind: string; where: string; items: { name: string; uri: string; description?: string }[] }

describe.skipIf(missing !== null)(`onestack discover${missing !== null ? ` (skipped: ${missing})` : ''}`, () => {
  let dir = '';
  let nbdkit: NbdkitPeer | null = null;
  let nbdkitTls: NbdkitPeer | null = null;
  let pki: TestPki | null = null;
  let tgtd: TgtdPeer | null = null;
  let tgtdChap: TgtdPeer | null = null;
  let daemon: Daemon | null = null;
  let secretFile = '';
  let wrongFile = '';

  /** The built CLI; `api` adds the daemon's --api and --data-dir (its token). */
  function onestack(args: readonly string[], api = false): Promise<RunResult> {
    const extra = api ? ['--api', `127.0.0.1:${daemon!.apiPort}`, '--data-dir', daemon!.dataDir] : [];
    return run(process.execPath, [CLI_MAIN, 'discover', ...args, ...extra], { timeoutMs: 30_000, env: { ...process.env, ONESTACK_TOKEN: '' } });
  }

  async function listing(args: readonly string[], api: boolean): Promise<Listing> {
    const r = await onestack([...args, '--json'], api);
    expect(r.code, explain(r)).toBe(0);
    return JSON.parse(r.stdout) as Listing;
  }

  function noSecrets(r: RunResult): void {
    for (const s of [CHAP.secret, WRONG]) expect(r.stdout + r.stderr).not.toContain(s);
  }

  beforeAll(async () => {
    dir = tempDir('discover');
    const exportsDir = path.join(dir, 'exports');
    await runOk('mkdir', [exportsDir]);
    for (const name of ['a.img', 'b.img']) await sparseFile(path.join(exportsDir, name), 16 * MiB);
    await sparseFile(path.join(dir, 'lun.img'), 16 * MiB);
    secretFile = path.join(dir, 'chap.secret');
    wrongFile = path.join(dir, 'wrong.secret');
    writeFileSync(secretFile, `${CHAP.secret}\n`, { mode: 0o600 });
    writeFileSync(wrongFile, `${WRONG}\n`, { mode: 0o600 });
    // nbdkit's file plugin with dir= serves every file of the directory under its own name.
    nbdkit = await startNbdkit(['file', `dir=${exportsDir}`]);
    pki = await makeTestPki(path.join(dir, 'pki'));
    nbdkitTls = await startNbdkit(['--tls=require', `--tls-certificates=${pki.dir}`, 'file', `dir=${exportsDir}`]);
    tgtd = await startTgtd({ backingFiles: [path.join(dir, 'lun.img')], iqn: 'iqn.2026-11.dev.onestack.test:open' });
    tgtdChap = await startTgtd({ backingFiles: [path.join(dir, 'lun.img')], iqn: 'iqn.2026-11.dev.onestack.test:chap', chap: CHAP, discoveryChap: true });
    daemon = await Daemon.start({ dataDir: path.join(dir, 'data') });
  }, 120_000);

  afterAll(async () => {
    await daemon?.stop();
    await nbdkit?.stop();
    await nbdkitTls?.stop();
    await tgtd?.stop();
    await tgtdChap?.stop();
    if (dir !== '') removeDir(dir);
  });

  it('lists the files nbdkit file dir= exports (--local), as nbdinfo --list does', async () => {
    const base = `nbd://127.0.0.1:${nbdkit!.port}`;
    const got = await listing([base, '--local'], false);
    expect(got.kind).toBe('nbd');
    expect(got.items.map((i) => [i.name, i.uri]).sort()).toEqual([['a.img', `${base}/a.img`], ['b.img', `${base}/b.img`]]);
    const peer = await runOk('nbdinfo', ['--list', '--json', `${base}/`], { timeoutMs: 20_000 });
    const names = (JSON.parse(peer.stdout) as { exports: { 'export-name': string }[] }).exports.map((e) => e['export-name']).sort();
    expect(got.items.map((i) => i.name).sort()).toEqual(names);
  });

  it('through the daemon: a table whose URIs work with onestack element add', async () => {
    const base = `nbd://127.0.0.1:${nbdkit!.port}`;
    const r = await onestack([base], true);
    expect(r.code, explain(r)).toBe(0);
    expect(r.stdout).toContain(`2 NBD exports at ${base}:`);
    expect(r.stdout).toMatch(new RegExp(`^a\\.img +${base}/a\\.img +-$`, 'm'));
    const add = await run(process.execPath, [CLI_MAIN, 'element', 'add', `${base}/a.img`, '--name', 'found-a',
      '--api', `127.0.0.1:${daemon!.apiPort}`, '--data-dir', daemon!.dataDir], { timeoutMs: 30_000 });
    expect(add.code, explain(add)).toBe(0);
    expect(add.stdout).toContain('added element found-a: nbd');
  });

  it('nbds://: lists over TLS checked against --tls-ca; another CA or plain nbd:// is exit 1', async () => {
    const port = nbdkitTls!.port;
    for (const api of [false, true]) {
      const got = await listing([`nbds://127.0.0.1:${port}`, '--tls-ca', pki!.caCert, ...(api ? [] : ['--local'])], api);
      expect(got.items.map((i) => i.uri).sort()).toEqual([`nbds://127.0.0.1:${port}/a.img`, `nbds://127.0.0.1:${port}/b.img`]);
    }
    const otherCa = await onestack([`nbds://127.0.0.1:${port}`, '--tls-ca', pki!.otherCaCert, '--local']);
    expect(otherCa.code, explain(otherCa)).toBe(1);
    expect(otherCa.stderr).toMatch(/^onestack: error: discover nbds:\/\/127\.0\.0\.1:\d+: .*(certificate|TLS)/i);
    const plain = await onestack([`nbd://127.0.0.1:${port}`, '--local']);
    expect(plain.code, explain(plain)).toBe(1);
    expect(plain.stderr).toMatch(/^onestack: error: discover nbd:\/\/127\.0\.0\.1:\d+: .*TLS/i);
    for (const r of [otherCa, plain]) expect(r.stdout + r.stderr).not.toContain('PRIVATE KEY');
  });

  it("lists the daemon's own volumes, in-process and through its API", async () => {
    const base = `nbd://127.0.0.1:${daemon!.nbdPort}`;
    for (const api of [false, true]) {
      const got = await listing(api ? [base] : [base, '--local'], api);
      expect(got.items.map((i) => i.uri)).toEqual([`${base}/default`]);
    }
    const peer = await runOk('nbdinfo', ['--list', '--json', `${base}/`], { timeoutMs: 20_000 });
    expect((JSON.parse(peer.stdout) as { exports: { 'export-name': string }[] }).exports.map((e) => e['export-name'])).toEqual(['default']);
  });

  it("lists tgtd's target (SendTargets), as iscsi-ls does", async () => {
    const base = `iscsi://127.0.0.1:${tgtd!.port}`;
    const got = await listing([base, '--local'], false);
    expect(got).toMatchObject({ kind: 'iscsi', items: [{ name: tgtd!.iqn, uri: `${base}/${tgtd!.iqn}/1` }] });
    expect(got.items[0]?.description).toContain(`127.0.0.1:${tgtd!.port}`);
    const peer = await runOk('iscsi-ls', [base], { timeoutMs: 20_000 });
    expect(peer.stdout).toContain(`Target:${tgtd!.iqn} `);
    const table = await onestack([base], true);
    expect(table.code, explain(table)).toBe(0);
    expect(table.stdout).toContain(`${tgtd!.iqn}  ${base}/${tgtd!.iqn}/1`);
  });

  it('CHAP in discovery: the secret file lists, a wrong secret is exit 1, and no secret is shown', async () => {
    const base = `iscsi://${CHAP.user}@127.0.0.1:${tgtdChap!.port}`;
    for (const api of [false, true]) {
      const ok = await onestack([base, '--secret-file', secretFile, '--json', ...(api ? [] : ['--local'])], api);
      expect(ok.code, explain(ok)).toBe(0);
      expect(JSON.parse(ok.stdout)).toMatchObject({ items: [{ name: tgtdChap!.iqn, uri: `${base}/${tgtdChap!.iqn}/1` }] });
      noSecrets(ok);
      const wrong = await onestack([base, '--secret-file', wrongFile, ...(api ? [] : ['--local'])], api);
      expect(wrong.code, explain(wrong)).toBe(1);
      expect(wrong.stderr).toMatch(/^onestack: error: .*(CHAP|auth)/im);
      expect(wrong.stderr).toContain(`127.0.0.1:${tgtdChap!.port}`);
      noSecrets(wrong);
    }
    const noFile = await onestack([base, '--local']);
    expect(noFile.code, explain(noFile)).toBe(2);
    expect(noFile.stderr).toContain('needs a secret');
    const inline = await onestack([`iscsi://${CHAP.user}%${CHAP.secret}@127.0.0.1:${tgtdChap!.port}`, '--local']);
    expect(inline.code).toBe(2);
    expect(inline.stderr).toContain(`iscsi://${CHAP.user}%***@127.0.0.1`);
    noSecrets(inline);
    expect(daemon!.stdout + daemon!.stderr).not.toContain(CHAP.secret);
    expect(daemon!.stdout + daemon!.stderr).not.toContain(WRONG);
  });

  it('an unreachable port is exit 1 with a clear message', async () => {
    const port = await freePort();
    for (const [uri, api] of [[`nbd://127.0.0.1:${port}`, false], [`nbd://127.0.0.1:${port}`, true], [`iscsi://127.0.0.1:${port}`, false]] as const) {
      const r = await onestack(api ? [uri] : [uri, '--local'], api);
      expect(r.code, explain(r)).toBe(1);
      expect(r.stderr).toMatch(new RegExp(`^onestack: error: discover ${uri.replace(/[/.]/g, '\\$&')}: .*(refused|ECONNREFUSED)`, 'i'));
      expect(r.stderr.split('\n').filter((l) => l !== '').length).toBeLessThanOrEqual(2);
    }
  });

  it('a bad URI is exit 2, locally and through the daemon', async () => {
    for (const [uri, api] of [['ftp://127.0.0.1', false], ['nbd://', false], ['nbd+unix:///', true], ['iscsi://', true]] as const) {
      const r = await onestack(api ? [uri] : [uri, '--local'], api);
      expect(r.code, `${uri}\n${explain(r)}`).toBe(2);
      expect(r.stderr).toMatch(/^onestack: error: .*(not an NBD or iSCSI URI|cannot discover)/);
    }
  });
});
