// `onestack bench [--volume V | --uri URI] [--workload W|all] [--qd N] [--seconds S] [--json]`:
// fio's nbd engine against a URI, or against the running daemon's NBD export of a volume.
import { spawn } from 'node:child_process';
import { formatHostPort, helpHint, parseChoice, parseCommandArgs, parseHostPort, parsePositiveInt, type HostPort } from '../args.js';
import { CliError, usageError, type ExitCode } from '../errors.js';
import { HELP } from '../help.js';
import type { CliIo } from '../io.js';
import { progressBar, table } from '../render.js';
import { CLIENT_OPTIONS, clientFor } from './common.js';

// Workloads and fio arguments mirror bench/lib/fio.ts (not imported: bench/ has its own tsconfig).
export interface Workload {
  readonly id: 'randread4k' | 'seqread1m' | 'randwrite4k' | 'seqwrite1m';
  readonly rw: 'randread' | 'read' | 'randwrite' | 'write';
  readonly bs: string;
  readonly iodepth: number;
}
export const WORKLOADS: readonly Workload[] = [
  { id: 'randread4k', rw: 'randread', bs: '4k', iodepth: 32 },
  { id: 'seqread1m', rw: 'read', bs: '1m', iodepth: 8 },
  { id: 'randwrite4k', rw: 'randwrite', bs: '4k', iodepth: 32 },
  { id: 'seqwrite1m', rw: 'write', bs: '1m', iodepth: 8 },
];
const WORKLOAD_CHOICES = [...WORKLOADS.map((w) => w.id), 'all'] as const;
const NBD_DEFAULT = '127.0.0.1:10809';
const SECONDS_DEFAULT = 8;
const SECONDS_MAX = 86_400;
const QD_MAX = 1024;
/** fio's --ramp_time: warm-up seconds not counted in the figures (as bench/lib/fio.ts). */
const RAMP_SECONDS = 1;
const URI_SCHEMES = /^(nbds?|nbds?\+unix):\/\//;
const TICK_MS = 250;
const CLEAR_LINE_END = '\x1b[K';

export interface BenchResult {
  readonly workload: Workload['id'];
  readonly rw: Workload['rw'];
  readonly bs: string;
  readonly qd: number;
  readonly seconds: number;
  readonly iops: number;
  readonly mibps: number;
  readonly latMeanUs: number;
  readonly ops: number;
}

export async function benchCommand(argv: readonly string[], io: CliIo): Promise<ExitCode> {
  const args = parseCommandArgs('bench', argv, {
    ...CLIENT_OPTIONS, volume: { type: 'string' }, uri: { type: 'string' }, nbd: { type: 'string' },
    workload: { type: 'string' }, qd: { type: 'string' }, seconds: { type: 'string' }, json: { type: 'boolean' },
  });
  const v = args.values;
  if (v['help'] === true) { io.stdout(HELP['bench'] ?? ''); return 0; }
  if (args.positionals.length > 0) throw usageError(`unexpected argument "${args.positionals[0]}"`, 'bench', helpHint('bench'));
  const volume = typeof v['volume'] === 'string' ? v['volume'] : undefined;
  const uriFlag = typeof v['uri'] === 'string' ? v['uri'] : undefined;
  if ((volume === undefined) === (uriFlag === undefined)) {
    throw usageError('give exactly one of --volume V or --uri URI', 'bench', 'for example: onestack bench --volume default');
  }
  if (uriFlag !== undefined && !URI_SCHEMES.test(uriFlag)) {
    throw usageError(`--uri wants an NBD URI, got "${uriFlag}"`, '--uri', 'nbd://HOST[:PORT]/EXPORT, nbds://..., nbd+unix:///EXPORT?socket=PATH');
  }
  if (volume === '') throw usageError('--volume wants a volume name', '--volume', helpHint('bench'));
  if (uriFlag !== undefined && typeof v['nbd'] === 'string') throw usageError('--nbd only goes with --volume', 'bench', 'put the address in --uri');
  const nbdFlag = typeof v['nbd'] === 'string' ? parseHostPort(v['nbd'], '--nbd', false) : undefined;
  const choice = typeof v['workload'] === 'string' ? parseChoice(v['workload'], '--workload', WORKLOAD_CHOICES) : 'randread4k';
  const qd = typeof v['qd'] === 'string' ? parsePositiveInt(v['qd'], '--qd', QD_MAX) : undefined;
  const seconds = typeof v['seconds'] === 'string' ? parsePositiveInt(v['seconds'], '--seconds', SECONDS_MAX) : SECONDS_DEFAULT;
  const json = v['json'] === true;
  const workloads = choice === 'all' ? WORKLOADS : WORKLOADS.filter((w) => w.id === choice);

  const uri = uriFlag ?? await volumeUri(volume ?? '', nbdFlag, v, io);
  for (const w of workloads) {
    if (w.rw.includes('write')) io.stderr(`onestack: warning: ${w.id} overwrites the data of ${uri}\n`);
  }
  // Progress goes to stdout, except with --json (stdout is the JSON then).
  const show = json ? io.stderr : io.stdout;
  const tty = io.stdoutIsTty && !json;
  const results: BenchResult[] = [];
  for (const w of workloads) results.push(await runWorkload(uri, w, qd ?? w.iodepth, seconds, io.env, show, tty));
  if (json) {
    io.stdout(JSON.stringify({ uri, seconds, results }, null, 2) + '\n');
  } else {
    io.stdout(table(['WORKLOAD', 'QD', 'IOPS', 'MiB/s', 'LAT MEAN µs'], results.map((r) =>
      [r.workload, String(r.qd), r.iops.toFixed(0), r.mibps.toFixed(1), r.latMeanUs.toFixed(1)])));
  }
  return 0;
}

