// onestack over a Ceph RBD element vs qemu-nbd's own rbd export of the same image, in one run
// (issue 12, docs/rbd.md "Figures"). One image of our own (created by `rbd import` of a filled
// file, removed afterwards), four systems one after the other, fio's nbd engine against each:
//   qemu-nbd-rbd      qemu-nbd --cache=none rbd:POOL/IMAGE:conf=…   (the reference, "(a)")
//   onestack-linear   a linear volume over rbd://POOL/IMAGE         (librbd in the daemon)
//   onestack-linear-gw the same with ?path=gateway                  (onestack's qemu-nbd gateway)
//   onestack-raid1    raid1 of a local file + rbd://POOL/IMAGE
//   onestack-behind   the same raid1 with the rbd leg writeBehind
// Prints a table, ratios vs qemu-nbd, mean latency, CPU per op, which rbd path each onestack
// system used (status elements[].rbd.path) and keeps bench/results/rbd-<timestamp>.json.
// Needs a running cluster: ../shared/tools/ceph-single-node.sh (CEPH_CONF=/tmp/onestack-ceph/ceph.conf).
// Build: pnpm exec tsc -p bench    Run: pnpm bench:rbd [--seconds 3] [--image-mib 256] (see --help)
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { benchApi, startBenchDaemon, type BenchDaemon } from './lib/daemon.js';
import { runFio, WORKLOADS, type Workload } from './lib/fio.js';
import { clearHeader, fillImage, syncAndWarm } from './lib/images.js';
import { idleLine, pathLines, ratioOf, REFERENCE, SYSTEMS, table, type Cell, type RbdPath, type SystemId, type SystemRecord } from './lib/rbd-report.js';
import { freePort, killAll, runCommand, startServer, stopServer, version, waitReady, type Server } from './lib/proc.js';

const REPO_ROOT = fileURLToPath(new URL('../..', import.meta.url));
const RESULTS_DIR = path.join(REPO_ROOT, 'bench', 'results');
const MiB = 1024 * 1024;
const HEADER_BYTES = 4 * MiB;
const EXPORT = 'bench';
/** librbd's watch of a process that died uncleanly lasts osd_client_watch_timeout (30 s): `rbd rm` waits that long at most. */
const REMOVE_RETRY_MS = 45_000;
const IDLE_SAMPLE_MS = 2_000;

const USAGE = `usage: pnpm bench:rbd [--seconds N] [--image-mib N] [--conf PATH] [--pool P] [--id USER] [--systems a,b] [--workloads a,b] [--max-lag-mib N] [--no-record]
  --seconds N      run time per workload after 1 s of ramp (default 3; keep it short on a shared machine)
  --image-mib N    usable size of the image (default 256; the image is 4 MiB larger: onestack's header)
  --conf PATH      ceph.conf (default $CEPH_CONF or /tmp/onestack-ceph/ceph.conf, the one-node cluster of ../shared/tools/ceph-single-node.sh)
  --pool P         pool of the bench image (default rbd); the image is POOL/bench-<time>-<pid>, removed at the end
  --id USER        Ceph user without "client." (default admin)
  --systems        ids: ${SYSTEMS.map((s) => s.id).join(',')}
  --workloads      ids: ${WORKLOADS.map((w) => w.id).join(',')}
  --max-lag-mib N  write-behind lag bound of onestack-behind (default 64)
  --no-record      do not write bench/results/rbd-<timestamp>.json`;

interface Options {
  readonly seconds: number;
  readonly imageMiB: number;
  readonly conf: string;
  readonly pool: string;
  readonly user: string;
  readonly systems: readonly SystemId[];
  readonly workloads: readonly Workload[];
  readonly maxLagMiB: number;
  readonly record: boolean;
}

function progress(msg: string): void {
  process.stderr.write(`[rbd-bench ${new Date().toISOString().slice(11, 19)}] ${msg}\n`);
}

function pick<T>(all: readonly T[], idOf: (x: T) => string, list: string | undefined, what: string): T[] {
  if (list === undefined) return [...all];
  const ids = list.split(',').map((s) => s.trim()).filter((s) => s !== '');
  const unknown = ids.filter((id) => !all.some((x) => idOf(x) === id));
  if (unknown.length > 0) throw new Error(`unknown ${what}: ${unknown.join(', ')}\n${USAGE}`);
  return all.filter((x) => ids.includes(idOf(x)));
}

