// The members routes of the API server in front of a real Engine (embedded default: raid1
// `default` over two sparse 1 GiB images): POST /volumes/NAME/members adds a leg (202, rebuilt in
// the background), DELETE /volumes/NAME/members/ELEMENT removes one (200); bad bodies, methods,
// unknown names and refusals answer with the engine's codes and messages.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EngineApi } from './engine-api.js';

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;
const h = new EngineApi();
const api = (method: string, path: string, body?: unknown): Promise<Response> => h.api(method, path, body);
beforeAll(() => h.start('onestack-cli-members-', { extra: GiB + 4 * MiB, tiny: 8 * MiB }));
afterAll(() => h.stop());

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
    const leg = h.engine.status().volumes.find((v) => v.name === 'default')!.elements[0]!.name;
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
    expect(h.engine.status().elements.find((e) => e.name === 'extra')).toMatchObject({ state: 'spare', volume: null });
  });
});
