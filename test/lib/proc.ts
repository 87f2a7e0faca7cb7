// Running real peers: bounded by timeouts, never throwing on a non-zero exit unless asked, and
// every long-lived child tracked by PID so nothing outlives the test process.
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import { createServer } from 'node:net';
import path from 'node:path';

/** Debian puts the peers' helpers (losetup, mkfs, fsck) in sbin; python3-libnbd needs /usr/bin first. */
export const PEER_PATH = ['/usr/local/sbin', '/usr/sbin', '/sbin', '/usr/bin', '/bin', process.env.PATH ?? ''].join(':');
export const PEER_ENV: NodeJS.ProcessEnv = { ...process.env, PATH: PEER_PATH, LC_ALL: 'C' };

export interface RunResult {
  readonly code: number | null;
  readonly signal: string | null;
  readonly stdout: string;
  readonly stderr: string;
  readonly timedOut: boolean;
  /** The command line, for assertion messages. */
  readonly command: string;
}

export interface RunOptions {
  readonly timeoutMs?: number;
  readonly env?: NodeJS.ProcessEnv;
  readonly cwd?: string;
}

const OUTPUT_BYTES_MAX = 64 * 1024 * 1024;

/** Runs a command to completion (or its timeout, then SIGKILL). Resolves on any exit status. */
export function run(cmd: string, args: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  const timeoutMs = opts.timeoutMs ?? 60_000;
  const command = [cmd, ...args].join(' ');
  return new Promise((resolve) => {
    const started = Date.now();
    execFile(cmd, args, { timeout: timeoutMs, killSignal: 'SIGKILL', maxBuffer: OUTPUT_BYTES_MAX, env: opts.env ?? PEER_ENV, cwd: opts.cwd, encoding: 'utf8' },
      (err, stdout, stderr) => {
        const e = err as (NodeJS.ErrnoException & { code?: number | string; signal?: string; killed?: boolean }) | null;
        const timedOut = e !== null && e.killed === true && Date.now() - started >= timeoutMs - 50;
        const code = e === null ? 0 : typeof e.code === 'number' ? e.code : null;
        const spawnError = e !== null && typeof e.code === 'string' ? `${e.code}: ${e.message}\n` : '';
        resolve({ code, signal: e?.signal ?? null, stdout, stderr: spawnError + stderr, timedOut, command });
      });
  });
}

/** Like run(), but throws a readable error unless the command exits 0. */
export async function runOk(cmd: string, args: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  const r = await run(cmd, args, opts);
  if (r.code !== 0) throw new Error(explain(r));
  return r;
}

export function explain(r: RunResult): string {
  const why = r.timedOut ? 'timed out' : r.signal !== null ? `killed by ${r.signal}` : `exit ${String(r.code)}`;
  return `${r.command}: ${why}\n--- stdout\n${r.stdout.slice(-4000)}\n--- stderr\n${r.stderr.slice(-4000)}`;
}

/** Whether an executable is on the peers' PATH. */
export function have(tool: string): boolean {
  for (const dir of PEER_PATH.split(':')) {
    if (dir === '') continue;
    try {
      accessSync(path.join(dir, tool), constants.X_OK);
      return true;
    } catch {
      // keep looking
    }
  }
  return false;
}

/** The first missing tool of a list, as a skip reason, or null when all are there. */
export function missingTools(tools: readonly string[]): string | null {
  const missing = tools.filter((t) => !have(t));
  return missing.length === 0 ? null : `missing ${missing.join(', ')} (./scripts/test.sh installs them; see ../shared/PEERS.md)`;
}

/** A free TCP port on 127.0.0.1, found by listening on port 0. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr !== null ? addr.port : 0;
      srv.close(() => (port > 0 ? resolve(port) : reject(new Error('no port from listen(0)'))));
    });
  });
}

/** Whether 127.0.0.1:port can be listened on right now. */
export function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = createServer();
    srv.unref();
    srv.once('error', () => resolve(false));
    srv.listen(port, '127.0.0.1', () => srv.close(() => resolve(true)));
  });
}

// Long-lived children we started; killed by PID if the test process exits with them still alive.
const children = new Set<ChildProcess>();
process.once('exit', () => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null && c.pid !== undefined) {
    try { process.kill(c.pid, 'SIGKILL'); } catch { /* already gone */ }
  }
});

export function track(child: ChildProcess): ChildProcess {
  children.add(child);
  child.once('exit', () => children.delete(child));
  return child;
}

export function spawnTracked(cmd: string, args: readonly string[], opts: { env?: NodeJS.ProcessEnv; cwd?: string } = {}): ChildProcess {
  return track(spawn(cmd, args, { env: opts.env ?? PEER_ENV, cwd: opts.cwd, stdio: ['ignore', 'pipe', 'pipe'] }));
}

export function hasExited(child: ChildProcess): boolean {
  return child.exitCode !== null || child.signalCode !== null;
}

/** Resolves with the exit status, or null if the child is still running after timeoutMs. */
export function waitExit(child: ChildProcess, timeoutMs: number): Promise<{ code: number | null; signal: string | null } | null> {
  if (hasExited(child)) return Promise.resolve({ code: child.exitCode, signal: child.signalCode });
  return new Promise((resolve) => {
    const timer = setTimeout(() => { child.off('exit', onExit); resolve(null); }, timeoutMs);
    const onExit = (code: number | null, signal: string | null): void => { clearTimeout(timer); resolve({ code, signal }); };
    child.once('exit', onExit);
  });
}

/** SIGTERM (or `signal`), then SIGKILL after graceMs. Returns how it ended. */
export async function stopChild(child: ChildProcess, graceMs = 15_000, signal: NodeJS.Signals = 'SIGTERM'): Promise<{ code: number | null; signal: string | null; killed: boolean }> {
  if (hasExited(child)) return { code: child.exitCode, signal: child.signalCode, killed: false };
  if (child.pid !== undefined) child.kill(signal);
  const first = await waitExit(child, graceMs);
  if (first !== null) return { ...first, killed: false };
  child.kill('SIGKILL');
  const second = await waitExit(child, 5_000);
  return { code: second?.code ?? null, signal: second?.signal ?? 'SIGKILL', killed: true };
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
