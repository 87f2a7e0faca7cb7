// The four workloads of issue 3, run with fio's nbd engine against one NBD URI.
import { runCommand } from './proc.js';

export interface Workload {
  readonly id: 'randread4k' | 'seqread1m' | 'randwrite4k' | 'seqwrite1m';
  readonly title: string;
  readonly rw: 'randread' | 'read' | 'randwrite' | 'write';
  readonly bs: string;
  readonly iodepth: number;
  /** The figure the table shows: IOPS for small blocks, MiB/s for large ones. */
  readonly headline: 'iops' | 'mibps';
}

export const WORKLOADS: readonly Workload[] = [
  { id: 'randread4k', title: '4k randread QD32', rw: 'randread', bs: '4k', iodepth: 32, headline: 'iops' },
  { id: 'seqread1m', title: '1M seq read QD8', rw: 'read', bs: '1m', iodepth: 8, headline: 'mibps' },
  { id: 'randwrite4k', title: '4k randwrite QD32', rw: 'randwrite', bs: '4k', iodepth: 32, headline: 'iops' },
  { id: 'seqwrite1m', title: '1M seq write QD8', rw: 'write', bs: '1m', iodepth: 8, headline: 'mibps' },
];

export interface FioFigures {
  readonly iops: number;
  readonly mibps: number;
  readonly latMeanUs: number;
  readonly ops: number;
}

interface FioSide { iops: number; bw_bytes: number; total_ios: number; lat_ns?: { mean: number } }
interface FioJson { jobs: Array<{ error: number; read: FioSide; write: FioSide }> }

export async function runFio(uri: string, w: Workload, seconds: number, cwd: string): Promise<FioFigures> {
  const args = [
    `--name=${w.id}`, '--ioengine=nbd', `--uri=${uri}`, `--rw=${w.rw}`, `--bs=${w.bs}`, `--iodepth=${w.iodepth}`,
    `--runtime=${seconds}`, '--ramp_time=1', '--time_based', '--numjobs=1', '--output-format=json',
  ];
  const r = await runCommand('fio', args, (seconds + 60) * 1000, cwd);
  if (r.code !== 0) throw new Error(`fio ${w.id} on ${uri}: exit ${String(r.code)}\n${r.stderr.slice(-2000)}${r.stdout.slice(-1000)}`);
  const json = JSON.parse(r.stdout.slice(Math.max(0, r.stdout.indexOf('{')))) as FioJson;
  const job = json.jobs[0];
  if (job === undefined || job.error !== 0) throw new Error(`fio ${w.id} on ${uri}: job error ${String(job?.error)}`);
  const side = w.rw.includes('read') ? job.read : job.write;
  return { iops: side.iops, mibps: side.bw_bytes / (1024 * 1024), latMeanUs: (side.lat_ns?.mean ?? Number.NaN) / 1000, ops: side.total_ios };
}
