// The real onestack daemon (`node packages/cli/dist/main.js serve`) on free loopback ports:
// started per test file, ready when it prints `onestack: ready`, stopped with SIGTERM (SIGKILL
// after a grace period).
import type { ChildProcess } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort, hasExited, spawnTracked, stopChild, waitExit } from './proc.js';

export const REPO_ROOT = fileURLToPath(new URL('../..', import.meta.url));
export const CLI_MAIN = path.join(REPO_ROOT, 'packages/cli/dist/main.js');
const READY_LINE = /onestack: ready/;
export const DEFAULT_NBD_PORT = 10809;
export const DEFAULT_API_PORT = 9090;
const OUTPUT_CHARS_MAX = 256 * 1024;

export interface DaemonOptions {
  readonly dataDir: string;
  readonly configPath?: string;
  /** Reuse ports (restart tests); fresh free ports otherwise. */
  readonly nbdPort?: number;
  readonly apiPort?: number;
  readonly readyTimeoutMs?: number;
  /** Pass no --nbd/--api: the daemon must pick SPEC's defaults 127.0.0.1:10809 and :9090. */
  readonly defaultPorts?: boolean;
  readonly env?: NodeJS.ProcessEnv;
}

export interface DaemonStatus {
  readonly volumes: readonly { name: string; layout: string; state: string; elements: readonly { name: string; kind: string; state: string; errors: number }[] }[];
  readonly elements: readonly { name: string; kind: string; state: string; errors: number; uri: string }[];
}

export function cliBuilt(): boolean {
  return existsSync(CLI_MAIN);
}

export class Daemon {
  private out = '';
  private err = '';

  private constructor(
    readonly child: ChildProcess,
    readonly nbdPort: number,
    readonly apiPort: number,
    readonly dataDir: string,
  ) {
    child.stdout?.setEncoding('utf8').on('data', (s: string) => { this.out = (this.out + s).slice(-OUTPUT_CHARS_MAX); });
    child.stderr?.setEncoding('utf8').on('data', (s: string) => { this.err = (this.err + s).slice(-OUTPUT_CHARS_MAX); });
  }

  static async start(opts: DaemonOptions): Promise<Daemon> {
    if (!cliBuilt()) throw new Error(`daemon not built: ${CLI_MAIN} is missing (run \`pnpm run build\`)`);
    const defaults = opts.defaultPorts === true;
    const nbdPort = defaults ? DEFAULT_NBD_PORT : opts.nbdPort ?? (await freePort());
    const apiPort = defaults ? DEFAULT_API_PORT : opts.apiPort ?? (await freePort());
    const args = [CLI_MAIN, 'serve', '--data-dir', opts.dataDir];
    if (!defaults) args.push('--nbd', `127.0.0.1:${nbdPort}`, '--api', `127.0.0.1:${apiPort}`);
    if (opts.configPath !== undefined) args.push('--config', opts.configPath);
    const child = spawnTracked(process.execPath, args, { env: { ...process.env, ...opts.env }, cwd: REPO_ROOT });
    const d = new Daemon(child, nbdPort, apiPort, opts.dataDir);
    await d.waitReady(opts.readyTimeoutMs ?? 30_000);
    return d;
  }

  /** nbd://127.0.0.1:PORT/NAME */
  uri(volume = 'default'): string {
    return `nbd://127.0.0.1:${this.nbdPort}/${volume}`;
  }

  /** GET /api/v1/status with the data dir's token (the shape of `onestack status --json`). */
  async status(): Promise<DaemonStatus> {
    const token = readFileSync(path.join(this.dataDir, 'api-token'), 'utf8').trim();
    const res = await fetch(`http://127.0.0.1:${this.apiPort}/api/v1/status`, { headers: { authorization: `Bearer ${token}` } });
    if (!res.ok) throw new Error(`GET /api/v1/status: ${res.status} ${await res.text()}`);
    return (await res.json()) as DaemonStatus;
  }

  get stdout(): string { return this.out; }
  get stderr(): string { return this.err; }
  get alive(): boolean { return !hasExited(this.child); }

  /** Output tail for assertion messages. */
  logs(): string {
    return `--- daemon stdout\n${this.out.slice(-3000)}\n--- daemon stderr\n${this.err.slice(-3000)}`;
  }

  private async waitReady(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      if (READY_LINE.test(this.out)) return;
      if (hasExited(this.child)) {
        throw new Error(`daemon exited (${String(this.child.exitCode ?? this.child.signalCode)}) before \`onestack: ready\`\n${this.logs()}`);
      }
      await waitExit(this.child, 50);
    }
    await stopChild(this.child, 2_000);
    throw new Error(`daemon printed no \`onestack: ready\` within ${timeoutMs} ms\n${this.logs()}`);
  }

  /** SIGTERM (or `signal`, e.g. SIGINT for Ctrl-C); SIGKILL after graceMs. */
  stop(graceMs = 15_000, signal: NodeJS.Signals = 'SIGTERM'): Promise<{ code: number | null; signal: string | null; killed: boolean }> {
    return stopChild(this.child, graceMs, signal);
  }

  /** SIGKILL at once: a crash, nothing flushed by the daemon itself. */
  async crash(): Promise<void> {
    if (this.alive) this.child.kill('SIGKILL');
    await waitExit(this.child, 10_000);
  }
}
