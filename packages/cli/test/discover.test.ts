// `onestack discover` without real remotes: flag and URI checks (exit 2 before anything is
// asked), the POST /api/v1/discover route against the in-memory engine (validation, the secret
// split out of the URI and never echoed), and the rendering. Real peers: test/discover.test.ts.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startApiServer, type ApiServer } from '../src/api/server.js';
import { run } from '../src/cli.js';
import { renderDiscover } from '../src/commands/discover.js';
import { maskUriSecrets, redact, splitInlineSecret } from '../src/uri-secret.js';
import { FakeEngine } from './fake-engine.js';
import { captureIo } from './helpers.js';

const TOKEN = 'discover-token-0123456789abcdef0123';
const SECRET = 'never-shown-secret-77';
let server: ApiServer;
let engine: FakeEngine;
let dir: string;

beforeAll(async () => {
  engine = new FakeEngine();
  server = await startApiServer({ engine, token: TOKEN }, { host: '127.0.0.1', port: 0 });
  dir = await mkdtemp(join(tmpdir(), 'onestack-discover-'));
});
afterAll(async () => {
  await server.close();
  await rm(dir, { recursive: true, force: true });
});

function post(body: unknown): Promise<Response> {
  return fetch(`http://127.0.0.1:${server.port}/api/v1/discover`, {
    method: 'POST', headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
    body: JSON.stringify(body), signal: AbortSignal.timeout(5000),
  });
}

async function cli(argv: readonly string[]): Promise<{ code: number; out: string; err: string }> {
  const io = captureIo({ ONESTACK_TOKEN: TOKEN });
  const code = await run(['discover', ...argv, ...(argv.includes('--local') ? [] : ['--api', `127.0.0.1:${server.port}`])], io);
  return { code, out: io.out(), err: io.err() };
}

describe('URI secrets', () => {
  it('splits USER%SECRET@ out of a URI, treats *** as no secret, and masks any text', () => {
    expect(splitInlineSecret('iscsi://alice%s3cr%2Ft@h:3260/iqn.x/1')).toEqual({ uri: 'iscsi://alice@h:3260/iqn.x/1', user: 'alice', secret: 's3cr/t' });
    expect(splitInlineSecret('iscsi://alice%***@h')).toEqual({ uri: 'iscsi://alice@h', user: 'alice' });
    expect(splitInlineSecret('iscsi://alice@h:3260')).toEqual({ uri: 'iscsi://alice@h:3260', user: 'alice' });
    expect(splitInlineSecret('nbd://127.0.0.1:10809/x')).toEqual({ uri: 'nbd://127.0.0.1:10809/x', user: '' });
    expect(maskUriSecrets('see iscsi://bob%pw@h:1/iqn and nbd://h:2/e')).toBe('see iscsi://bob%***@h:1/iqn and nbd://h:2/e');
    expect(redact(`login failed with ${SECRET}`, SECRET)).toBe('login failed with ***');
  });
});

describe('onestack discover: checks before asking (exit 2)', () => {
  it('refuses bad URIs, secrets on the command line and flags that do not fit the URI', async () => {
    const secretFile = join(dir, 'chap.secret');
    await writeFile(secretFile, `${SECRET}\n`, { mode: 0o600 });
    const cases: [string[], RegExp][] = [
      [['http://x'], /not an NBD or iSCSI URI/],
      [[], /discover needs an argument/],
      [['nbd://a', 'nbd://b'], /unexpected argument/],
      [[`iscsi://alice%${SECRET}@127.0.0.1`], /carries a secret: secrets are never taken on the command line/],
      [['iscsi://alice@127.0.0.1', `--secret=${SECRET}`], /option --secret is not accepted/],
      [['iscsi://alice@127.0.0.1', '--password', SECRET], /option --password is not accepted/],
      [['nbd://127.0.0.1', '--secret-file', secretFile], /--secret-file only applies to iscsi/],
      [['iscsi://127.0.0.1', '--secret-file', secretFile], /needs the CHAP user in the URI/],
      [['iscsi://alice@127.0.0.1', '--secret-file', join(dir, 'missing')], /cannot read --secret-file .*ENOENT/],
      [['nbd://127.0.0.1', '--tls-ca', secretFile], /--tls-\* only apply to nbds/],
      [['nbds://127.0.0.1', '--tls-cert', secretFile], /--tls-cert and --tls-key go together/],
      [['nbd://127.0.0.1', '--local', '--api', '127.0.0.1:1'], /--api and --data-dir do not apply/],
      [['nbd://127.0.0.1', '--sekret-file', 'x'], /unknown option --sekret-file/],
    ];
    for (const [argv, pattern] of cases) {
      const r = await cli(argv);
      expect(r.code, argv.join(' ')).toBe(2);
      expect(r.err, argv.join(' ')).toMatch(pattern);
      expect(r.err + r.out).not.toContain(SECRET);
    }
    expect(engine.lastDiscover).toBeUndefined();
  });

  it('an engine-found bad URI is exit 2 also with --local', async () => {
    const r = await cli(['nbd+unix:///x', '--local']);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/^onestack: error: cannot discover nbd\+unix:\/\/\/x: an nbd\+unix URI needs \?socket=PATH/);
  });
});

