// The API routes the web GUI added, against a real Engine (embedded default in a temp data dir):
// GET /candidates, POST /volumes/NAME/boot, POST /elements with a CHAP secret, and the GUI files
// served at / and /assets/ (from a temp dir, so the test does not depend on packages/web being built).
import { existsSync, readdirSync } from 'node:fs';
import { mkdir, mkdtemp, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Engine, ensureApiToken, readStateFile } from '@onestack/engine';
import { startApiServer, type ApiServer } from '../src/api/server.js';
import { GUI_CSP } from '../src/api/web-root.js';
import { listCandidates } from '../src/api/candidates.js';

const SECRET = 'chap-secret-do-not-echo-4711';
let dir: string;
let webDir: string;
let engine: Engine;
let server: ApiServer;
let bare: ApiServer;
let token: string;
let base: string;

async function api(method: string, path: string, body?: unknown, auth = true): Promise<Response> {
  const headers: Record<string, string> = {};
  if (auth) headers['authorization'] = `Bearer ${token}`;
  if (body !== undefined) headers['content-type'] = 'application/json';
  return fetch(`${base}/api/v1${path}`, {
    method, headers, body: body === undefined ? null : typeof body === 'string' ? body : JSON.stringify(body), signal: AbortSignal.timeout(20_000),
  });
}

async function sparseFile(path: string, sizeBytes: number): Promise<void> {
  await writeFile(path, '');
  await truncate(path, sizeBytes);
}

const bootVolumes = (): string[] => engine.status().volumes.filter((v) => v.boot).map((v) => v.name);

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'onestack-cli-gui-'));
  webDir = join(dir, 'web');
  await mkdir(join(webDir, 'assets'), { recursive: true });
  await writeFile(join(webDir, 'index.html'), '<!doctype html><script type="module" src="/assets/app-1a2b.js"></script><div id="app"></div>');
  await writeFile(join(webDir, 'assets', 'app-1a2b.js'), 'console.log("gui");');
  await writeFile(join(webDir, 'assets', 'app-1a2b.css'), 'body{}');
  engine = await Engine.open({ dataDir: join(dir, 'data'), nbdListen: '127.0.0.1:0', apiListen: '127.0.0.1:0', log: () => undefined });
  token = ensureApiToken(join(dir, 'data'));
  server = await startApiServer({ engine, token, version: 'test', webDir }, { host: '127.0.0.1', port: 0 });
  bare = await startApiServer({ engine, token, version: 'test', webDir: join(dir, 'missing') }, { host: '127.0.0.1', port: 0 });
  base = `http://127.0.0.1:${server.port}`;
});

afterAll(async () => {
  await bare?.close();
  await server?.close();
  await engine?.close();
  if (dir !== undefined) await rm(dir, { recursive: true, force: true });
});

