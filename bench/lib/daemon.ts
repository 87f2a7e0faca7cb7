// One onestack daemon for a benchmark: a YAML config written from lines, free ports, the API
// token read from its data dir. rebuild.ts and sparse-copy.ts share it.
import { readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort, startServer, waitReady, type Server } from './proc.js';

export const REPO_ROOT = fileURLToPath(new URL('../../..', import.meta.url));
const READY_TIMEOUT_MS = 30_000;

export interface BenchDaemon {
  readonly server: Server;
  readonly nbdPort: number;
  readonly apiPort: number;
  readonly dataDir: string;
}

/** Starts `onestack serve` on `configLines` (written to DIR/NAME.yaml) with its data dir DIR/DATA (default data-NAME). */
export async function startBenchDaemon(dir: string, name: string, configLines: readonly string[], dataDirName = `data-${name}`): Promise<BenchDaemon> {
  const config = path.join(dir, `${name}.yaml`);
  await writeFile(config, configLines.join('\n') + '\n');
  const [nbdPort, apiPort] = [await freePort(), await freePort()];
  const dataDir = path.join(dir, dataDirName);
  const main = path.join(REPO_ROOT, 'packages/cli/dist/main.js');
  const server = startServer(`onestack-${name}`, process.execPath, [main, 'serve', '--config', config, '--data-dir', dataDir,
    '--nbd', `127.0.0.1:${nbdPort}`, '--api', `127.0.0.1:${apiPort}`], REPO_ROOT);
  await waitReady(server, nbdPort, READY_TIMEOUT_MS, /onestack: ready/);
  return { server, nbdPort, apiPort, dataDir };
}

/** One JSON API call; throws with the status line and body on failure. */
export async function benchApi(d: BenchDaemon, method: string, route: string, body?: unknown): Promise<unknown> {
  const token = readFileSync(path.join(d.dataDir, 'api-token'), 'utf8').trim();
  const res = await fetch(`http://127.0.0.1:${d.apiPort}/api/v1/${route}`, {
    method, headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  });
  const text = await res.text();
  if (!res.ok) throw new Error(`${method} /api/v1/${route}: ${res.status} ${text}`);
  return text === '' ? null : JSON.parse(text);
}
