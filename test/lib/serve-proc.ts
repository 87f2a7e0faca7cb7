// `onestack serve` started with any command line, wrapper and stdio (a Unix socket for NBD,
// a listening socket passed as fd 3, systemd-socket-activate in front): the cases Daemon.start,
// which always passes --nbd HOST:PORT, does not cover. Ready on `onestack: ready`, stopped by PID.
import { spawn, type ChildProcess, type StdioOptions } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { REPO_ROOT } from './daemon.js';
import { hasExited, stopChild, track, waitExit } from './proc.js';

const OUTPUT_CHARS_MAX = 256 * 1024;
const READY_LINE = /onestack: ready/;

export interface ServeProc {
  readonly child: ChildProcess;
  readonly stdout: string;
  readonly stderr: string;
  logs(): string;
  stop(): Promise<{ code: number | null; signal: string | null; killed: boolean }>;
}

export interface ServeSpawn {
  readonly cmd: string;
  readonly args: readonly string[];
  readonly env?: NodeJS.ProcessEnv;
  /** Entries from index 3 on are passed to the child as fds 3, 4, ... */
  readonly stdio?: StdioOptions;
  readonly readyTimeoutMs?: number;
}

/** Spawns and waits for `onestack: ready`; throws with the output if it exits or times out first. */
export async function startServe(spec: ServeSpawn): Promise<ServeProc> {
  const child = track(spawn(spec.cmd, [...spec.args], {
    env: spec.env ?? process.env, cwd: REPO_ROOT, stdio: spec.stdio ?? ['ignore', 'pipe', 'pipe'],
  }));
  let out = '';
  let err = '';
  child.stdout?.setEncoding('utf8').on('data', (s: string) => { out = (out + s).slice(-OUTPUT_CHARS_MAX); });
  child.stderr?.setEncoding('utf8').on('data', (s: string) => { err = (err + s).slice(-OUTPUT_CHARS_MAX); });
  const proc: ServeProc = {
    child,
    get stdout() { return out; },
    get stderr() { return err; },
    logs: () => `--- serve stdout\n${out.slice(-3000)}\n--- serve stderr\n${err.slice(-3000)}`,
    stop: () => stopChild(child, 15_000),
  };
  const deadline = Date.now() + (spec.readyTimeoutMs ?? 30_000);
  while (Date.now() < deadline) {
    if (READY_LINE.test(out)) return proc;
    if (hasExited(child)) throw new Error(`serve exited (${String(child.exitCode ?? child.signalCode)}) before \`onestack: ready\`\n${proc.logs()}`);
    await waitExit(child, 50);
  }
  await stopChild(child, 2_000);
  throw new Error(`serve printed no \`onestack: ready\` in time\n${proc.logs()}`);
}

/** GET /api/v1/status of a daemon on apiPort with the data dir's token. */
export async function apiStatus(apiPort: number, dataDir: string): Promise<Record<string, unknown>> {
  const token = readFileSync(path.join(dataDir, 'api-token'), 'utf8').trim();
  const res = await fetch(`http://127.0.0.1:${apiPort}/api/v1/status`, { headers: { authorization: `Bearer ${token}` } });
  if (!res.ok) throw new Error(`GET /api/v1/status: ${res.status} ${await res.text()}`);
  return (await res.json()) as Record<string, unknown>;
}
