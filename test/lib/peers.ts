// Thin wrappers over the real NBD clients, with timeouts and readable failures.
import { run, runOk, type RunResult } from './proc.js';

export interface NbdinfoExport {
  readonly 'export-name': string;
  readonly 'export-size': number;
  readonly is_read_only: boolean;
  readonly can_flush: boolean;
  readonly can_fua: boolean;
  readonly can_trim: boolean;
  readonly can_zero: boolean;
  readonly can_cache?: boolean;
  readonly can_multi_conn: boolean;
  readonly block_size_minimum?: number;
  readonly block_size_preferred?: number;
  readonly block_size_maximum?: number;
  readonly description?: string;
}

export interface NbdinfoReport {
  readonly protocol: string;
  readonly structured: boolean;
  readonly exports: readonly NbdinfoExport[];
}

export async function nbdinfo(uri: string, extra: readonly string[] = []): Promise<NbdinfoReport> {
  const r = await runOk('nbdinfo', ['--json', ...extra, uri], { timeoutMs: 20_000 });
  return JSON.parse(r.stdout) as NbdinfoReport;
}

export async function exportSize(uri: string): Promise<number> {
  const r = await runOk('nbdinfo', ['--size', uri], { timeoutMs: 20_000 });
  return Number(r.stdout.trim());
}

/** One qemu-io process (one NBD connection) running the given commands in order. */
export function qemuIo(uri: string, commands: readonly string[], timeoutMs = 60_000): Promise<RunResult> {
  const args = ['-f', 'raw'];
  for (const c of commands) args.push('-c', c);
  args.push(uri);
  return run('qemu-io', args, { timeoutMs });
}

/** qemu-io exits 1 on a failed command; its output also says so. */
export function qemuIoFailed(r: RunResult): boolean {
  return r.code !== 0 || /Pattern verification failed|failed:|error/i.test(r.stdout + r.stderr);
}

export function nbdcopy(src: string, dst: string, extra: readonly string[] = [], timeoutMs = 180_000): Promise<RunResult> {
  return run('nbdcopy', [...extra, src, dst], { timeoutMs });
}

export interface FioJob {
  readonly jobname: string;
  readonly error: number;
  readonly read: { readonly io_bytes: number; readonly iops: number; readonly bw_bytes: number };
  readonly write: { readonly io_bytes: number; readonly iops: number; readonly bw_bytes: number };
}

/** fio in `cwd` (it may leave *.state files there), never saving verify state. */
export async function fio(args: readonly string[], cwd: string, timeoutMs = 240_000): Promise<{ result: RunResult; jobs: readonly FioJob[] }> {
  const result = await run('fio', [...args, '--verify_state_save=0', '--output-format=json'], { timeoutMs, cwd });
  let jobs: readonly FioJob[] = [];
  try {
    // fio may print warnings before the JSON document.
    const start = result.stdout.indexOf('{');
    jobs = (JSON.parse(result.stdout.slice(Math.max(0, start))) as { jobs: FioJob[] }).jobs;
  } catch {
    jobs = [];
  }
  return { result, jobs };
}