function parseOptions(): Options | null {
  const { values } = parseArgs({
    options: {
      seconds: { type: 'string' }, 'image-mib': { type: 'string' }, conf: { type: 'string' }, pool: { type: 'string' }, id: { type: 'string' },
      systems: { type: 'string' }, workloads: { type: 'string' }, 'max-lag-mib': { type: 'string' }, 'no-record': { type: 'boolean' }, help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help === true) return null;
  const o: Options = {
    seconds: Number(values.seconds ?? 3), imageMiB: Number(values['image-mib'] ?? 256),
    conf: path.resolve(values.conf ?? process.env['CEPH_CONF'] ?? '/tmp/onestack-ceph/ceph.conf'),
    pool: values.pool ?? 'rbd', user: values.id ?? 'admin',
    systems: pick(SYSTEMS, (s) => s.id, values.systems, 'system').map((s) => s.id),
    workloads: pick(WORKLOADS, (w) => w.id, values.workloads, 'workload'),
    maxLagMiB: Number(values['max-lag-mib'] ?? 64), record: values['no-record'] !== true,
  };
  const name = /^[A-Za-z0-9_.+-]+$/;
  if (!(o.seconds >= 1 && o.seconds <= 600) || !(o.imageMiB >= 16 && o.imageMiB <= 65536) || !(o.maxLagMiB >= 1 && o.maxLagMiB <= 1024)
    || !name.test(o.pool) || !name.test(o.user) || /[:@=&?]/.test(o.conf)) {
    throw new Error(`bad option value\n${USAGE}`);
  }
  return o;
}

/** The bench image on the cluster, named once per run. */
interface Image { readonly o: Options; readonly name: string }

const cephArgs = (o: Options): string[] => ['-c', o.conf, '--id', o.user];
const qemuFilename = (img: Image): string => `rbd:${img.o.pool}/${img.name}:id=${img.o.user}:conf=${img.o.conf}`;
const rbdUri = (img: Image): string => `rbd://${img.o.pool}/${img.name}?conf=${img.o.conf}&id=${img.o.user}`;

async function checkCeph(o: Options): Promise<void> {
  const r = await runCommand('ceph', [...cephArgs(o), '-s', '--connect-timeout', '5'], 20_000);
  if (r.code !== 0) {
    throw new Error(`no Ceph cluster answers at ${o.conf} (start it: bash ../shared/tools/ceph-single-node.sh start)\n${(r.stderr + r.stdout).slice(-800)}`);
  }
}

/** `rbd import` of a file filled with non-zero data: the image exists and nobody reads unallocated objects. */
async function createImage(img: Image, filled: string): Promise<void> {
  const r = await runCommand('rbd', [...cephArgs(img.o), 'import', '--no-progress', filled, `${img.o.pool}/${img.name}`], 300_000);
  if (r.code !== 0) throw new Error(`rbd import ${img.o.pool}/${img.name}: ${r.stderr.slice(-800)}`);
}

/** Retries while a watcher (a gateway that went down hard) still holds the image. */
async function removeImage(img: Image): Promise<void> {
  const deadline = Date.now() + REMOVE_RETRY_MS;
  for (;;) {
    const r = await runCommand('rbd', [...cephArgs(img.o), 'rm', '--no-progress', `${img.o.pool}/${img.name}`], 60_000);
    if (r.code === 0 || /No such file|does not exist/.test(r.stderr)) return;
    if (Date.now() > deadline) { progress(`could not remove ${img.o.pool}/${img.name}: ${r.stderr.trim().slice(-300)} (rbd rm it by hand)`); return; }
    await new Promise((res) => setTimeout(res, 2_000));
  }
}

/** Zeroes onestack's 4 MiB header on the image, so every onestack system sees a fresh element. */
async function zeroRbdHeader(img: Image): Promise<void> {
  const r = await runCommand('qemu-io', ['-f', 'raw', '-c', `write -z 0 ${HEADER_BYTES}`, qemuFilename(img)], 60_000);
  if (r.code !== 0 || /error|failed/i.test(r.stdout + r.stderr)) throw new Error(`qemu-io write -z on ${img.name}: ${(r.stdout + r.stderr).slice(-800)}`);
}

/** user + system CPU seconds of `rootPid` and all its descendants (onestack's gateway is a child of the daemon). */
function treeCpuSeconds(rootPid: number | undefined, ticks: number): number {
  if (rootPid === undefined) return Number.NaN;
  const stats = new Map<number, { ppid: number; cpu: number }>();
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const s = readFileSync(`/proc/${d}/stat`, 'utf8');
      const rest = s.slice(s.lastIndexOf(')') + 2).split(' ');
      stats.set(Number(d), { ppid: Number(rest[1]), cpu: (Number(rest[11]) + Number(rest[12])) / ticks });
    } catch { /* exited meanwhile */ }
  }
  let sum = 0;
  const todo = [rootPid];
  for (let i = 0; i < todo.length && i < 10_000; i++) {
    const pid = todo[i]!;
    sum += stats.get(pid)?.cpu ?? 0;
    for (const [child, st] of stats) if (st.ppid === pid) todo.push(child);
  }
  return sum;
}

