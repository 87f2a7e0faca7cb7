// One command, one run, the same image file(s), four workloads (4k randread QD32, 1M seq read
// QD8, 4k randwrite QD32, 1M seq write QD8) on: raw fio on the file (the limit), qemu-nbd,
// nbdkit, qemu-storage-daemon (a plain file node and quorums), the onestack daemon (linear, raid1,
// raid1 of a file + nbdkit) and the onestack engine embedded in a process of its own. Prints a
// table with ratios, peak RSS at QD32, copies per request and the issue-6 targets; keeps the
// JSON and a PNG plot in bench/results/.
// Build: pnpm exec tsc -p bench    Run: pnpm bench [--seconds N | --quick] (see bench/README.md)
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { WORKLOADS, type Workload } from './lib/fio.js';
import { fillImage } from './lib/images.js';
import { writePlot } from './lib/plot.js';
import { killAll, runCommand, version } from './lib/proc.js';
import { table } from './lib/report.js';
import { benchSystem } from './lib/run-system.js';
import { SYSTEMS, isOnestack, type StartContext, type SystemDef } from './lib/systems.js';
import { judge, ratios, targetsText, type Cell } from './lib/targets.js';

const REPO_ROOT = fileURLToPath(new URL('../..', import.meta.url));
const RESULTS_DIR = path.join(REPO_ROOT, 'bench', 'results');

const USAGE = `usage: pnpm bench [--seconds N] [--quick] [--image-mib N] [--systems a,b] [--workloads a,b] [--dir DIR] [--keep]
  --seconds N     run time per workload, after 1 s of ramp (default 8)
  --quick         3 s per workload
  --image-mib N   size of each image file (default 2048)
  --systems       ids: ${SYSTEMS.map((s) => s.id).join(',')}
  --workloads     ids: ${WORKLOADS.map((w) => w.id).join(',')}
  --dir DIR       where the images go (default: the OS temp dir)
  --keep          keep the images afterwards`;