describe('GUI routes (real engine)', () => {
  it('answers 401 without the token on every new route, changing nothing', async () => {
    expect((await api('GET', '/candidates', undefined, false)).status).toBe(401);
    expect((await api('POST', '/volumes/default/boot', {}, false)).status).toBe(401);
    const added = await api('POST', '/elements', { uri: 'iscsi://alice@127.0.0.1:1/iqn.2026-11.x:y/1', secret: SECRET }, false);
    expect(added.status).toBe(401);
    expect(await added.text()).not.toContain(SECRET);
    expect(existsSync(join(dir, 'data', 'secrets'))).toBe(false);
  });

  it('lists image files of the data dir that are not elements yet, and block devices', async () => {
    await sparseFile(join(dir, 'data', 'spare0.img'), 64 * 2 ** 20);
    await writeFile(join(dir, 'data', 'notes.txt'), 'too small to be a disk');
    const res = await api('GET', '/candidates');
    expect(res.status).toBe(200);
    const body = await res.json() as { dataDir: string; files: { name: string; uri: string; sizeBytes: number }[]; devices: { name: string; path: string; inUse: string | null; partitions: number }[] };
    expect(body.dataDir).toBe(join(dir, 'data'));
    expect(body.files.map((f) => f.name)).toEqual(['spare0.img']);
    expect(body.files[0]).toMatchObject({ uri: `file:${join(dir, 'data', 'spare0.img')}`, sizeBytes: 64 * 2 ** 20 });
    expect(Array.isArray(body.devices)).toBe(true);
    for (const d of body.devices) {
      expect(d.path).toBe(`/dev/${d.name}`);
      expect(d.inUse === null || typeof d.inUse === 'string').toBe(true);
      expect(Number.isInteger(d.partitions)).toBe(true);
    }
    expect((await api('POST', '/candidates', {})).status).toBe(405);
  });

  it('reads block devices from sysfs: size, partitions, read-only; skips empty and RAM devices', async () => {
    const sys = join(dir, 'sys-block');
    const put = async (file: string, text: string): Promise<void> => {
      await mkdir(join(sys, file, '..'), { recursive: true });
      await writeFile(join(sys, file), `${text}\n`);
    };
    await put('sdz/size', String(2 * 2 ** 21));
    await put('sdz/ro', '0');
    await put('sdz/removable', '1');
    await put('sdz/device/model', 'TEST DISK');
    await put('sdz/sdz1/partition', '1');
    await put('sdy/size', String(2 ** 21));
    await put('sdy/ro', '1');
    await put('loop7/size', '0');
    await put('ram0/size', String(2 ** 21));
    const found = listCandidates(join(dir, 'data'), [], sys);
    expect(found.devices).toEqual([
      { name: 'sdy', path: '/dev/sdy', uri: 'file:/dev/sdy', sizeBytes: 2 ** 30, model: null, readOnly: true, removable: false, inUse: null, partitions: 0 },
      { name: 'sdz', path: '/dev/sdz', uri: 'file:/dev/sdz', sizeBytes: 2 ** 31, model: 'TEST DISK', readOnly: false, removable: true, inUse: null, partitions: 1 },
    ]);
  });

  it('picks the boot volume; bad bodies get 400 naming the problem and change nothing', async () => {
    await sparseFile(join(dir, 'data', 'b0.img'), 16 * 2 ** 20);
    await sparseFile(join(dir, 'data', 'b1.img'), 16 * 2 ** 20);
    for (const name of ['b0', 'b1']) expect((await api('POST', '/elements', { uri: `file:${join(dir, 'data', `${name}.img`)}`, name })).status).toBe(201);
    const created = await api('POST', '/volumes', { name: 'v2', layout: 'raid1', elements: ['b0', 'b1'] });
    expect(created.status).toBe(201);
    expect(bootVolumes()).toEqual(['default']);
    for (const bad of [{ volume: 'v2' }, '[1]', '"v2"', '{not json']) {
      const res = await api('POST', '/volumes/v2/boot', bad);
      expect(res.status).toBe(400);
      const json = await res.json() as { error: string; where: string; hint?: string };
      expect(json.error).toMatch(/unknown field "volume"|empty JSON object|not valid JSON/);
      expect(typeof json.where).toBe('string');
    }
    expect((await api('POST', '/volumes/nope/boot', {})).status).toBe(404);
    expect((await api('GET', '/volumes/v2/boot')).status).toBe(405);
    expect(bootVolumes()).toEqual(['default']);
    const picked = await api('POST', '/volumes/v2/boot');
    expect(picked.status).toBe(200);
    expect(await picked.json()).toMatchObject({ name: 'v2', boot: true });
    expect(bootVolumes()).toEqual(['v2']);
    expect(readStateFile(join(dir, 'data')).bootPick).toEqual({ volume: 'v2', configBoot: 'default' });
    expect((await api('POST', '/volumes/default/boot', {})).status).toBe(200);
    expect(bootVolumes()).toEqual(['default']);
  });

  it('refuses bad CHAP secrets with 400 without echoing them, and leaves no secret file behind', async () => {
    const before = engine.status().elements.map((e) => e.name);
    const cases: unknown[] = [
      { uri: 'nbd://127.0.0.1:1/x', secret: SECRET },
      { uri: 'iscsi://127.0.0.1:1/iqn.2026-11.x:y/1', secret: SECRET },
      { uri: 'iscsi://alice@127.0.0.1:1/iqn.2026-11.x:y/1', secret: SECRET, secretFile: '/tmp/chap' },
      { uri: `iscsi://alice%${SECRET}@127.0.0.1:1/iqn.2026-11.x:y/1`, secret: SECRET },
      { uri: 'iscsi://alice@127.0.0.1:1/iqn.2026-11.x:y/1', secret: `${SECRET}\nsecond line` },
      { uri: 'file:/tmp/x.img', secretFile: '/tmp/chap' },
      `{"uri": "iscsi://alice@h/iqn.x:y/1", "secret": "${SECRET}"`,
    ];
    for (const body of cases) {
      const res = await api('POST', '/elements', body);
      const text = await res.text();
      expect(res.status, text).toBe(400);
      expect(text).not.toContain(SECRET);
      expect(JSON.parse(text)).toMatchObject({ code: 'invalid', where: expect.any(String) });
    }
    // Valid, but the target does not answer: the error says so, and the secret file goes again.
    const unreachable = await api('POST', '/elements', { uri: 'iscsi://alice@127.0.0.1:1/iqn.2026-11.x:y/1', secret: SECRET });
    const text = await unreachable.text();
    expect(unreachable.status).toBeGreaterThanOrEqual(400);
    expect(text).not.toContain(SECRET);
    expect(readdirSync(join(dir, 'data', 'secrets'))).toEqual([]);
    expect(engine.status().elements.map((e) => e.name)).toEqual(before);
  });
});