/**
 * A daemon that had to be SIGKILLed leaves its gateway running (own process group): found by the
 * pid files in DATA/rbd/ and stopped only if its command line names our image, so `rbd rm` works.
 */
function stopLeftoverGateways(dir: string, imageName: string): void {
  for (const data of readdirSync(dir).filter((d) => d.startsWith('data-'))) {
    const rbdDir = path.join(dir, data, 'rbd');
    let files: string[] = [];
    try { files = readdirSync(rbdDir).filter((f) => f.endsWith('.pid')); } catch { continue; }
    for (const f of files) {
      try {
        const pid = Number(readFileSync(path.join(rbdDir, f), 'utf8').trim());
        const cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
        if (pid > 1 && cmd.includes('qemu-nbd') && cmd.includes(`/${imageName}:`)) { process.kill(pid, 'SIGTERM'); progress(`stopped a leftover gateway (pid ${pid})`); }
      } catch { /* gone, or not ours */ }
    }
  }
}

interface Running {
  readonly server: Server;
  readonly uri: string;
  readonly daemon?: BenchDaemon;
  /** onestack's gateway qemu-nbd (status elements[].rbd.pid), to show its share of the CPU. */
  gatewayPid?: number;
}

interface Env { readonly o: Options; readonly img: Image; readonly dir: string; readonly local: string; readonly ticks: number }

async function startQemuNbd(env: Env): Promise<Running> {
  const port = await freePort();
  const server = startServer('qemu-nbd', 'qemu-nbd', ['-f', 'raw', '--cache=none', '-x', EXPORT, '-p', String(port), '-b', '127.0.0.1', '--shared=8', '-t', qemuFilename(env.img)]);
  try {
    await waitReady(server, port, 30_000);
  } catch (e) {
    await stopServer(server);
    throw e;
  }
  return { server, uri: `nbd://127.0.0.1:${port}/${EXPORT}` };
}

async function startOnestack(env: Env, id: Exclude<SystemId, 'qemu-nbd-rbd'>): Promise<Running> {
  await zeroRbdHeader(env.img);
  const via = id === 'onestack-linear-gw' ? '&path=gateway' : '';
  const lines = ['elements:', `  - { name: r0, uri: "${rbdUri(env.img)}${via}" }`];
  const linear = id === 'onestack-linear' || id === 'onestack-linear-gw';
  if (!linear) {
    await clearHeader(env.local);
    await syncAndWarm(env.local);
    lines.push(`  - { name: l0, uri: "file:${env.local}" }`);
  }
  const wb = id === 'onestack-behind' ? `, writeBehind: { element: r0, maxLagMiB: ${env.o.maxLagMiB}, drainOnFlush: true }` : '';
  const layout = linear ? 'linear, elements: [r0]' : 'raid1, elements: [l0, r0]';
  lines.push('volumes:', `  - { name: v, layout: ${layout}, boot: true${wb} }`);
  const daemon = await startBenchDaemon(env.dir, id, lines);
  return { server: daemon.server, uri: `nbd://127.0.0.1:${daemon.nbdPort}/v`, daemon };
}

interface StatusElement { name: string; state: string; stats?: { readOps: number }; rbd?: RbdPath; writeBehind?: { peakLagBytes: number } }
interface Status { elements: StatusElement[]; volumes: { name: string; state: string }[] }

async function rbdElement(d: BenchDaemon): Promise<StatusElement | undefined> {
  return ((await benchApi(d, 'GET', 'status')) as Status).elements.find((e) => e.name === 'r0');
}

