// One command, one run, the same image file(s): fio's nbd engine against qemu-nbd (cache=none and
// writeback), nbdkit's file plugin, qemu-storage-daemon quorums (two files; a file + nbdkit) and
// the onestack daemon (linear, raid1, raid1 of a file + nbdkit), for 4k randread QD32, 1M seq read
// QD8, 4k randwrite QD32 and 1M seq write QD8. Prints a table with onestack's ratio to the best
// peer and to its like-for-like peer, and keeps the JSON in bench/results/.
// Build: pnpm exec tsc -p bench    Run: pnpm bench [--seconds N | --quick] (see bench/README.md)
import { randomFillSync } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { open, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { WORKLOADS, runFio, type Workload } from './lib/fio.js';
import { cpuSeconds, killAll, runCommand, stopServer, version } from './lib/proc.js';
import { ratios, table, type Cell } from './lib/report.js';
import { SYSTEMS, type Running, type StartContext, type SystemDef } from './lib/systems.js';

const REPO_ROOT = fileURLToPath(new URL('../..', import.meta.url));
const RESULTS_DIR = path.join(REPO_ROOT, 'bench', 'results');
const HEADER_BYTES = 4 * 1024 * 1024;
const FILL_BLOCK_BYTES = 4 * 1024 * 1024;

const USAGE = `usage: pnpm bench [--seconds N] [--quick] [--image-mib N] [--systems a,b] [--workloads a,b] [--dir DIR] [--keep]
  --seconds N     fio run time per workload (default 8)
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

/** Non-zero data everywhere, so no system reads holes. */
async function fillImage(file: string, sizeBytes: number): Promise<void> {
  const block = Buffer.alloc(FILL_BLOCK_BYTES);
  randomFillSync(block);
  const fh = await open(file, 'w');
  try {
    for (let pos = 0; pos < sizeBytes; pos += block.length) {
      block.writeUInt32LE(pos / block.length, 0);
      await fh.write(block, 0, Math.min(block.length, sizeBytes - pos), pos);
    }
    await fh.datasync();
  } finally { await fh.close(); }
}

/** A fresh element for onestack: its reserved header zeroed, as if never used (data stays). */
async function clearHeader(file: string): Promise<void> {
  const fh = await open(file, 'r+');
  try { await fh.write(Buffer.alloc(HEADER_BYTES), 0, HEADER_BYTES, 0); } finally { await fh.close(); }
}

/** user + system CPU seconds of the system: its server plus helpers of its own (a remote leg's nbdkit). */
function systemCpuSeconds(running: Running, ticks: number): number {
  return [running.server, ...(running.aux ?? [])].reduce((sum, s) => sum + cpuSeconds(s.child.pid, ticks), 0);
}

/** The server first (it is their client), then its helpers. */
async function stopSystem(running: Running): Promise<void> {
  await stopServer(running.server);
  for (const s of running.aux ?? []) await stopServer(s);
}

async function benchSystem(sys: SystemDef, ctx: StartContext, workloads: readonly Workload[], seconds: number, ticks: number): Promise<Cell[]> {
  const cells: Cell[] = [];
  if (sys.onestack) for (const img of ctx.images.slice(0, sys.onestackImages ?? 1)) await clearHeader(img);
  progress(`starting ${sys.label}`);
  let running: Running | null = null;
  try {
    running = await sys.start(ctx);
    const aux = (running.aux ?? []).map((s) => `, ${s.name} pid ${String(s.child.pid)}`).join('');
    progress(`${sys.id} ready at ${running.uri} (pid ${String(running.server.child.pid)}${aux})`);
    for (const w of workloads) {
      try {
        const cpu0 = systemCpuSeconds(running, ticks);
        const f = await runFio(running.uri, w, seconds, ctx.workDir);
        const cpuUs = (systemCpuSeconds(running, ticks) - cpu0) * 1e6;
        cells.push({ system: sys.id, workload: w.id, figures: f, serverCpuUsPerOp: f.ops > 0 ? cpuUs / f.ops : Number.NaN });
        progress(`${sys.id} ${w.title}: ${f.iops.toFixed(0)} IOPS, ${f.mibps.toFixed(0)} MiB/s, mean latency ${f.latMeanUs.toFixed(0)} µs`);
      } catch (e) {
        cells.push({ system: sys.id, workload: w.id, error: String(e) });
        progress(`${sys.id} ${w.title}: FAILED ${String(e).split('\n')[0] ?? ''}`);
      }
    }
  } catch (e) {
    for (const w of workloads) cells.push({ system: sys.id, workload: w.id, error: String(e) });
    progress(`${sys.id}: could not start: ${String(e).split('\n').slice(0, 6).join(' | ')}`);
  } finally {
    if (running !== null) await stopSystem(running);
  }
  return cells;
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      seconds: { type: 'string' }, quick: { type: 'boolean' }, 'image-mib': { type: 'string' }, systems: { type: 'string' },
      workloads: { type: 'string' }, dir: { type: 'string' }, keep: { type: 'boolean' }, help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help === true) { console.log(USAGE); return 0; }
  const seconds = values.quick === true ? 3 : Number(values.seconds ?? 8);
  const imageMiB = Number(values['image-mib'] ?? 2048);
  if (!(seconds >= 1 && seconds <= 600) || !(imageMiB >= 64 && imageMiB <= 65536)) throw new Error(`bad --seconds or --image-mib\n${USAGE}`);
  const systems = pick(SYSTEMS, values.systems, 'system');
  const workloads = pick(WORKLOADS, values.workloads, 'workload');
  if ((await version('fio')) === 'missing') throw new Error('fio is missing (apt-get install fio)');

  const workDir = mkdtempSync(path.join(values.dir ?? os.tmpdir(), 'onestack-bench-'));
  const cleanup = (): void => { killAll(); if (values.keep !== true) rmSync(workDir, { recursive: true, force: true }); };
  const onSignal = (sig: NodeJS.Signals): void => { progress(`${sig}: stopping everything`); cleanup(); process.exit(130); };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  process.once('exit', killAll);
  try {
    const images: [string, string] = [path.join(workDir, 'img0.raw'), path.join(workDir, 'img1.raw')];
    const sizeBytes = imageMiB * 1024 * 1024;
    progress(`filling ${images.length} images of ${imageMiB} MiB in ${workDir}`);
    for (const img of images) await fillImage(img, sizeBytes);
    const ticks = Number((await runCommand('getconf', ['CLK_TCK'], 5_000)).stdout.trim()) || 100;
    const ctx: StartContext = { images, workDir, repoRoot: REPO_ROOT };

    const cells: Cell[] = [];
    const ran: SystemDef[] = [];
    for (const sys of systems) {
      const why = sys.unavailable();
      if (why !== null) { progress(`skipping ${sys.id}: ${why}`); continue; }
      ran.push(sys);
      cells.push(...(await benchSystem(sys, ctx, workloads, seconds, ticks)));
    }
    const rs = ratios(ran, workloads, cells);
    console.log(`\nfio nbd engine, ${seconds} s per workload, images ${imageMiB} MiB, ${os.cpus().length} CPUs, Node ${process.version}\n`);
    console.log(table(ran, workloads, cells, rs));

    const host = {
      cpus: os.cpus().length, cpuModel: os.cpus()[0]?.model ?? '', kernel: os.release(), node: process.version,
      fio: await version('fio'), qemuNbd: await version('qemu-nbd'), nbdkit: await version('nbdkit'), qsd: await version('qemu-storage-daemon'),
      commit: (await runCommand('git', ['-C', REPO_ROOT, 'rev-parse', '--short', 'HEAD'], 5_000)).stdout.trim(),
    };
    mkdirSync(RESULTS_DIR, { recursive: true });
    const stamp = new Date().toISOString().replace(/[:.]/g, '-');
    const out = path.join(RESULTS_DIR, `nbd-peers-${stamp}.json`);
    const systemsJson = ran.map((s) => ({ id: s.id, label: s.label, onestack: s.onestack }));
    await writeFile(out, JSON.stringify({ date: new Date().toISOString(), seconds, imageMiB, host, workloads, systems: systemsJson, results: cells, ratios: rs }, null, 2) + '\n');
    console.log(`\nJSON: ${path.relative(process.cwd(), out)}`);
    const onestackOk = cells.some((c) => c.system.startsWith('onestack') && c.figures !== undefined);
    const anyErrors = cells.some((c) => c.error !== undefined);
    if (anyErrors) progress('some runs failed: see "error" in the JSON');
    return onestackOk ? 0 : 1;
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
