// A real Engine (embedded default: raid1 `default` over two sparse 1 GiB images) in a temp dir with
// the API server in front, plus sparse file elements added by name; for the API route tests.
import { mkdtemp, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Engine, ensureApiToken } from '@onestack/engine';
import { startApiServer, type ApiServer } from '../src/api/server.js';

export class EngineApi {
  dir: string | undefined;
  private engineOrNull: Engine | null = null;
  private server: ApiServer | null = null;
  private token = '';

  get engine(): Engine {
    if (this.engineOrNull === null) throw new Error('engine not started');
    return this.engineOrNull;
  }

  /** Starts both; then per entry of `elements` (in order) a sparse file of that many bytes, added as an element. */
  async start(prefix: string, elements: Readonly<Record<string, number>>): Promise<void> {
    const dir = await mkdtemp(join(tmpdir(), prefix));
    this.dir = dir;
    const engine = await Engine.open({ dataDir: dir, nbdListen: '127.0.0.1:0', apiListen: '127.0.0.1:0', log: () => undefined });
    this.engineOrNull = engine;
    this.token = ensureApiToken(dir);
    this.server = await startApiServer({ engine, token: this.token, version: 'test', webDir: null }, { host: '127.0.0.1', port: 0 });
    for (const [name, sizeBytes] of Object.entries(elements)) {
      await writeFile(join(dir, `${name}.img`), '');
      await truncate(join(dir, `${name}.img`), sizeBytes);
      await engine.addElement({ uri: `file:${join(dir, `${name}.img`)}`, name });
    }
  }

  async api(method: string, path: string, body?: unknown): Promise<Response> {
    if (this.server === null) throw new Error('server not started');
    const headers: Record<string, string> = { authorization: `Bearer ${this.token}` };
    if (body !== undefined) headers['content-type'] = 'application/json';
    return fetch(`http://127.0.0.1:${this.server.port}/api/v1${path}`, { method, headers, body: body === undefined ? null : JSON.stringify(body), signal: AbortSignal.timeout(20_000) });
  }

  async stop(): Promise<void> {
    await this.server?.close();
    await this.engineOrNull?.close();
    if (this.dir !== undefined) await rm(this.dir, { recursive: true, force: true });
  }
}