describe('POST /api/v1/discover', () => {
  it('answers the engine result; the daemon gets the secret apart from the URI and never echoes it', async () => {
    const ok = await post({ uri: 'nbd://fake:1' });
    expect(ok.status).toBe(200);
    expect(await ok.json()).toEqual({ kind: 'nbd', where: 'nbd://fake:1', items: [
      { name: 'disk', uri: 'nbd://fake:1/disk', description: 'a disk' }, { name: '', uri: 'nbd://fake:1/' }] });
    const refused = await post({ uri: `iscsi://alice%${SECRET}@127.0.0.1:1` });
    expect(engine.lastDiscover).toEqual({ uri: 'iscsi://alice@127.0.0.1:1', opts: { secret: SECRET } });
    expect(refused.status).toBe(500);
    const text = await refused.text();
    expect(text).toContain('login refused for secret ***');
    expect(text).not.toContain(SECRET);
  });

  it('answers 400 naming the field, 405 for GET', async () => {
    const cases: [unknown, string][] = [
      [{}, 'uri'], [{ uri: 'file:/x' }, 'uri'], [{ uri: 'nbd://h', colour: 1 }, 'colour'],
      [{ uri: `iscsi://a%${SECRET}@h`, secret: 'x' }, 'secret'], [{ uri: 'iscsi://h', secret: SECRET }, 'uri'],
      [{ uri: 'nbd://h', secretFile: '/x' }, 'secret'], [{ uri: 'iscsi://a@h', secret: 'a\nb' }, 'secret'],
      [{ uri: 'nbd://h', tls: { ca: '/ca.pem' } }, 'tls'], [{ uri: 'nbds://h', tls: { cert: '/c.pem' } }, 'tls'],
      [{ uri: 'nbds://h', tls: { ca: 7 } }, 'tls.ca'],
    ];
    for (const [body, where] of cases) {
      const res = await post(body);
      expect(res.status, JSON.stringify(body)).toBe(400);
      const json = await res.json() as Record<string, string>;
      expect(json['where'], JSON.stringify(body)).toBe(where);
      expect(JSON.stringify(json)).not.toContain(SECRET);
    }
    const broken = await fetch(`http://127.0.0.1:${server.port}/api/v1/discover`, {
      method: 'POST', headers: { authorization: `Bearer ${TOKEN}` }, body: SECRET, signal: AbortSignal.timeout(5000),
    });
    expect(broken.status).toBe(400);
    expect(await broken.text()).not.toContain(SECRET);
    const get = await fetch(`http://127.0.0.1:${server.port}/api/v1/discover`, { headers: { authorization: `Bearer ${TOKEN}` } });
    expect(get.status).toBe(405);
  });
});

describe('onestack discover through the API', () => {
  it('prints a table with the element URIs, or JSON', async () => {
    const table = await cli(['nbd://fake:1']);
    expect(table.code).toBe(0);
    expect(table.out).toBe(renderDiscover({ kind: 'nbd', where: 'nbd://fake:1', items: [
      { name: 'disk', uri: 'nbd://fake:1/disk', description: 'a disk' }, { name: '', uri: 'nbd://fake:1/' }] }));
    expect(table.out).toMatch(/^2 NBD exports at nbd:\/\/fake:1:\nNAME {2}URI {16}DESCRIPTION\ndisk {2}nbd:\/\/fake:1\/disk {2}a disk\n"" {4}nbd:\/\/fake:1\/ {6}-\n/);
    const json = await cli(['nbd://fake:1', '--json']);
    expect(JSON.parse(json.out)).toMatchObject({ kind: 'nbd', items: [{ name: 'disk' }, { name: '' }] });
  });

  it('a failure of the remote is exit 1, without the secret', async () => {
    const secretFile = join(dir, 'chap2.secret');
    await writeFile(secretFile, `${SECRET}\nignored second line\n`, { mode: 0o600 });
    const r = await cli(['iscsi://alice@127.0.0.1:1', '--secret-file', secretFile]);
    expect(engine.lastDiscover?.opts.secret).toBe(SECRET);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/^onestack: error: discover iscsi:\/\/alice@127.0.0.1:1: login refused for secret \*\*\*/);
    expect(r.err + r.out).not.toContain(SECRET);
  });

  it('renders an empty listing as one line', () => {
    expect(renderDiscover({ kind: 'iscsi', where: 'iscsi://h:3260', items: [] })).toBe('no iSCSI targets at iscsi://h:3260\n');
  });
});