/** nbd://HOST:PORT/V: the address from --nbd, else from the daemon's status, else the default. */
async function volumeUri(volume: string, nbdFlag: HostPort | undefined, values: Parameters<typeof clientFor>[0], io: CliIo): Promise<string> {
  const status = await clientFor(values, io).status();
  if (!status.volumes.some((x) => x.name === volume)) {
    throw new CliError(1, `no volume "${volume}"`, 'bench', 'list them with: onestack volume list');
  }
  // The daemon reports where it listens (status.nbd.listen: "HOST:PORT" or "unix:PATH"); older ones do not.
  const listen = status.nbd?.listen ?? [];
  const first = listen.find((a) => !a.startsWith('unix:')) ?? listen.find((a) => a.length > 'unix:'.length);
  if (nbdFlag === undefined && first?.startsWith('unix:') === true) {
    return `nbd+unix:///${encodeURIComponent(volume)}?socket=${encodeURIComponent(first.slice('unix:'.length))}`;
  }
  const address = nbdFlag ?? parseHostPort(first ?? NBD_DEFAULT, '--nbd', false);
  return `nbd://${formatHostPort(address)}/${encodeURIComponent(volume)}`;
}

interface FioSide { iops: number; bw_bytes: number; total_ios: number; lat_ns?: { mean: number } }
interface FioJson { jobs?: Array<{ error: number; read: FioSide; write: FioSide }> }

async function runWorkload(uri: string, w: Workload, qd: number, seconds: number, env: CliIo['env'],
  show: (text: string) => void, tty: boolean): Promise<BenchResult> {
  const fioArgs = [
    `--name=${w.id}`, '--ioengine=nbd', `--uri=${uri}`, `--rw=${w.rw}`, `--bs=${w.bs}`, `--iodepth=${qd}`,
    `--runtime=${seconds}`, `--ramp_time=${RAMP_SECONDS}`, '--time_based', '--numjobs=1', '--output-format=json',
  ];
  const total = seconds + RAMP_SECONDS;
  const startedMs = Date.now();
  const line = (elapsed: number): string =>
    `${progressBar((elapsed / total) * 100)} ${Math.min(elapsed, total).toFixed(0)}/${total} s  ${w.id} QD${qd}`;
  const timer = tty ? setInterval(() => { show(`\r${line((Date.now() - startedMs) / 1000)}${CLEAR_LINE_END}`); }, TICK_MS) : undefined;
  if (tty) show(line(0));
  let out: { code: number | null; stdout: string; stderr: string };
  try {
    out = await spawnFio(fioArgs, env, (total + 60) * 1000);
  } finally {
    if (timer !== undefined) clearInterval(timer);
  }
  show(tty ? `\r${line(total)}${CLEAR_LINE_END}\n` : `${line(total)}\n`);
  if (out.code !== 0) {
    throw new CliError(1, `fio ${w.id} failed (exit ${String(out.code)}): ${lastLine(out.stderr || out.stdout)}`, uri, 'is the NBD server running and the export name right?');
  }
  let parsed: FioJson;
  try {
    parsed = JSON.parse(out.stdout.slice(Math.max(0, out.stdout.indexOf('{')))) as FioJson;
  } catch {
    throw new CliError(1, `fio ${w.id}: cannot parse its JSON output`, uri);
  }
  const job = parsed.jobs?.[0];
  if (job === undefined || job.error !== 0) throw new CliError(1, `fio ${w.id}: job error ${String(job?.error)}`, uri);
  const side = w.rw.includes('read') ? job.read : job.write;
  return {
    workload: w.id, rw: w.rw, bs: w.bs, qd, seconds, iops: side.iops, mibps: side.bw_bytes / (1024 * 1024),
    latMeanUs: (side.lat_ns?.mean ?? Number.NaN) / 1000, ops: side.total_ios,
  };
}

function lastLine(text: string): string {
  return text.trim().split('\n').at(-1)?.slice(0, 300) ?? '';
}

function spawnFio(args: readonly string[], env: CliIo['env'], timeoutMs: number): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn('fio', args, { env: { ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (s: string) => { stdout += s; });
    child.stderr.setEncoding('utf8').on('data', (s: string) => { stderr = (stderr + s).slice(-8000); });
    const timer = setTimeout(() => { child.kill('SIGKILL'); }, timeoutMs);
    child.on('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      reject(err.code === 'ENOENT'
        ? new CliError(1, 'fio is not installed (or not on PATH)', 'bench', 'install it: apt-get install fio')
        : new CliError(1, `cannot run fio: ${err.message}`, 'bench'));
    });
    child.on('close', (code) => { clearTimeout(timer); resolve({ code, stdout, stderr }); });
  });
}
