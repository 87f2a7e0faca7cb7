// One system through the workloads: start it, measure each workload (figures, CPU per op, peak
// RSS at QD32, copies per request for onestack), stop it and its helpers by PID.
import { copyRates, daemonCopies, type CopyRates } from './copies.js';
import { isQd32, type Measured, type Workload } from './fio.js';
import { clearHeader, syncAndWarm } from './images.js';
import { cpuSeconds, stopServer } from './proc.js';
import { sampleRss } from './rss.js';
import { isOnestack, type Running, type StartContext, type SystemDef } from './systems.js';
import type { Cell } from './targets.js';

export interface RunOptions {
  readonly ctx: StartContext;
  readonly workloads: readonly Workload[];
  readonly seconds: number;
  /** Clock ticks per second (getconf CLK_TCK), for /proc CPU times. */
  readonly ticks: number;
  readonly progress: (msg: string) => void;
}

/** user + system CPU seconds of the system: its server plus helpers of its own (a remote leg's nbdkit). */
function systemCpuSeconds(running: Running, ticks: number): number {
  const procs = [...(running.server === undefined ? [] : [running.server]), ...(running.aux ?? [])];
  return procs.reduce((sum, s) => sum + cpuSeconds(s.child.pid, ticks), 0);
}

/** The server first (it is their client), then its helpers. */
async function stopSystem(running: Running): Promise<void> {
  if (running.server !== undefined) await stopServer(running.server);
  for (const s of running.aux ?? []) await stopServer(s);
}

async function measureOne(sys: SystemDef, running: Running, w: Workload, o: RunOptions): Promise<Cell> {
  const api = running.api;
  const copies0 = api === undefined ? null : await daemonCopies(o.ctx.repoRoot, api);
  const cpu0 = systemCpuSeconds(running, o.ticks);
  const rss = isQd32(w) && running.server !== undefined ? sampleRss(running.server.child.pid) : null;
  let m: Measured;
  let rssPeakBytes: number | undefined;
  try {
    m = await running.measure(w, o.seconds, o.ctx.workDir);
  } finally {
    // Stopped on failure too: a sampler left running would keep the bench alive.
    rssPeakBytes = rss?.stop();
  }
  const cpuS = running.server === undefined ? (m.selfCpuSeconds ?? Number.NaN) : systemCpuSeconds(running, o.ticks) - cpu0;
  let copies: CopyRates | null | undefined;
  if (api !== undefined) copies = copyRates(copies0, await daemonCopies(o.ctx.repoRoot, api));
  else if (isOnestack(sys)) copies = m.copies ?? null;
  const f = m.figures;
  return {
    system: sys.id, workload: w.id, figures: f, cpuUsPerOp: f.ops > 0 ? (cpuS * 1e6) / f.ops : Number.NaN,
    ...(rssPeakBytes === undefined ? {} : { rssPeakBytes }), ...(copies === undefined ? {} : { copies }),
  };
}

function describe(c: Cell, w: Workload): string {
  const f = c.figures!;
  const rss = c.rssPeakBytes === undefined ? '' : `, RSS ${(c.rssPeakBytes / (1024 * 1024)).toFixed(0)} MiB`;
  const copies = c.copies === undefined ? '' : `, copies/request ${c.copies === null ? 'n/a' : c.copies.copiesPerRequest.toFixed(2)}`;
  return `${c.system} ${w.title}: ${f.iops.toFixed(0)} IOPS, ${f.mibps.toFixed(0)} MiB/s, mean latency ${f.latMeanUs.toFixed(0)} µs${rss}${copies}`;
}

export async function benchSystem(sys: SystemDef, o: RunOptions): Promise<Cell[]> {
  const cells: Cell[] = [];
  for (const img of o.ctx.images.slice(0, sys.onestackImages ?? 0)) await clearHeader(img);
  for (const img of o.ctx.images) await syncAndWarm(img);
  o.progress(`starting ${sys.label}`);
  let running: Running | null = null;
  try {
    running = await sys.start(o.ctx);
    const pids = [running.server, ...(running.aux ?? [])].filter((s) => s !== undefined).map((s) => `${s.name} pid ${String(s.child.pid)}`);
    o.progress(`${sys.id} ready: ${running.where}${pids.length > 0 ? ` (${pids.join(', ')})` : ''}`);
    for (const w of o.workloads) {
      try {
        const cell = await measureOne(sys, running, w, o);
        cells.push(cell);
        o.progress(describe(cell, w));
      } catch (e) {
        cells.push({ system: sys.id, workload: w.id, error: String(e) });
        o.progress(`${sys.id} ${w.title}: FAILED ${String(e).split('\n')[0] ?? ''}`);
      }
    }
  } catch (e) {
    for (const w of o.workloads) cells.push({ system: sys.id, workload: w.id, error: String(e) });
    o.progress(`${sys.id}: could not start: ${String(e).split('\n').slice(0, 6).join(' | ')}`);
  } finally {
    if (running !== null) await stopSystem(running);
  }
  return cells;
}