function progress(msg: string): void {
  process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${msg}\n`);
}

function pick<T extends { id: string }>(all: readonly T[], list: string | undefined, what: string): T[] {
  if (list === undefined) return [...all];
  const ids = list.split(',').map((s) => s.trim()).filter((s) => s !== '');
  const unknown = ids.filter((id) => !all.some((x) => x.id === id));
  if (unknown.length > 0) throw new Error(`unknown ${what}: ${unknown.join(', ')}`);
  return all.filter((x) => ids.includes(x.id));
}

interface Options {
  readonly seconds: number;
  readonly imageMiB: number;
  readonly systems: readonly SystemDef[];
  readonly workloads: readonly Workload[];
  readonly dir: string | undefined;
  readonly keep: boolean;
}

function parseOptions(): Options | null {
  const { values } = parseArgs({
    options: {
      seconds: { type: 'string' }, quick: { type: 'boolean' }, 'image-mib': { type: 'string' }, systems: { type: 'string' },
      workloads: { type: 'string' }, dir: { type: 'string' }, keep: { type: 'boolean' }, help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help === true) return null;
  const seconds = values.quick === true ? 3 : Number(values.seconds ?? 8);
  const imageMiB = Number(values['image-mib'] ?? 2048);
  if (!(seconds >= 1 && seconds <= 600) || !(imageMiB >= 64 && imageMiB <= 65536)) throw new Error(`bad --seconds or --image-mib\n${USAGE}`);
  return {
    seconds, imageMiB, systems: pick(SYSTEMS, values.systems, 'system'), workloads: pick(WORKLOADS, values.workloads, 'workload'),
    dir: values.dir, keep: values.keep === true,
  };
}

async function hostInfo(): Promise<Record<string, string | number>> {
  return {
    cpus: os.cpus().length, cpuModel: os.cpus()[0]?.model ?? '', kernel: os.release(), node: process.version,
    fio: await version('fio'), qemuNbd: await version('qemu-nbd'), nbdkit: await version('nbdkit'), qsd: await version('qemu-storage-daemon'),
    commit: (await runCommand('git', ['-C', REPO_ROOT, 'rev-parse', '--short', 'HEAD'], 5_000)).stdout.trim(),
  };
}

/** Fills the images, then runs each available system through the workloads, one at a time. */
async function runAll(o: Options, workDir: string): Promise<{ ran: SystemDef[]; cells: Cell[] }> {
  const images: [string, string] = [path.join(workDir, 'img0.raw'), path.join(workDir, 'img1.raw')];
  progress(`filling ${images.length} images of ${o.imageMiB} MiB in ${workDir}`);
  for (const img of images) await fillImage(img, o.imageMiB * 1024 * 1024);
  const ticks = Number((await runCommand('getconf', ['CLK_TCK'], 5_000)).stdout.trim()) || 100;
  const ctx: StartContext = { images, workDir, repoRoot: REPO_ROOT };
  const cells: Cell[] = [];
  const ran: SystemDef[] = [];
  for (const sys of o.systems) {
    const why = sys.unavailable();
    if (why !== null) { progress(`skipping ${sys.id}: ${why}`); continue; }
    ran.push(sys);
    cells.push(...(await benchSystem(sys, { ctx, workloads: o.workloads, seconds: o.seconds, ticks, progress })));
  }
  return { ran, cells };
}

/** Prints the table and the targets, writes the JSON record and the plot. */
async function report(o: Options, ran: readonly SystemDef[], cells: readonly Cell[], startedMs: number): Promise<void> {
  const rs = ratios(o.workloads, cells);
  const verdicts = judge(rs, cells, ran.filter((s) => s.group === 'daemon').map((s) => s.id));
  const host = await hostInfo();
  const subtitle = `${o.seconds} s per workload, images ${o.imageMiB} MiB, ${os.cpus().length} CPUs, Node ${process.version}, commit ${String(host['commit'])}`;
  console.log(`\n${subtitle}\n`);
  console.log(table(ran, o.workloads, cells, rs));
  console.log(`\n${targetsText(verdicts)}`);
  mkdirSync(RESULTS_DIR, { recursive: true });
  const base = path.join(RESULTS_DIR, `nbd-peers-${new Date().toISOString().replace(/[:.]/g, '-')}`);
  const png = await writePlot({ systems: ran, workloads: o.workloads, cells, subtitle }, base).catch((e: unknown) => {
    progress(`plot failed: ${e instanceof Error ? e.message : String(e)}`);
    return null;
  });
  const elapsedS = (Date.now() - startedMs) / 1000;
  const systems = ran.map((s) => ({ id: s.id, label: s.label, group: s.group }));
  const record = { date: new Date().toISOString(), seconds: o.seconds, imageMiB: o.imageMiB, elapsedS, host, workloads: o.workloads, systems, results: cells, ratios: rs, targets: verdicts };
  await writeFile(`${base}.json`, JSON.stringify(record, null, 2) + '\n');
  console.log(`\nJSON: ${path.relative(process.cwd(), `${base}.json`)}`);
  if (png !== null) console.log(`plot: ${path.relative(process.cwd(), png)}`);
  console.log(`total elapsed: ${(elapsedS / 60).toFixed(1)} min (${elapsedS.toFixed(0)} s)`);
}

async function main(): Promise<number> {
  const startedMs = Date.now();
  const o = parseOptions();
  if (o === null) { console.log(USAGE); return 0; }
  if ((await version('fio')) === 'missing') throw new Error('fio is missing (apt-get install fio)');
  const workDir = mkdtempSync(path.join(o.dir ?? os.tmpdir(), 'onestack-bench-'));
  const cleanup = (): void => { killAll(); if (!o.keep) rmSync(workDir, { recursive: true, force: true }); };
  const onSignal = (sig: NodeJS.Signals): void => { progress(`${sig}: stopping everything`); cleanup(); process.exit(130); };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  process.once('exit', killAll);
  try {
    const { ran, cells } = await runAll(o, workDir);
    await report(o, ran, cells, startedMs);
    if (cells.some((c) => c.error !== undefined)) progress('some runs failed: see "error" in the JSON');
    return cells.some((c) => ran.some((s) => s.id === c.system && isOnestack(s)) && c.figures !== undefined) ? 0 : 1;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    cleanup();
  }
}

main().then((code) => { process.exitCode = code; }, (e: unknown) => {
  killAll();
  console.error(`bench: error: ${e instanceof Error ? e.message : String(e)}`);
  process.exitCode = 2;
});
