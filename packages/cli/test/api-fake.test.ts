// The API server against an in-memory engine: auth, routing, validation, SSE, metrics, page.
// The same server against the real Engine is in api-engine.test.ts.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startApiServer, type ApiServer } from '../src/api/server.js';
import { FakeEngine } from './fake-engine.js';

const TOKEN = 'fake-token-0123456789abcdef0123456789';
let server: ApiServer;
let engine: FakeEngine;
let base: string;

async function api(method: string, path: string, body?: unknown, token: string | null = TOKEN): Promise<Response> {
  const headers: Record<string, string> = {};
  if (token !== null) headers['authorization'] = `Bearer ${token}`;
  if (body !== undefined) headers['content-type'] = 'application/json';
  const text = typeof body === 'string' ? body : JSON.stringify(body);
  return fetch(`${base}/api/v1${path}`, { method, headers, body: body === undefined ? null : text, signal: AbortSignal.timeout(5000) });
}

beforeAll(async () => {
  engine = new FakeEngine();
  // webDir null: the minimal server-rendered page (the built GUI is tested in gui-api.test.ts).
  server = await startApiServer({ engine, token: TOKEN, version: 'test', sseClientsMax: 2, webDir: null }, { host: '127.0.0.1', port: 0 });
  base = `http://127.0.0.1:${server.port}`;
});
afterAll(async () => { await server.close(); });