/** One workload: fio, CPU of the serving process tree, and for write-behind the lag and the flush that drains it. */
async function measure(env: Env, sys: SystemId, run: Running, w: Workload): Promise<Cell> {
  const [cpu0, gw0] = [treeCpuSeconds(run.server.child.pid, env.ticks), treeCpuSeconds(run.gatewayPid, env.ticks)];
  const r = await runFio({ kind: 'nbd', uri: run.uri }, w, env.o.seconds, env.dir);
  const [cpuS, gwS] = [treeCpuSeconds(run.server.child.pid, env.ticks) - cpu0, treeCpuSeconds(run.gatewayPid, env.ticks) - gw0];
  const f = r.figures;
  const perOp = (sec: number): number => (f.ops > 0 ? (sec * 1e6) / f.ops : Number.NaN);
  const cell: Cell = { system: sys, workload: w.id, iops: f.iops, mibps: f.mibps, latMeanUs: f.latMeanUs, cpuUsPerOp: perOp(cpuS) };
  if (run.gatewayPid !== undefined) cell.gatewayCpuUsPerOp = perOp(gwS);
  if (sys === 'onestack-behind' && w.rw.includes('write') && run.daemon !== undefined) {
    cell.peakLagMiB = ((await rbdElement(run.daemon))?.writeBehind?.peakLagBytes ?? 0) / MiB;
    const t0 = performance.now();
    const fl = await runCommand('qemu-io', ['-f', 'raw', '-c', 'flush', run.uri], 120_000);
    if (fl.code !== 0) throw new Error(`qemu-io flush: ${fl.stderr.slice(-500)}`);
    cell.flushMs = performance.now() - t0;
  }
  return cell;
}

function describe(c: Cell): string {
  if (c.error !== undefined) return `${c.system} ${c.workload}: FAILED ${c.error.split('\n')[0] ?? ''}`;
  const lag = c.peakLagMiB === undefined ? '' : `, peak lag ${c.peakLagMiB.toFixed(1)} MiB, flush ${c.flushMs?.toFixed(0) ?? '?'} ms`;
  return `${c.system} ${c.workload}: ${c.iops?.toFixed(0)} IOPS, ${c.mibps?.toFixed(0)} MiB/s, mean ${c.latMeanUs?.toFixed(0)} µs, CPU ${c.cpuUsPerOp?.toFixed(1)} µs/op${lag}`;
}

async function benchOne(env: Env, sys: SystemId, stop: () => boolean): Promise<{ rec: SystemRecord; cells: Cell[] }> {
  const label = SYSTEMS.find((s) => s.id === sys)!.label;
  const rec: SystemRecord = { id: sys, label };
  const cells: Cell[] = [];
  progress(`starting ${label}`);
  let run: Running | null = null;
  try {
    run = sys === 'qemu-nbd-rbd' ? await startQemuNbd(env) : await startOnestack(env, sys);
    if (run.daemon !== undefined) rec.rbd = (await rbdElement(run.daemon))?.rbd ?? null;
    if (typeof rec.rbd?.pid === 'number') run.gatewayPid = rec.rbd.pid;
    progress(`${sys} ready at ${run.uri} (pid ${String(run.server.child.pid)})${rec.rbd === undefined || rec.rbd === null ? '' : `, rbd path ${rec.rbd.path} (${rec.rbd.state}, pid ${String(rec.rbd.pid)})`}`);
    // A fixed cost (timers, probes) would inflate CPU per op at a few hundred IOPS: measure it apart.
    const idle0 = treeCpuSeconds(run.server.child.pid, env.ticks);
    await new Promise((res) => setTimeout(res, IDLE_SAMPLE_MS));
    rec.idleCpuPercent = ((treeCpuSeconds(run.server.child.pid, env.ticks) - idle0) * 100_000) / IDLE_SAMPLE_MS;
    for (const w of env.o.workloads) {
      if (stop()) break;
      const cell = await measure(env, sys, run, w).catch((e: unknown): Cell => ({ system: sys, workload: w.id, error: String(e) }));
      cells.push(cell);
      progress(describe(cell));
    }
    if (run.daemon !== undefined) {
      // A leg that timed out mid-run would flatter the raid1 rows (writes on the local leg only): say so.
      const st = (await benchApi(run.daemon, 'GET', 'status')) as Status;
      const reads = (n: string): number => st.elements.find((e) => e.name === n)?.stats?.readOps ?? 0;
      const share = reads('r0') + reads('l0') > 0 ? `, ${((100 * reads('r0')) / (reads('r0') + reads('l0'))).toFixed(0)} % of element reads from r0` : '';
      const r0 = st.elements.find((e) => e.name === 'r0');
      rec.endState = `volume ${st.volumes[0]?.state ?? '?'}, r0 ${r0?.state ?? '?'} (rbd path ${r0?.rbd?.path ?? "?"}, restarts ${String(r0?.rbd?.restarts ?? "?")})${share}`;
    }
  } catch (e) {
    rec.error = String(e);
    progress(`${sys}: failed: ${String(e).split('\n').slice(0, 4).join(' | ')}`);
  } finally {
    if (run !== null) await stopServer(run.server, 20_000);
  }
  return { rec, cells };
}

