// The four workloads of issue 3, run with fio against one NBD URI (engine nbd) or straight on
// an image file (engine io_uring: the limit every server is measured against).
import type { CopyRates } from './copies.js';
import { runCommand } from './proc.js';

export interface Workload {
  readonly id: 'randread4k' | 'seqread1m' | 'randwrite4k' | 'seqwrite1m';
  readonly title: string;
  readonly rw: 'randread' | 'read' | 'randwrite' | 'write';
  readonly bs: string;
  readonly bsBytes: number;
  readonly iodepth: number;
  /** The figure the table shows: IOPS for small blocks, MiB/s for large ones. */
  readonly headline: 'iops' | 'mibps';
}

export const WORKLOADS: readonly Workload[] = [
  { id: 'randread4k', title: '4k randread QD32', rw: 'randread', bs: '4k', bsBytes: 4096, iodepth: 32, headline: 'iops' },
  { id: 'seqread1m', title: '1M seq read QD8', rw: 'read', bs: '1m', bsBytes: 1 << 20, iodepth: 8, headline: 'mibps' },
  { id: 'randwrite4k', title: '4k randwrite QD32', rw: 'randwrite', bs: '4k', bsBytes: 4096, iodepth: 32, headline: 'iops' },
  { id: 'seqwrite1m', title: '1M seq write QD8', rw: 'write', bs: '1m', bsBytes: 1 << 20, iodepth: 8, headline: 'mibps' },
];

/** Seconds fio (and the embedded load) runs before it starts counting. */
export const RAMP_SECONDS = 1;

export interface FioFigures {
  readonly iops: number;
  readonly mibps: number;
  readonly latMeanUs: number;
  readonly ops: number;
}

/** What one workload on one system measured. */
export interface Measured {
  readonly figures: FioFigures;
  /** CPU seconds of the measuring process itself, for systems without a server of their own (raw fio). */
  readonly selfCpuSeconds?: number;
  /** Copies per request, from an in-process engine's status (the embedded system); null: not reported. */
  readonly copies?: CopyRates | null;
}

export function headline(f: FioFigures, w: Workload): number {
  return w.headline === 'iops' ? f.iops : f.mibps;
}

export function isQd32(w: Workload): boolean {
  return w.iodepth === 32;
}

export type FioTarget =
  | { readonly kind: 'nbd'; readonly uri: string }
  | { readonly kind: 'file'; readonly path: string; readonly direct: boolean };

interface FioSide { iops: number; bw_bytes: number; total_ios: number; lat_ns?: { mean: number } }
interface FioJson { jobs: Array<{ error: number; read: FioSide; write: FioSide; usr_cpu: number; sys_cpu: number; job_runtime: number }> }

function targetArgs(t: FioTarget): string[] {
  if (t.kind === 'nbd') return ['--ioengine=nbd', `--uri=${t.uri}`];
  // --invalidate=0: fio drops the file's page cache before each job by default, which would turn
  // the page-cache limit into a disk figure and leave the next system a cold cache.
  return ['--ioengine=io_uring', `--filename=${t.path}`, `--direct=${t.direct ? 1 : 0}`, '--invalidate=0'];
}

export async function runFio(target: FioTarget, w: Workload, seconds: number, cwd: string): Promise<Measured> {
  const where = target.kind === 'nbd' ? target.uri : target.path;
  const args = [
    `--name=${w.id}`, ...targetArgs(target), `--rw=${w.rw}`, `--bs=${w.bs}`, `--iodepth=${w.iodepth}`,
    `--runtime=${seconds}`, `--ramp_time=${RAMP_SECONDS}`, '--time_based', '--numjobs=1', '--output-format=json',
  ];
  const r = await runCommand('fio', args, (seconds + 60) * 1000, cwd);
  if (r.code !== 0) throw new Error(`fio ${w.id} on ${where}: exit ${String(r.code)}\n${r.stderr.slice(-2000)}${r.stdout.slice(-1000)}`);
  const json = JSON.parse(r.stdout.slice(Math.max(0, r.stdout.indexOf('{')))) as FioJson;
  const job = json.jobs[0];
  if (job === undefined || job.error !== 0) throw new Error(`fio ${w.id} on ${where}: job error ${String(job?.error)}`);
  const side = w.rw.includes('read') ? job.read : job.write;
  const figures = { iops: side.iops, mibps: side.bw_bytes / (1024 * 1024), latMeanUs: (side.lat_ns?.mean ?? Number.NaN) / 1000, ops: side.total_ios };
  // usr_cpu and sys_cpu are percentages of job_runtime (ms), which excludes the ramp.
  const selfCpuSeconds = ((job.usr_cpu + job.sys_cpu) / 100) * (job.job_runtime / 1000);
  return target.kind === 'file' ? { figures, selfCpuSeconds } : { figures };
}
