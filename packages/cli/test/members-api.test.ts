// The members routes of the API server in front of a real Engine (embedded default: raid1
// `default` over two sparse 1 GiB images): POST /volumes/NAME/members adds a leg (202, rebuilt in
// the background), DELETE /volumes/NAME/members/ELEMENT removes one (200); bad bodies, methods,
// unknown names and refusals answer with the engine's codes and messages.
import { mkdtemp, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Engine, ensureApiToken } from '@onestack/engine';
import { startApiServer, type ApiServer } from '../src/api/server.js';

let dir: string;
let engine: Engine;
let server: ApiServer;
let token: string;

async function api(method: string, path: string, body?: unknown): Promise<Response> {
  const headers: Record<string, string> = { authorization: `Bearer ${token}` };
  if (body !== undefined) headers['content-type'] = 'application/json';
  return fetch(`http://127.0.0.1:${server.port}/api/v1${path}`, { method, headers, body: body === undefined ? null : JSON.stringify(body), signal: AbortSignal.timeout(20_000) });
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'onestack-cli-members-'));
  engine = await Engine.open({ dataDir: dir, nbdListen: '127.0.0.1:0', apiListen: '127.0.0.1:0', log: () => undefined });
  token = ensureApiToken(dir);
  server = await startApiServer({ engine, token, version: 'test', webDir: null }, { host: '127.0.0.1', port: 0 });
  for (const name of ['extra', 'tiny']) {
    await writeFile(join(dir, `${name}.img`), '');
    await truncate(join(dir, `${name}.img`), name === 'tiny' ? 8 * 1024 * 1024 : 1024 * 1024 * 1024 + 4 * 1024 * 1024);
  }
  await engine.addElement({ uri: `file:${join(dir, 'extra.img')}`, name: 'extra' });
  await engine.addElement({ uri: `file:${join(dir, 'tiny.img')}`, name: 'tiny' });
});

afterAll(async () => {
  await server?.close();
  await engine?.close();
  if (dir !== undefined) await rm(dir, { recursive: true, force: true });
});

describe('API: volume members', () => {
  it('refuses bad bodies, methods and elements with clear errors', async () => {
    expect((await api('POST', '/volumes/default/members', { name: 'extra' })).status).toBe(400);
    expect((await api('GET', '/volumes/default/members')).status).toBe(405);
    expect((await api('PUT', '/volumes/default/members/extra')).status).toBe(405);
    expect((await api('POST', '/volumes/default/members/extra/more')).status).toBe(404);
    const missing = await api('POST', '/volumes/nope/members', { element: 'extra' });
    expect(missing.status).toBe(404);
    const small = await api('POST', '/volumes/default/members', { element: 'tiny' });
    expect(small.status).toBe(400);
    expect(await small.json()).toMatchObject({ error: expect.stringMatching(/element tiny holds .* data bytes; a leg of volume default needs/) });
    const leg = engine.status().volumes.find((v) => v.name === 'default')!.elements[0]!.name;
    const two = await api('DELETE', `/volumes/default/members/${leg}`);
    expect(two.status).toBe(409);
    expect(await two.json()).toMatchObject({ error: 'volume default has 2 legs; a raid1 keeps at least 2' });
  });

  it('adds a leg (202, rebuilding) and removes one (200)', async () => {
    const added = await api('POST', '/volumes/default/members', { element: 'extra' });
    expect(added.status, await added.clone().text()).toBe(202);
    const vol = await added.json() as { elements: { name: string; state: string }[] };
    expect(vol.elements).toHaveLength(3);
    expect(vol.elements[2]).toMatchObject({ name: 'extra', state: 'rebuilding' });
    const removed = await api('DELETE', '/volumes/default/members/extra');
    expect(removed.status, await removed.clone().text()).toBe(200);
    const after = await removed.json() as { elements: { name: string }[] };
    expect(after.elements).toHaveLength(2);
    expect(engine.status().elements.find((e) => e.name === 'extra')).toMatchObject({ state: 'spare', volume: null });
  });
});