async function report(env: Env, recs: readonly SystemRecord[], cells: readonly Cell[], startedMs: number): Promise<void> {
  const o = env.o;
  const host = {
    cpus: os.cpus().length, kernel: os.release(), node: process.version, fio: await version('fio'), qemuNbd: await version('qemu-nbd'),
    ceph: (await runCommand('ceph', ['--version'], 10_000)).stdout.trim(), load1: os.loadavg()[0],
    commit: (await runCommand('git', ['-C', REPO_ROOT, 'rev-parse', '--short', 'HEAD'], 5_000)).stdout.trim(),
  };
  console.log(`\nimage ${o.pool}/${env.img.name} (${o.imageMiB + HEADER_BYTES / MiB} MiB, imported from a filled file), ceph ${o.conf}; fio --ioengine=nbd, ${o.seconds} s per workload after 1 s of ramp; ${host.cpus} CPUs, load ${host.load1?.toFixed(1)}\n`);
  console.log(table(o.workloads, recs, cells));
  console.log(`\n${idleLine(recs)}`);
  console.log(`\nrbd path of onestack's rbd:// element (status elements[].rbd):\n${pathLines(recs).join('\n')}`);
  const elapsedS = (Date.now() - startedMs) / 1000;
  if (o.record) {
    mkdirSync(RESULTS_DIR, { recursive: true });
    const file = path.join(RESULTS_DIR, `rbd-${new Date().toISOString().replace(/[:.]/g, '-')}.json`);
    const ratios = recs.filter((r) => r.id !== REFERENCE).flatMap((r) => o.workloads.map((w) => ({ system: r.id, workload: w.id, versus: REFERENCE, ratio: ratioOf(cells, r.id, w) ?? null })));
    const record = { date: new Date().toISOString(), seconds: o.seconds, imageMiB: o.imageMiB, pool: o.pool, image: env.img.name, elapsedS, host, workloads: o.workloads, systems: recs, results: cells, ratios };
    await writeFile(file, JSON.stringify(record, null, 2) + '\n');
    console.log(`\nJSON: ${path.relative(process.cwd(), file)}`);
  }
  console.log(`total elapsed: ${elapsedS.toFixed(0)} s`);
}

async function main(): Promise<number> {
  const startedMs = Date.now();
  const o = parseOptions();
  if (o === null) { console.log(USAGE); return 0; }
  for (const tool of ['fio', 'qemu-nbd', 'qemu-io', 'rbd', 'ceph']) if ((await version(tool)) === 'missing') throw new Error(`${tool} is missing (see ../shared/PEERS.md)`);
  if (!readdirSync('/usr/lib/x86_64-linux-gnu/qemu', { withFileTypes: true }).some((d) => d.name === 'block-rbd.so')) throw new Error("qemu's rbd driver is missing (apt-get install qemu-block-extra)");
  await checkCeph(o);
  const dir = mkdtempSync(path.join(os.tmpdir(), 'onestack-rbd-bench-'));
  const img: Image = { o, name: `bench-${Date.now().toString(36)}-${process.pid}` };
  const env: Env = { o, img, dir, local: path.join(dir, 'local.img'), ticks: Number((await runCommand('getconf', ['CLK_TCK'], 5_000)).stdout.trim()) || 100 };
  // First Ctrl-C: finish the current workload, stop the servers cleanly (a SIGKILLed gateway would
  // keep its watch on the image for 30 s) and remove the image; a second one kills everything.
  let interrupted = false;
  const onSignal = (): void => {
    if (interrupted) { killAll(); process.exit(130); }
    interrupted = true;
    progress('interrupted: stopping after this workload (again to kill at once)');
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  let created = false;
  try {
    const bytes = o.imageMiB * MiB + HEADER_BYTES;
    progress(`filling ${bytes / MiB} MiB in ${env.local} and importing it as ${o.pool}/${img.name}`);
    await fillImage(env.local, bytes);
    created = true; // a partial import leaves an image too
    await createImage(img, env.local);
    const recs: SystemRecord[] = [];
    const cells: Cell[] = [];
    for (const sys of o.systems) {
      if (interrupted) break;
      const r = await benchOne(env, sys, () => interrupted);
      recs.push(r.rec);
      cells.push(...r.cells);
    }
    await report(env, recs, cells, startedMs);
    if (interrupted) return 130;
    return cells.some((c) => c.system !== REFERENCE && c.error === undefined) ? 0 : 1;
  } finally {
    killAll();
    stopLeftoverGateways(dir, img.name);
    if (created) await removeImage(img);
    rmSync(dir, { recursive: true, force: true });
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}

main().then((code) => { process.exitCode = code; }, (e: unknown) => {
  killAll();
  console.error(`rbd-bench: error: ${e instanceof Error ? e.message : String(e)}`);
  process.exitCode = 2;
});