describe('GUI files', () => {
  it('serves index.html to anyone (it holds no data) under a strict CSP, and hashed assets', async () => {
    const page = await fetch(`${base}/`);
    expect(page.status).toBe(200);
    expect(page.headers.get('content-type')).toBe('text/html; charset=utf-8');
    expect(page.headers.get('content-security-policy')).toBe(GUI_CSP);
    expect(GUI_CSP).toContain("script-src 'self'");
    expect(GUI_CSP).not.toContain('unsafe-inline');
    expect(page.headers.get('referrer-policy')).toBe('no-referrer');
    expect(await page.text()).toContain('/assets/app-1a2b.js');
    expect((await fetch(`${base}/?token=${token}`)).status).toBe(200);
    const js = await fetch(`${base}/assets/app-1a2b.js`);
    expect(js.status).toBe(200);
    expect(js.headers.get('content-type')).toBe('text/javascript; charset=utf-8');
    expect(js.headers.get('cache-control')).toContain('immutable');
    expect(await js.text()).toBe('console.log("gui");');
    expect((await fetch(`${base}/assets/app-1a2b.css`)).headers.get('content-type')).toBe('text/css; charset=utf-8');
    expect((await fetch(`${base}/assets/app-1a2b.js`, { method: 'HEAD' })).status).toBe(200);
    expect((await fetch(`${base}/assets/app-1a2b.js`, { method: 'POST' })).status).toBe(405);
  });

  it('refuses path traversal and unknown files with 404', async () => {
    for (const path of ['/assets/nope.js', '/assets/..%2findex.html', '/assets/%2e%2e/%2e%2e/data/api-token', '/assets/..%2f..%2fdata%2fapi-token', '/assets/', '/data/api-token']) {
      const res = await fetch(`${base}${path}`);
      const text = await res.text();
      expect(res.status, path).toBe(404);
      expect(text).not.toContain(token);
    }
  });

  it('falls back to the minimal page, token first, and says the GUI is not built', async () => {
    const url = `http://127.0.0.1:${bare.port}`;
    expect((await fetch(`${url}/`)).status).toBe(401);
    const page = await fetch(`${url}/?token=${encodeURIComponent(token)}`);
    expect(page.status).toBe(200);
    const html = await page.text();
    expect(html).toContain('The web GUI is not built');
    expect(html).toContain('<b>default</b>');
    expect((await fetch(`${url}/assets/app-1a2b.js`)).status).toBe(404);
  });
});
