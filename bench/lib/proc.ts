// Child processes of the benchmark: every one tracked by PID and stopped on the way out, even
// when a step throws or the user presses Ctrl-C.
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { connect, createServer } from 'node:net';

export const ENV: NodeJS.ProcessEnv = { ...process.env, PATH: `/usr/sbin:/sbin:/usr/bin:/bin:${process.env.PATH ?? ''}`, LC_ALL: 'C' };
const OUTPUT_CHARS_MAX = 128 * 1024;

export interface Server {
  readonly name: string;
  readonly child: ChildProcess;
  /** Tail of stdout + stderr, for error messages. */
  output(): string;
}

const live = new Set<ChildProcess>();

/** `stdin: 'pipe'` for a child that takes requests on its standard input (the embedded engine). */
export function startServer(name: string, cmd: string, args: readonly string[], cwd?: string, stdin: 'ignore' | 'pipe' = 'ignore'): Server {
  const child = spawn(cmd, args, { env: ENV, cwd, stdio: [stdin, 'pipe', 'pipe'] });
  live.add(child);
  child.once('exit', () => live.delete(child));
  child.once('error', () => live.delete(child));
  let out = '';
  const keep = (s: string): void => { out = (out + s).slice(-OUTPUT_CHARS_MAX); };
  child.stdout?.setEncoding('utf8').on('data', keep);
  child.stderr?.setEncoding('utf8').on('data', keep);
  return { name, child, output: () => out };
}

function exited(c: ChildProcess): boolean {
  return c.exitCode !== null || c.signalCode !== null;
}

function waitExit(c: ChildProcess, timeoutMs: number): Promise<boolean> {
  if (exited(c)) return Promise.resolve(true);
  return new Promise((resolve) => {
    const t = setTimeout(() => resolve(false), timeoutMs);
    c.once('exit', () => { clearTimeout(t); resolve(true); });
  });
}

/** SIGTERM by PID, SIGKILL after graceMs. */
export async function stopServer(s: Server, graceMs = 10_000): Promise<void> {
  const pid = s.child.pid;
  if (pid === undefined || exited(s.child)) return;
  process.kill(pid, 'SIGTERM');
  if (await waitExit(s.child, graceMs)) return;
  try { process.kill(pid, 'SIGKILL'); } catch { /* gone meanwhile */ }
  await waitExit(s.child, 5_000);
}

/** Synchronous last resort (exit handlers cannot await). */
export function killAll(): void {
  for (const c of live) {
    if (c.pid !== undefined && !exited(c)) {
      try { process.kill(c.pid, 'SIGKILL'); } catch { /* gone */ }
    }
  }
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const a = srv.address();
      const port = typeof a === 'object' && a !== null ? a.port : 0;
      srv.close(() => (port > 0 ? resolve(port) : reject(new Error('listen(0) gave no port'))));
    });
  });
}

/** One attempt: connect and receive the NBD greeting ("NBDMAGIC"). */
function nbdGreets(port: number, timeoutMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect({ host: '127.0.0.1', port });
    let got = Buffer.alloc(0);
    const done = (ok: boolean): void => { clearTimeout(t); s.destroy(); resolve(ok); };
    const t = setTimeout(() => done(false), timeoutMs);
    s.on('data', (d: Buffer) => { got = Buffer.concat([got, d]); if (got.length >= 8) done(got.subarray(0, 8).toString('latin1') === 'NBDMAGIC'); });
    s.on('error', () => done(false));
    s.on('close', () => done(false));
  });
}

/** Waits (bounded) until the server greets on the port, or `readyLine` appears in its output first. */
export async function waitReady(s: Server, port: number, timeoutMs: number, readyLine?: RegExp): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (exited(s.child)) throw new Error(`${s.name} exited (${String(s.child.exitCode ?? s.child.signalCode)}) during start-up:\n${s.output().slice(-2000)}`);
    const lineOk = readyLine === undefined || readyLine.test(s.output());
    if (lineOk && (await nbdGreets(port, 1_000))) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${s.name} not ready within ${timeoutMs} ms:\n${s.output().slice(-2000)}`);
}

/** Waits (bounded) until `line` appears in the server's output; for children that serve no port. */
export async function waitOutput(s: Server, line: RegExp, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (line.test(s.output())) return;
    if (exited(s.child)) throw new Error(`${s.name} exited (${String(s.child.exitCode ?? s.child.signalCode)}) during start-up:\n${s.output().slice(-2000)}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`${s.name} not ready within ${timeoutMs} ms:\n${s.output().slice(-2000)}`);
}

export interface Done { readonly code: number | null; readonly stdout: string; readonly stderr: string }

/** Runs to completion with a timeout (SIGKILL); never rejects. */
export function runCommand(cmd: string, args: readonly string[], timeoutMs: number, cwd?: string): Promise<Done> {
  return new Promise((resolve) => {
    const child = execFile(cmd, args, { env: ENV, cwd, timeout: timeoutMs, killSignal: 'SIGKILL', maxBuffer: 64 * 1024 * 1024, encoding: 'utf8' },
      (err, stdout, stderr) => {
        const e = err as (Error & { code?: number | string }) | null;
        const code = e === null ? 0 : typeof e.code === 'number' ? e.code : null;
        resolve({ code, stdout, stderr: e !== null && code === null ? `${e.message}\n${stderr}` : stderr });
      });
    live.add(child);
    child.once('exit', () => live.delete(child));
  });
}

/** First line of `cmd --version`, or "missing". */
export async function version(cmd: string): Promise<string> {
  const r = await runCommand(cmd, ['--version'], 10_000);
  return r.code === 0 ? (r.stdout.split('\n')[0] ?? '').trim() : 'missing';
}

/** user + system CPU seconds of a process (all its threads), from /proc. */
export function cpuSeconds(pid: number | undefined, ticksPerSecond: number): number {
  if (pid === undefined) return Number.NaN;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(rest[11]) + Number(rest[12])) / ticksPerSecond;
  } catch {
    return Number.NaN;
  }
}

/** Resident set size of a process (VmRSS from /proc), or NaN when it is gone. */
export function rssBytes(pid: number | undefined): number {
  if (pid === undefined) return Number.NaN;
  try {
    const m = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m === null ? Number.NaN : Number(m[1]) * 1024;
  } catch {
    return Number.NaN;
  }
}

/** Runs a bench's main: peers it started are killed on Ctrl-C or on an error, which is printed under the bench's name. */
export function runMain(name: string, main: () => Promise<void>): void {
  process.on('SIGINT', () => { killAll(); process.exit(130); });
  main().catch((err: unknown) => {
    killAll();
    process.stderr.write(`${name}: ${(err as Error).stack ?? String(err)}\n`);
    process.exit(1);
  });
}
