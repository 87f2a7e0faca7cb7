// The API server in front of a real Engine on the embedded default (two sparse 1 GiB images)
// in a temp data dir, on a free port: token, status shape per SPEC, create/delete, bad bodies.
import { mkdtemp, rm, stat, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Engine, ensureApiToken } from '@onestack/engine';
import { startApiServer, type ApiServer } from '../src/api/server.js';

let dir: string;
let engine: Engine;
let server: ApiServer;
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

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'onestack-cli-api-'));
  engine = await Engine.open({ dataDir: dir, nbdListen: '127.0.0.1:0', apiListen: '127.0.0.1:0' });
  token = ensureApiToken(dir);
  server = await startApiServer({ engine, token, version: 'test', webDir: null }, { host: '127.0.0.1', port: 0 });
  base = `http://127.0.0.1:${server.port}`;
});

afterAll(async () => {
  await server?.close();
  await engine?.close();
  if (dir !== undefined) await rm(dir, { recursive: true, force: true });
});

describe('API server (real engine)', () => {
  it('keeps the token in <dataDir>/api-token with mode 0600', async () => {
    expect(token.length).toBeGreaterThanOrEqual(16);
    expect((await stat(join(dir, 'api-token'))).mode & 0o777).toBe(0o600);
  });

  it('answers 401 without the token', async () => {
    expect((await api('GET', '/status', undefined, false)).status).toBe(401);
    expect((await api('GET', '/volumes', undefined, false)).status).toBe(401);
    expect((await api('POST', '/volumes', {}, false)).status).toBe(401);
  });

  it('serves GET /status in the shape SPEC names', async () => {
    const res = await api('GET', '/status');
    expect(res.status).toBe(200);
    const status = await res.json() as Record<string, unknown>;
    expect(status).toMatchObject({
      pools: { top: { threads: expect.any(Number) }, middle: { threads: expect.any(Number) }, bottom: { threads: expect.any(Number) } },
    });
    const volumes = status['volumes'] as Record<string, unknown>[];
    const def = volumes.find((v) => v['name'] === 'default');
    expect(def).toMatchObject({ name: 'default', layout: 'raid1', sizeBytes: expect.any(Number) });
    expect(['optimal', 'degraded', 'rebuilding', 'failed']).toContain(def?.['state']);
    const rebuild = def?.['rebuild'];
    expect(rebuild === null || typeof (rebuild as { percent?: unknown }).percent === 'number').toBe(true);
    const elements = def?.['elements'] as Record<string, unknown>[];
    expect(elements).toHaveLength(2);
    for (const e of elements) {
      expect(typeof e['name']).toBe('string');
      expect(['local', 'nbd', 'iscsi']).toContain(e['kind']);
      expect(['active', 'failed', 'spare', 'rebuilding']).toContain(e['state']);
    }
  });

  it('adds elements, creates and deletes a volume', async () => {
    await sparseFile(join(dir, 'e2.img'), 64 * 2 ** 20);
    await sparseFile(join(dir, 'e3.img'), 64 * 2 ** 20);
    for (const name of ['e2', 'e3']) {
      const added = await api('POST', '/elements', { uri: `file:${join(dir, `${name}.img`)}`, name });
      expect(added.status, await added.clone().text()).toBe(201);
      expect(await added.json()).toMatchObject({ name, kind: 'local' });
    }
    const created = await api('POST', '/volumes', { name: 'v1', layout: 'raid1', elements: ['e2', 'e3'] });
    expect(created.status, await created.clone().text()).toBe(201);
    expect(await created.json()).toMatchObject({ name: 'v1', layout: 'raid1' });
    const names = (await (await api('GET', '/volumes')).json() as { name: string }[]).map((v) => v.name);
    expect(names).toContain('v1');
    expect((await api('POST', '/volumes', { name: 'v1', layout: 'raid1', elements: ['e2', 'e3'] })).status).toBe(409);
    expect((await api('DELETE', '/volumes/v1')).status).toBe(204);
    expect((await api('GET', '/volumes/v1')).status).toBe(404);
    expect((await api('DELETE', '/volumes/v1')).status).toBe(404);
  });

  it('answers 400 with {error, where, hint} for a bad body', async () => {
    for (const body of ['{"name":', { name: 'v2', layout: 'raid4', elements: ['e2'] }, { name: 'v2' }]) {
      const res = await api('POST', '/volumes', body);
      expect(res.status).toBe(400);
      const json = await res.json() as Record<string, unknown>;
      expect(typeof json['error']).toBe('string');
      expect(typeof json['where']).toBe('string');
      expect(typeof json['hint']).toBe('string');
    }
  });

  it('serves metrics and the page from the real status', async () => {
    const metrics = await (await api('GET', '/metrics')).text();
    expect(metrics).toContain('onestack_volume_read_ops_total{volume="default",layout="raid1"}');
    const page = await fetch(`${base}/?token=${encodeURIComponent(token)}`);
    expect(page.status).toBe(200);
    expect(await page.text()).toContain('<b>default</b>');
  });
});
