// The built `onestack` binary end to end: serve on free ports in a temp data dir, drive it with
// the client commands, stop it with SIGTERM; a bad config file exits 2 naming field and line.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, stat, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from './helpers.js';

const MAIN = resolve(import.meta.dirname, '../dist/main.js');
const READY_MS_MAX = 60_000;
const STOP_MS_MAX = 10_000;

interface Daemon { child: ChildProcess; out: () => string; err: () => string; exited: Promise<number | null> }
interface Result { code: number | null; stdout: string; stderr: string }

function startDaemon(args: readonly string[]): Daemon {
  const child = spawn(process.execPath, [MAIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ONESTACK_TOKEN: '' } });
  let out = '';
  let err = '';
  child.stdout?.on('data', (d: Buffer) => { out += d.toString(); });
  child.stderr?.on('data', (d: Buffer) => { err += d.toString(); });
  const exited = new Promise<number | null>((done) => { child.on('exit', (code) => { done(code); }); });
  return { child, out: () => out, err: () => err, exited };
}

async function waitFor(daemon: Daemon, text: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!daemon.out().includes(text)) {
    if (daemon.child.exitCode !== null) throw new Error(`daemon exited ${daemon.child.exitCode}:\n${daemon.out()}\n${daemon.err()}`);
    if (Date.now() > deadline) throw new Error(`no "${text}" within ${timeoutMs} ms:\n${daemon.out()}\n${daemon.err()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

function onestack(args: readonly string[], env: Record<string, string> = {}): Promise<Result> {
  return new Promise((done) => {
    const child = spawn(process.execPath, [MAIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ONESTACK_TOKEN: '', ...env } });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => { stdout += d.toString(); });
    child.stderr.on('data', (d: Buffer) => { stderr += d.toString(); });
    const timer = setTimeout(() => { child.kill('SIGKILL'); }, 30_000);
    child.on('exit', (code) => { clearTimeout(timer); done({ code, stdout, stderr }); });
  });
}

async function stop(daemon: Daemon): Promise<number | null> {
  if (daemon.child.exitCode !== null) return daemon.child.exitCode;
  daemon.child.kill('SIGTERM');
  const timeout = new Promise<'timeout'>((r) => { setTimeout(() => { r('timeout'); }, STOP_MS_MAX); });
  const result = await Promise.race([daemon.exited, timeout]);
  if (result === 'timeout') { daemon.child.kill('SIGKILL'); throw new Error(`no exit within ${STOP_MS_MAX} ms of SIGTERM`); }
  return result;
}

let dir: string;
let daemon: Daemon | undefined;
let apiFlag: string[];

beforeAll(async () => {
  if (!existsSync(MAIN)) throw new Error(`${MAIN} is missing: build first with pnpm exec tsc -b packages/cli`);
  dir = await mkdtemp(join(tmpdir(), 'onestack-cli-e2e-'));
});

afterAll(async () => {
  if (daemon !== undefined && daemon.child.exitCode === null) daemon.child.kill('SIGKILL');
  if (dir !== undefined) await rm(dir, { recursive: true, force: true });
});

describe('onestack binary', () => {
  it('serves, answers the client commands, and stops cleanly on SIGTERM', async () => {
    const [nbdPort, apiPort] = [await freePort(), await freePort()];
    const dataDir = join(dir, 'data');
    apiFlag = ['--api', `127.0.0.1:${apiPort}`, '--data-dir', dataDir];
    daemon = startDaemon(['serve', '--data-dir', dataDir, '--nbd', `127.0.0.1:${nbdPort}`, '--api', `127.0.0.1:${apiPort}`]);
    await waitFor(daemon, 'onestack: ready', READY_MS_MAX);
    const token = (await readFile(join(dataDir, 'api-token'), 'utf8')).trim();
    expect((await stat(join(dataDir, 'api-token'))).mode & 0o777).toBe(0o600);
    expect(daemon.out()).toContain(`NBD:  nbd://127.0.0.1:${nbdPort}/default`);
    expect(daemon.out()).toContain(`GUI:  http://127.0.0.1:${apiPort}/?token=${token}`);

    const json = await onestack(['status', '--json', ...apiFlag]);
    expect(json.code, json.stderr).toBe(0);
    const status = JSON.parse(json.stdout) as { volumes: { name: string; layout: string }[]; pools: unknown };
    expect(status.volumes.map((v) => [v.name, v.layout])).toContainEqual(['default', 'raid1']);
    const text = await onestack(['status', ...apiFlag]);
    expect(text.stdout).toMatch(/^default : \w+ raid1 /m);
    const watch = await onestack(['status', '--watch', '--count', '2', ...apiFlag]);
    expect(watch.code, watch.stderr).toBe(0);
    expect(watch.stdout).toMatch(/iops: read \d+\/s write \d+\/s/);

    for (const name of ['e2', 'e3']) {
      const file = join(dir, `${name}.img`);
      await writeFile(file, '');
      await truncate(file, 64 * 2 ** 20);
      const added = await onestack(['element', 'add', `file:${file}`, '--name', name, ...apiFlag]);
      expect(added.code, added.stderr).toBe(0);
    }
    const created = await onestack(['volume', 'create', 'v1', '--layout', 'raid1', '--element', 'e2', 'e3', ...apiFlag]);
    expect(created.code, created.stderr).toBe(0);
    expect(created.stdout).toContain('created volume v1');
    const list = await onestack(['volume', 'list', ...apiFlag]);
    expect(list.stdout).toMatch(/^v1\s+raid1\s/m);
    const missing = await onestack(['volume', 'create', 'v2', '--layout', 'raid1', '--element', 'nope', 'e9', ...apiFlag]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/^onestack: error: /);
    const deleted = await onestack(['volume', 'delete', 'v1', ...apiFlag]);
    expect(deleted.code, deleted.stderr).toBe(0);
    const wrongToken = await onestack(['status', '--api', `127.0.0.1:${apiPort}`], { ONESTACK_TOKEN: 'not-the-token' });
    expect(wrongToken.code).toBe(1);
    expect(wrongToken.stderr).toContain('rejected the API token');

    expect(await stop(daemon)).toBe(0);
    expect(daemon.err()).not.toContain(token);
    expect(daemon.err()).toMatch(/^info: /m);

    const gone = await onestack(['status', ...apiFlag]);
    expect(gone.code).toBe(1);
    expect(gone.stderr).toBe(`onestack: error: cannot reach the daemon at 127.0.0.1:${apiPort} (ECONNREFUSED)\nonestack: hint: start it with: onestack serve\n`);
  });

  it('reuses the data dir on a second start', async () => {
    const [nbdPort, apiPort] = [await freePort(), await freePort()];
    const dataDir = join(dir, 'data');
    daemon = startDaemon(['serve', '--data-dir', dataDir, '--nbd', `127.0.0.1:${nbdPort}`, '--api', `127.0.0.1:${apiPort}`]);
    await waitFor(daemon, 'onestack: ready', READY_MS_MAX);
    const json = await onestack(['status', '--json', '--api', `127.0.0.1:${apiPort}`, '--data-dir', dataDir]);
    const status = JSON.parse(json.stdout) as { volumes: { name: string; state: string }[] };
    expect(status.volumes.find((v) => v.name === 'default')?.state).toBe('optimal');
    expect(await stop(daemon)).toBe(0);
  });

  it('exits 2 on a bad config file, naming the field and its line', async () => {
    const config = join(dir, 'onestack.yaml');
    await writeFile(config, [
      `dataDir: ${join(dir, 'bad-data')}`,
      'elements:',
      `  - { name: d0, uri: file:${join(dir, 'bad0.img')} }`,
      'volumes:',
      '  - { name: v, layout: raid7, elements: [d0] }',
      '',
    ].join('\n'));
    const result = await onestack(['serve', '--config', config, '--nbd', '127.0.0.1:0', '--api', '127.0.0.1:0']);
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/^onestack: error: .*layout.* \(.*onestack\.yaml:5:\d+ volumes\[0\]\.layout\)$/m);
    expect(result.stderr).toMatch(/^onestack: hint: /m);
    expect(result.stdout).not.toContain('onestack: ready');
  });

  it('exits 2 on a usage error and names the flag', async () => {
    const result = await onestack(['serve', '--nbdd', '127.0.0.1:1']);
    expect(result.code).toBe(2);
    expect(result.stderr).toBe('onestack: error: unknown option --nbdd (serve)\nonestack: hint: did you mean --nbd? (see: onestack serve --help)\n');
  });
});