describe('API server (fake engine)', () => {
  it('answers 401 without a token or with a wrong one, and takes ?token= only on /', async () => {
    expect((await api('GET', '/status', undefined, null)).status).toBe(401);
    const wrong = await api('GET', '/status', undefined, 'x'.repeat(TOKEN.length));
    expect(wrong.status).toBe(401);
    expect(wrong.headers.get('www-authenticate')).toContain('Bearer');
    expect(await wrong.json()).toMatchObject({ code: 'unauthorized', where: 'Authorization' });
    expect((await fetch(`${base}/api/v1/status?token=${TOKEN}`)).status).toBe(401);
    expect((await fetch(`${base}/`)).status).toBe(401);
    const page = await fetch(`${base}/?token=${TOKEN}`);
    expect(page.status).toBe(200);
    expect(page.headers.get('set-cookie')).toBeNull();
    expect(page.headers.get('referrer-policy')).toBe('no-referrer');
  });

  it('creates, lists, fails, deletes; maps engine errors to 404/409', async () => {
    const created = await api('POST', '/volumes', { name: 'v1', layout: 'raid1', elements: ['d0', 'd1'], chunkKiB: 128 });
    expect(created.status).toBe(201);
    expect(await created.json()).toMatchObject({ name: 'v1', layout: 'raid1', chunkKiB: 128, state: 'optimal' });
    expect((await api('POST', '/volumes', { name: 'v1', layout: 'raid1', elements: ['d2'] })).status).toBe(409);
    const missing = await api('POST', '/volumes', { name: 'v2', layout: 'raid0', elements: ['nope'] });
    expect(missing.status).toBe(404);
    expect(await missing.json()).toMatchObject({ code: 'not-found', where: 'nope' });
    expect((await (await api('GET', '/volumes')).json() as unknown[]).length).toBe(1);
    const failed = await api('POST', '/elements/d1/fail');
    expect(await failed.json()).toMatchObject({ name: 'd1', state: 'failed' });
    expect((await api('DELETE', '/volumes/v1')).status).toBe(204);
    expect((await api('DELETE', '/volumes/v1')).status).toBe(404);
    const added = await api('POST', '/elements', { uri: 'file:/tmp/x.img', name: 'x1', cache: 'none' });
    expect(added.status).toBe(201);
    expect((await api('DELETE', '/elements/x1')).status).toBe(204);
  });

  it('answers 400 with {error, where, hint} for bad bodies, 413 for huge ones', async () => {
    const cases: [unknown, string][] = [
      ['{not json', 'body'], [[1, 2], 'body'], [{ name: 'v', layout: 'raid9', elements: ['d0'] }, 'layout'],
      [{ name: '../x', layout: 'raid1', elements: ['d0'] }, 'name'], [{ name: 'v', layout: 'raid1', elements: [] }, 'elements'],
      [{ name: 'v', layout: 'raid1', elements: ['d0'], chunkKiB: -4 }, 'chunkKiB'], [{ name: 'v', layout: 'raid1', elements: ['d0'], colour: 1 }, 'colour'],
    ];
    for (const [body, where] of cases) {
      const res = await api('POST', '/volumes', body);
      expect(res.status, JSON.stringify(body)).toBe(400);
      const json = await res.json() as Record<string, string>;
      expect(json['where']).toBe(where);
      expect(typeof json['error']).toBe('string');
      expect(typeof json['hint']).toBe('string');
    }
    expect((await api('POST', '/volumes', JSON.stringify({ name: 'v', pad: 'x'.repeat(70_000) }))).status).toBe(413);
    expect((await api('POST', '/elements', { uri: '' })).status).toBe(400);
  });

  it('answers 404 for unknown routes and volumes, 405 for wrong methods', async () => {
    const replace = await api('POST', '/volumes/default/replace', { old: 'd0', new: 'd2' });
    expect(replace.status).toBe(404);
    expect((await api('GET', '/volumes/default/scrub')).status).toBe(405);
    expect((await api('GET', '/nothing')).status).toBe(404);
    const wrongMethod = await api('PUT', '/volumes');
    expect(wrongMethod.status).toBe(405);
    expect(wrongMethod.headers.get('allow')).toBe('GET, POST');
  });

  it('serves Prometheus metrics', async () => {
    await api('POST', '/volumes', { name: 'm"1', layout: 'raid1', elements: ['d2'] }).then((r) => expect(r.status).toBe(400));
    await api('POST', '/volumes', { name: 'm1', layout: 'raid1', elements: ['d2', 'd3'] });
    const res = await api('GET', '/metrics');
    expect(res.headers.get('content-type')).toContain('text/plain; version=0.0.4');
    const text = await res.text();
    expect(text).toContain('# TYPE onestack_volume_read_ops_total counter');
    expect(text).toContain('onestack_volume_write_ops_total{volume="m1",layout="raid1"} 7');
    expect(text).toContain('onestack_pool_queue_depth{pool="bottom"} 3');
    // Blank lines separate families; Node's event-loop lag is NaN until its first sample (Prometheus reads NaN in any case).
    for (const line of text.trim().split('\n')) expect(line).toMatch(/^(|# (HELP|TYPE) \w+ .+|\w+(\{[^}]*\})? (-?[\d.e+-]+|[+-]Inf|NaN|Nan))$/);
  });

  it('streams status over SSE, one event per change, and bounds the client count', async () => {
    const controller = new AbortController();
    const res = await fetch(`${base}/api/v1/events`, { headers: { authorization: `Bearer ${TOKEN}` }, signal: controller.signal });
    expect(res.headers.get('content-type')).toContain('text/event-stream');
    const reader = res.body!.getReader();
    let text = '';
    const decoder = new TextDecoder();
    const until = async (pattern: RegExp): Promise<void> => {
      const deadline = Date.now() + 5000;
      while (!pattern.test(text) && Date.now() < deadline) {
        const { value, done } = await reader.read();
        if (done) break;
        text += decoder.decode(value);
      }
    };
    await until(/event: status\ndata: \{/);
    await api('POST', '/elements/d3/fail');
    await until(/event: change\ndata: /);
    expect(text).toMatch(/event: change\ndata: \{.*"state":"failed"/);
    const second = await fetch(`${base}/api/v1/events`, { headers: { authorization: `Bearer ${TOKEN}` }, signal: controller.signal });
    const third = await fetch(`${base}/api/v1/events`, { headers: { authorization: `Bearer ${TOKEN}` } });
    expect(second.status).toBe(200);
    expect(third.status).toBe(503);
    await third.text();
    controller.abort();
  });

  it('renders the page with volumes and elements, HTML-escaped', async () => {
    const html = await (await fetch(`${base}/?token=${TOKEN}`)).text();
    expect(html).toContain('<b>m1</b>');
    expect(html).toContain('file:/tmp/d0.img');
    expect(html).toContain('The web GUI is not built');
    expect(html).not.toContain(TOKEN);
  });
});
