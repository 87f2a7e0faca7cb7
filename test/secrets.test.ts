// Acceptance (issue 8, item 5): secrets never leave their files. The daemon runs with a CHAP
// secret file written by `onestack init`, mutual CHAP against tgtd (an outgoing account), an
// NBD TLS key and its API token; the test adds an element whose secret goes through the API,
// provokes errors (wrong CHAP password, a bad element add carrying a secret, a secret on the
// command line, a mutual-CHAP target that cannot prove itself, a plaintext client refused by
// TLS), then greps everything it can collect — daemon stdout/stderr, CLI output, every API
// response (errors, /metrics, SSE), the GUI's HTML and JS, the state file and the rest of the
// data dir — for every secret. Secret files must be mode 0600 (their directory 0700).
import { spawn } from 'node:child_process';
import { readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeTestPki, type TestPki } from './lib/certs.js';
import { CLI_MAIN, Daemon, REPO_ROOT } from './lib/daemon.js';
import { MiB, removeDir, sparseFile, tempDir, writeConfig } from './lib/files.js';
import { PEER_ENV, freePort, missingTools, run, runOk } from './lib/proc.js';
import { startTgtd, type TgtdPeer } from './lib/remotes.js';

const ALICE = { user: 'alice', secret: 'alice-chap-secret-3141592' };
const BOB = { user: 'bob', secret: 'bob-api-chap-secret-2718281' };
const TARGET = { user: 'tgtout', secret: 'target-mutual-secret-1618033' };
const WRONG = 'wrong-chap-password-1414213';
const WRONG_TARGET = 'wrong-target-secret-1732050';
const LUN_BYTES = 64 * MiB;
const missing = missingTools(['tgtd', 'tgtadm', 'nbdinfo', 'openssl']);

/** Everything collected for the grep: where it came from, and its text. */
const collected: { where: string; text: string }[] = [];
const keep = (where: string, text: string): void => { collected.push({ where, text }); };

function runWithInput(args: readonly string[], input: string, timeoutMs: number): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [CLI_MAIN, ...args], { cwd: REPO_ROOT, env: PEER_ENV, stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.setEncoding('utf8').on('data', (s: string) => { out += s; });
    child.stderr.setEncoding('utf8').on('data', (s: string) => { out += s; });
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('close', (code) => { clearTimeout(timer); resolve({ code, out }); });
    child.stdin.end(input);
  });
}

