// `volume reshape --resume` (docs/reshape.md "Robustness"): the API body check accepts
// `{ resume: true }` (and a new rate), refuses resume with add or layout and a non-boolean;
// the API server in front of a real Engine answers a resume of a volume that is not reshaping
// with 409 and the engine's reason.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Engine, ensureApiToken } from '@onestack/engine';
import { startApiServer, type ApiServer } from '../src/api/server.js';
import { checkReshape } from '../src/api/validate.js';

describe('reshape --resume: body checks', () => {
  it('accepts resume alone or with a rate; refuses it with add or layout, and non-booleans', () => {
    expect(checkReshape({ resume: true })).toEqual({ add: [], resume: true });
    expect(checkReshape({ resume: true, maxMiBPerSec: 3 })).toEqual({ add: [], resume: true, maxMiBPerSec: 3 });
    expect(checkReshape({ resume: true, add: [] })).toEqual({ add: [], resume: true });
    expect(checkReshape({ add: ['e'], resume: false })).toEqual({ add: ['e'] });
    expect(() => checkReshape({ resume: true, add: ['e'] })).toThrow(/resume takes no add nor layout/);
    expect(() => checkReshape({ resume: true, layout: 'raid6' })).toThrow(/resume takes no add nor layout/);
    expect(() => checkReshape({ resume: 'yes' })).toThrow(/resume must be true or false/);
    expect(() => checkReshape({})).toThrow(/add must be a list/);
  });
});

describe('reshape --resume through the API server', () => {
  let dir: string;
  let engine: Engine;
  let server: ApiServer;
  let token: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'onestack-cli-resume-'));
    engine = await Engine.open({ dataDir: dir, nbdListen: '127.0.0.1:0', apiListen: '127.0.0.1:0', log: () => undefined });
    token = ensureApiToken(dir);
    server = await startApiServer({ engine, token, version: 'test', webDir: null }, { host: '127.0.0.1', port: 0 });
  }, 60_000);
  afterAll(async () => {
    await server?.close();
    await engine?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('a volume that is not reshaping: 409 with the reason', async () => {
    const res = await fetch(`http://127.0.0.1:${server.port}/api/v1/volumes/default/reshape`, {
      method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: JSON.stringify({ resume: true }), signal: AbortSignal.timeout(20_000),
    });
    expect(res.status).toBe(409);
    expect(JSON.stringify(await res.json())).toMatch(/no reshape to resume/);
  });
});
