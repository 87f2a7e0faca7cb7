// Rebuild benchmark (issue 5): a raid1 of two local images, filled with data, has one leg replaced
// by a blank element; the daemon rebuilds it. Reports rebuild MiB/s against nbdcopy of the same
// bytes (the tool a user would copy a disk with), and 4k randread IOPS during a throttled rebuild
// as a share of idle IOPS (foreground priority).
// Build: pnpm exec tsc -p bench    Run: node bench/dist/rebuild.js [--image-mib N] [--throttle-mib N]
import { randomFillSync } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { open, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { runFio, WORKLOADS, type FioFigures } from './lib/fio.js';
import { benchApi, REPO_ROOT, startBenchDaemon, type BenchDaemon } from './lib/daemon.js';
import { sparseImage } from './lib/images.js';
import { killAll, runCommand, stopServer } from './lib/proc.js';

const RESULTS_DIR = path.join(REPO_ROOT, 'bench', 'results');
const HEADER_BYTES = 4 * 1024 * 1024;
const MiB = 1024 * 1024;
const POLL_MS = 100;
const REBUILD_WAIT_MS = 30 * 60 * 1000;

function progress(msg: string): void {
  process.stderr.write(`[rebuild ${new Date().toISOString().slice(11, 19)}] ${msg}\n`);
}

type Daemon = BenchDaemon;

function startDaemon(dir: string, images: readonly string[], throttleMiB: number): Promise<Daemon> {
  return startBenchDaemon(dir, `rebuild-${throttleMiB}`, [
    'elements:',
    ...images.map((img, i) => `  - { name: e${i}, uri: "file:${img}", cache: writeback }`),
    `rebuild: { maxMiBPerSec: ${throttleMiB} }`,
    'volumes:',
    '  - { name: bench, layout: raid1, elements: [e0, e1], boot: true }',
  ], 'data'); // both runs share it: the second reassembles what the first rebuilt
}

const api = benchApi;

interface VolumeView { name: string; state: string; rebuild: { kind: string; percent: number; mibPerSec: number } | null }

async function volume(d: Daemon): Promise<VolumeView> {
  const status = await api(d, 'GET', 'status') as { volumes: VolumeView[] };
  const v = status.volumes.find((x) => x.name === 'bench');
  if (v === undefined) throw new Error('volume bench is gone');
  return v;
}

/** Replaces `from` by `to` and waits for the rebuild to end; returns its duration in seconds. */
async function rebuild(d: Daemon, from: string, to: string, during?: () => Promise<FioFigures>): Promise<{ seconds: number; fio?: FioFigures }> {
  const started = Date.now();
  await api(d, 'POST', 'volumes/bench/replace', { old: from, new: to });
  const fio = during?.();
  let last = -1;
  for (;;) {
    const v = await volume(d);
    if (v.rebuild === null && v.state === 'optimal') break;
    if (v.state === 'failed') throw new Error('volume failed during the rebuild');
    if (Date.now() - started > REBUILD_WAIT_MS) throw new Error('rebuild did not finish');
    const pct = Math.floor(v.rebuild?.percent ?? 0);
    if (pct >= last + 10) { progress(`rebuild ${from} → ${to}: ${pct}%  ${(v.rebuild?.mibPerSec ?? 0).toFixed(0)} MiB/s`); last = pct; }
    await new Promise((r) => setTimeout(r, POLL_MS));
  }
  const seconds = (Date.now() - started) / 1000;
  return { seconds, ...(fio !== undefined ? { fio: await fio } : {}) };
}

async function fill(file: string, bytes: number): Promise<void> {
  const block = Buffer.alloc(4 * MiB);
  const fh = await open(file, 'w');
  try {
    for (let pos = 0; pos < bytes; pos += block.length) {
      randomFillSync(block);
      await fh.write(block, 0, Math.min(block.length, bytes - pos), pos);
    }
  } finally { await fh.close(); }
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { 'image-mib': { type: 'string' }, 'throttle-mib': { type: 'string' }, dir: { type: 'string' }, seconds: { type: 'string' } } });
  const dataBytes = Number(values['image-mib'] ?? '1024') * MiB;
  const throttleMiB = Number(values['throttle-mib'] ?? '200');
  const seconds = Number(values['seconds'] ?? '3');
  const dir = mkdtempSync(path.join(values.dir ?? os.tmpdir(), 'onestack-rebuild-'));
  const images = ['e0', 'e1', 'e2'].map((n) => path.join(dir, `${n}.img`));
  const randread = WORKLOADS.find((w) => w.id === 'randread4k')!;
  try {
    for (const img of images) await sparseImage(img, HEADER_BYTES + dataBytes);
    const src = path.join(dir, 'src.bin');
    progress(`filling a ${dataBytes / MiB} MiB volume with random data`);
    await fill(src, dataBytes);
    // Unthrottled rebuild: throughput against nbdcopy of the same bytes.
    let d = await startDaemon(dir, images, 0);
    const uri = `nbd://127.0.0.1:${d.nbdPort}/bench`;
    const up = await runCommand('nbdcopy', [src, uri], 600_000);
    if (up.code !== 0) throw new Error(`nbdcopy fill: ${up.stderr}`);
    const t0 = Date.now();
    const copy = await runCommand('nbdcopy', [uri, path.join(dir, 'copy.bin')], 600_000);
    if (copy.code !== 0) throw new Error(`nbdcopy: ${copy.stderr}`);
    const nbdcopySeconds = (Date.now() - t0) / 1000;
    rmSync(path.join(dir, 'copy.bin'), { force: true });
    const fast = await rebuild(d, 'e1', 'e2');
    await stopServer(d.server);
    // Throttled rebuild with fio reading meanwhile: foreground share.
    d = await startDaemon(dir, images, throttleMiB);
    const idle = (await runFio({ kind: 'nbd', uri: `nbd://127.0.0.1:${d.nbdPort}/bench` }, randread, seconds, dir)).figures;
    const slow = await rebuild(d, 'e2', 'e1', async () => (await runFio({ kind: 'nbd', uri: `nbd://127.0.0.1:${d.nbdPort}/bench` }, randread, seconds, dir)).figures);
    await stopServer(d.server);
    // fio runs `seconds` + 1 s of ramp: a shorter rebuild would mix idle time into the figure.
    if (slow.seconds < seconds + 1) progress(`warning: the throttled rebuild took ${slow.seconds.toFixed(1)} s, less than fio's ${seconds + 1} s: use a bigger --image-mib or lower --throttle-mib`);
    const mib = dataBytes / MiB;
    const result = {
      dataMiB: mib, nbdcopyMiBps: mib / nbdcopySeconds, rebuildMiBps: mib / fast.seconds, rebuildVsNbdcopy: nbdcopySeconds / fast.seconds,
      throttleMiBps: throttleMiB, throttledRebuildMiBps: mib / slow.seconds,
      idleRandreadIops: idle.iops, duringRebuildRandreadIops: slow.fio?.iops ?? Number.NaN, foregroundShare: (slow.fio?.iops ?? Number.NaN) / idle.iops,
    };
    process.stdout.write([
      `rebuild of a ${mib} MiB raid1 leg (local → local)`,
      `  nbdcopy of the same bytes:        ${result.nbdcopyMiBps.toFixed(0)} MiB/s`,
      `  rebuild, unthrottled:             ${result.rebuildMiBps.toFixed(0)} MiB/s  (×${result.rebuildVsNbdcopy.toFixed(2)} nbdcopy)`,
      `  rebuild at maxMiBPerSec ${throttleMiB}:      ${result.throttledRebuildMiBps.toFixed(0)} MiB/s`,
      `  4k randread QD32 idle:            ${result.idleRandreadIops.toFixed(0)} IOPS`,
      `  4k randread QD32 during rebuild:  ${result.duringRebuildRandreadIops.toFixed(0)} IOPS  (${(100 * result.foregroundShare).toFixed(0)}% of idle)`,
    ].join('\n') + '\n');
    mkdirSync(RESULTS_DIR, { recursive: true });
    await writeFile(path.join(RESULTS_DIR, `rebuild-${new Date().toISOString().replace(/[:.]/g, '-')}.json`), JSON.stringify(result, null, 2) + '\n');
  } finally {
    killAll();
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  killAll();
  process.stderr.write(`rebuild bench: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