describe.skipIf(missing !== null)(`secrets stay in their files${missing !== null ? ` (skipped: ${missing})` : ''}`, () => {
  let dir = '';
  let dataDir = '';
  let pki: TestPki;
  let tgtd: TgtdPeer | null = null;
  let daemon: Daemon | null = null;
  let token = '';
  let keyLines: string[] = [];
  const api = (p: string): string => `http://127.0.0.1:${daemon?.apiPort ?? 0}/api/v1${p}`;
  const auth = (): Record<string, string> => ({ authorization: `Bearer ${token}`, 'content-type': 'application/json' });

  async function call(method: string, p: string, body?: unknown, headers = auth()): Promise<{ status: number; text: string }> {
    const res = await fetch(api(p), { method, headers, ...(body === undefined ? {} : { body: JSON.stringify(body) }) });
    const text = await res.text();
    keep(`${method} /api/v1${p} → ${res.status}`, text);
    return { status: res.status, text };
  }

  function cli(args: readonly string[]): ReturnType<typeof run> {
    return run(process.execPath, [CLI_MAIN, ...args, '--api', `127.0.0.1:${daemon?.apiPort ?? 0}`, '--data-dir', dataDir],
      { timeoutMs: 30_000, cwd: REPO_ROOT, env: { ...PEER_ENV, ONESTACK_TOKEN: '' } }).then((r) => {
      keep(`onestack ${args.join(' ')} (exit ${String(r.code)})`, r.stdout + r.stderr);
      return r;
    });
  }

  beforeAll(async () => {
    dir = tempDir('secrets');
    dataDir = path.join(dir, 'data');
    pki = await makeTestPki(path.join(dir, 'pki'));
    // The PEM body lines of the server key: any of them in an output is a leak.
    keyLines = readFileSync(pki.serverKey, 'utf8').split('\n').filter((l) => l.length >= 16 && !l.startsWith('-----'));
    for (const lun of ['lun1', 'lun2', 'lun3']) await sparseFile(path.join(dir, `${lun}.img`), LUN_BYTES);
    const port = await freePort();
    const control = 2000 + (port % 20000);
    tgtd = await startTgtd({ backingFiles: ['lun1', 'lun2', 'lun3'].map((l) => path.join(dir, `${l}.img`)), chap: ALICE, discoveryChap: true, port, controlPort: control });
    // A second initiator account for the element added through the API, and the target's own
    // (outgoing) account for mutual CHAP.
    const tgtadm = (args: string[]): Promise<unknown> => runOk('tgtadm', ['-C', String(control), '--lld', 'iscsi', ...args]);
    await tgtadm(['--op', 'new', '--mode', 'account', '--user', BOB.user, '--password', BOB.secret]);
    await tgtadm(['--op', 'bind', '--mode', 'account', '--tid', '1', '--user', BOB.user]);
    await tgtadm(['--op', 'new', '--mode', 'account', '--user', TARGET.user, '--password', TARGET.secret]);
    await tgtadm(['--op', 'bind', '--mode', 'account', '--tid', '1', '--user', TARGET.user, '--outgoing']);

    // `onestack init` asks for alice's CHAP secret (stdin, no terminal) and stores it 0600.
    const init = await runWithInput(['init', '--config', path.join(dir, 'init.yaml'), '--data-dir', dataDir, '--remote', tgtd.uri(ALICE.user, 1),
      '--layout', 'linear', '--volume', 'v', '--boot', 'v'], `${ALICE.secret}\n\n\n\n\n`, 60_000);
    keep('onestack init', init.out);
    expect(init.code, init.out).toBe(0);

    writeFileSync(path.join(dir, 'target.secret'), `${TARGET.secret}\n`, { mode: 0o600 });
    const { configPath } = await writeConfig(dir, [
      { name: 'd0', sizeBytes: LUN_BYTES },
      { name: 'i0', uri: tgtd.uri(ALICE.user, 1), options: {
        secretFile: path.join(dataDir, 'chap-alice.secret'), targetUser: TARGET.user, targetSecretFile: path.join(dir, 'target.secret'), timeoutMs: 10_000,
      } },
    ], [{ name: 'v', layout: 'raid1', elements: ['d0', 'i0'], boot: true }],
    ['nbd: { tls: { cert: pki/server-cert.pem, key: pki/server-key.pem, require: true } }']);
    daemon = await Daemon.start({ dataDir, configPath });
    token = readFileSync(path.join(dataDir, 'api-token'), 'utf8').trim();
  }, 120_000);

  afterAll(async () => {
    try {
      await daemon?.stop();
      await tgtd?.stop();
    } finally {
      if (dir !== '') removeDir(dir);
    }
  });

  it('mutual CHAP: the iSCSI leg logged in proving both sides, and the mirror is optimal', async () => {
    const status = await daemon!.status();
    const v = status.volumes.find((x) => x.name === 'v');
    expect(v?.state, JSON.stringify(status)).toBe('optimal');
    expect(v?.elements.map((e) => `${e.name}:${e.kind}:${e.state}`)).toEqual(['d0:local:active', 'i0:iscsi:active']);
  });

  it('mutual CHAP: a target that cannot prove the target secret is refused (the daemon does not start), secrets unnamed', async () => {
    writeFileSync(path.join(dir, 'wrong-target.secret'), `${WRONG_TARGET}\n`, { mode: 0o600 });
    const cfg = path.join(dir, 'wrong-target.yaml');
    writeFileSync(cfg, [
      `dataDir: ${path.join(dir, 'data-wrong')}`,
      'elements:',
      `  - { name: w0, uri: "${tgtd!.uri(ALICE.user, 3)}", secretFile: ${path.join(dataDir, 'chap-alice.secret')}, targetUser: ${TARGET.user}, targetSecretFile: ${path.join(dir, 'wrong-target.secret')} }`,
      'volumes:',
      '  - { name: w, layout: linear, elements: [w0] }',
    ].join('\n') + '\n');
    const r = await run(process.execPath, [CLI_MAIN, 'serve', '--config', cfg, '--nbd', `127.0.0.1:${await freePort()}`, '--api', `127.0.0.1:${await freePort()}`],
      { timeoutMs: 60_000, cwd: REPO_ROOT });
    keep('serve with a wrong target secret', r.stdout + r.stderr);
    expect(r.code, r.stdout + r.stderr).not.toBe(0);
    expect(r.stdout + r.stderr).toMatch(/mutual CHAP/i);
    expect(r.stdout).not.toMatch(/onestack: ready/);
  });

  it('an element added through the API with a secret: stored in data/secrets (0600, dir 0700), never echoed', async () => {
    const added = await call('POST', '/elements', { uri: tgtd!.uri(BOB.user, 2), name: 'api0', secret: BOB.secret });
    expect(added.status, added.text).toBe(201);
    const secretsDir = path.join(dataDir, 'secrets');
    expect(statSync(secretsDir).mode & 0o777).toBe(0o700);
    const files = readdirSync(secretsDir);
    expect(files).toEqual([expect.stringMatching(/^chap-[0-9a-f]{16}\.secret$/)]);
    for (const f of files) {
      expect(statSync(path.join(secretsDir, f)).mode & 0o777, f).toBe(0o600);
      expect(readFileSync(path.join(secretsDir, f), 'utf8')).toBe(`${BOB.secret}\n`);
    }
  });

  it('errors carrying secrets: wrong password, inline secret to a bad target, secret for nbd://, unknown field, discovery', async () => {
    const wrong = await call('POST', '/elements', { uri: tgtd!.uri(BOB.user, 3), name: 'bad0', secret: WRONG });
    // The remote refused us: 502 with the initiator's own reason, not a 500 "internal error".
    expect(wrong.status, wrong.text).toBe(502);
    expect(wrong.text).toMatch(/"code":"unreachable"/);
    expect(wrong.text).toMatch(/authentication|CHAP|EAUTH/i);
    const inline = await call('POST', '/elements', { uri: `iscsi://${BOB.user}%${BOB.secret}@127.0.0.1:${tgtd!.port}/iqn.2026-11.dev.onestack.test:nope/1`, name: 'bad1' });
    expect(inline.status, inline.text).toBeGreaterThanOrEqual(400);
    const nbd = await call('POST', '/elements', { uri: 'nbd://127.0.0.1:1/x', secret: BOB.secret });
    expect(nbd.status).toBe(400);
    const unknownField = await call('POST', '/elements', { uri: tgtd!.uri(BOB.user, 3), secret: ALICE.secret, bogus: TARGET.secret });
    expect(unknownField.status).toBe(400);
    const discoverWrong = await call('POST', '/discover', { uri: `iscsi://${ALICE.user}@127.0.0.1:${tgtd!.port}`, secret: WRONG });
    expect(discoverWrong.status, discoverWrong.text).toBeGreaterThanOrEqual(400); // tgtd demands CHAP for discovery too
    const discoverRight = await call('POST', '/discover', { uri: `iscsi://${ALICE.user}@127.0.0.1:${tgtd!.port}`, secret: ALICE.secret });
    expect(discoverRight.status, discoverRight.text).toBe(200);
    const unauthorized = await call('GET', '/status', undefined, { authorization: `Bearer ${token.slice(0, -2)}xx` });
    expect(unauthorized.status).toBe(401);
    // discover refuses a secret on its command line (exit 2) without repeating it; element add
    // hands an inline secret to the daemon, which takes it out of the URI (here: no such target).
    const refused = await cli(['discover', `iscsi://${BOB.user}%${BOB.secret}@127.0.0.1:${tgtd!.port}`]);
    expect(refused.code).toBe(2);
    const inlineAdd = await cli(['element', 'add', `iscsi://${BOB.user}%${BOB.secret}@127.0.0.1:${tgtd!.port}/iqn.x/1`]);
    expect(inlineAdd.code, inlineAdd.stdout + inlineAdd.stderr).not.toBe(0);
    writeFileSync(path.join(dir, 'wrong.secret'), `${WRONG}\n`, { mode: 0o600 });
    const cliWrong = await cli(['discover', `iscsi://${ALICE.user}@127.0.0.1:${tgtd!.port}`, '--secret-file', path.join(dir, 'wrong.secret')]);
    expect(cliWrong.code, cliWrong.stdout + cliWrong.stderr).not.toBe(0);
    const status = await daemon!.status();
    expect(status.elements.map((e) => e.name).sort()).toEqual(['api0', 'd0', 'i0']); // the failed adds left nothing behind
  });

  it('NBD TLS: an nbds:// client gets in, a plaintext one is refused, garbage after STARTTLS is logged', async () => {
    const ok = await run('nbdinfo', ['--size', `nbds://127.0.0.1:${daemon!.nbdPort}/v?tls-certificates=${pki.dir}`], { timeoutMs: 20_000 });
    expect(ok.code, ok.stderr).toBe(0);
    const plain = await run('nbdinfo', ['--size', `nbd://127.0.0.1:${daemon!.nbdPort}/v`], { timeoutMs: 20_000 });
    expect(plain.code).not.toBe(0);
    await new Promise<void>((resolve) => {
      const s = connect(daemon!.nbdPort, '127.0.0.1');
      // greeting (18) → client flags, STARTTLS → its ACK (20), then plaintext garbage
      let seen = 0;
      s.on('data', (b: Buffer) => {
        seen += b.length;
        if (seen === 18) s.write(Buffer.from([0, 0, 0, 1, ...Buffer.from('IHAVEOPT'), 0, 0, 0, 5, 0, 0, 0, 0]));
        else if (seen >= 38) s.write('GET / HTTP/1.0\r\n\r\n');
      });
      s.on('error', () => {});
      s.on('close', () => resolve());
      setTimeout(() => s.destroy(), 5000);
    });
    expect(daemon!.stderr).toMatch(/TLS handshake failed/);
  });

  it('collects every output: status, CLI, API (also /metrics and SSE), the GUI, the state file and data dir', async () => {
    for (const p of ['/status', '/elements', '/elements/i0', '/elements/api0', '/volumes', '/volumes/v', '/metrics', '/candidates']) {
      expect((await call('GET', p)).status, p).toBe(200);
    }
    const sse = new AbortController();
    const events = await fetch(api('/events'), { headers: auth(), signal: sse.signal });
    const reader = events.body!.getReader();
    const reading = reader.read();
    reading.catch(() => {}); // the abort below rejects it when the timeout won the race
    const first = await Promise.race([reading, new Promise<undefined>((r) => setTimeout(() => r(undefined), 2000))]);
    keep('GET /api/v1/events (first chunk)', first?.value === undefined ? '' : Buffer.from(first.value).toString('utf8'));
    sse.abort();
    for (const args of [['status', '--json'], ['status'], ['element', 'list'], ['volume', 'list'],
      ['discover', `iscsi://${ALICE.user}@127.0.0.1:${tgtd!.port}`, '--secret-file', path.join(dataDir, 'chap-alice.secret')]]) {
      const r = await cli(args);
      expect(r.code, r.stderr).toBe(0);
    }
    const base = `http://127.0.0.1:${daemon!.apiPort}`;
    for (const p of ['/', `/?token=${token}`]) {
      const html = await (await fetch(base + p)).text();
      keep(`GET ${p === '/' ? '/' : '/?token=…'}`, html);
      for (const asset of html.matchAll(/(?:src|href)="(\/assets\/[^"]+)"/g)) keep(`GET ${asset[1]}`, await (await fetch(base + (asset[1] as string))).text());
    }
    expect(collected.some((c) => c.where.startsWith('GET /assets/'))).toBe(true);
    // The data dir, except the files whose job is to hold a secret, and the images.
    const walk = (d: string): void => {
      for (const e of readdirSync(d, { withFileTypes: true })) {
        const full = path.join(d, e.name);
        if (e.isDirectory()) { if (e.name !== 'secrets') walk(full); continue; }
        if (/^(api-token|chap-.*\.secret)$/.test(e.name) || statSync(full).size > MiB) continue;
        keep(`file ${path.relative(dir, full)}`, readFileSync(full, 'utf8'));
      }
    };
    walk(dataDir);
    expect(collected.some((c) => c.where.endsWith('onestack-state.json'))).toBe(true);
  });

  it('no secret in anything collected, the daemon logs included; the token only in the banner GUI line', () => {
    const d = daemon!;
    const stdoutNotGui = d.stdout.split('\n').filter((l) => !/^\s*GUI:\s+http:\/\/127\.0\.0\.1:\d+\/\?token=/.test(l)).join('\n');
    const everything = [...collected, { where: 'daemon stderr', text: d.stderr }, { where: 'daemon stdout (banner GUI line excepted)', text: stdoutNotGui }];
    const secrets: [string, string][] = [
      ['alice CHAP secret', ALICE.secret], ['bob CHAP secret (API)', BOB.secret], ['mutual CHAP target secret', TARGET.secret],
      ['wrong CHAP password', WRONG], ['wrong target secret', WRONG_TARGET], ['API token', token],
      ...keyLines.map((l, i): [string, string] => [`NBD TLS key line ${i}`, l]),
    ];
    const leaks: string[] = [];
    for (const { where, text } of everything) {
      for (const [what, secret] of secrets) if (text.includes(secret)) leaks.push(`${what} in ${where}`);
    }
    if (process.env['ONESTACK_SECRETS_DEBUG'] === '1') console.log(everything.map((e) => `${e.where}: ${e.text.length} chars`).join('\n'));
    expect(leaks).toEqual([]);
    expect(everything.length).toBeGreaterThan(35);
    expect(d.stdout).toContain(`?token=${token}`); // the one place it is meant to be (SPEC: like Jupyter)
  });

  it('secret files are 0600: api-token, init\'s chap-alice.secret, the API\'s data/secrets/*', () => {
    expect(statSync(path.join(dataDir, 'api-token')).mode & 0o777).toBe(0o600);
    expect(statSync(path.join(dataDir, 'chap-alice.secret')).mode & 0o777).toBe(0o600);
    expect(readFileSync(path.join(dataDir, 'chap-alice.secret'), 'utf8')).toBe(`${ALICE.secret}\n`);
    for (const f of readdirSync(path.join(dataDir, 'secrets'))) expect(statSync(path.join(dataDir, 'secrets', f)).mode & 0o777, f).toBe(0o600);
  });
});
