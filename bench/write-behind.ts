// Write-behind benchmark (issue 11, docs/durability.md "Write-behind legs"): a raid1 of a local
// image and a remote leg that nbdkit's delay filter slows to WDELAY per write, served twice in
// one run — once plain (every write waits for the remote) and once with the remote marked
// `writeBehind` — and fio 4k randwrite QD32 against each, interleaved over the rounds so drift on
// a shared machine hits both alike. Prints IOPS, mean latency and the peak lag seen in status;
// after each write-behind run a flush drains the lag and the time it took is shown.
// Build: pnpm exec tsc -p bench
// Run: node bench/dist/write-behind.js [--seconds 5] [--rounds 1] [--image-mib 256] [--wdelay 10ms] [--max-lag-mib 64] [--integrity]
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { benchApi, startBenchDaemon, type BenchDaemon } from './lib/daemon.js';
import { runFio, WORKLOADS } from './lib/fio.js';
import { delayedPairs } from './lib/delayed-remote.js';
import { runCommand, runMain, stopServer, type Server } from './lib/proc.js';

const MiB = 1024 * 1024;
const HEADER_BYTES = 4 * MiB;
const MODES = ['plain', 'behind'] as const;
type Mode = (typeof MODES)[number];

interface Row { mode: Mode; iops: number; latMeanUs: number; peakLagMiB: number; drainMs: number }

function progress(msg: string): void {
  process.stderr.write(`[write-behind ${new Date().toISOString().slice(11, 19)}] ${msg}\n`);
}

interface Wb { lagBytes: number; peakLagBytes: number }

async function lagOf(d: BenchDaemon): Promise<Wb | null> {
  const s = (await benchApi(d, 'GET', 'status')) as { elements: { name: string; writeBehind?: Wb }[] };
  return s.elements.find((e) => e.name === 'r0')?.writeBehind ?? null;
}

function daemon(dir: string, mode: Mode, local: string, remoteUri: string, maxLagMiB: number, integrity: boolean): Promise<BenchDaemon> {
  const wb = (mode === 'behind' ? `, writeBehind: { element: r0, maxLagMiB: ${maxLagMiB}, drainOnFlush: true }` : '') + (integrity ? ', integrity: true' : '');
  return startBenchDaemon(dir, mode, [
    'elements:',
    `  - { name: l0, uri: "file:${local}" }`,
    `  - { name: r0, uri: "${remoteUri}", timeoutMs: 30000 }`,
    'volumes:',
    `  - { name: v, layout: raid1, elements: [l0, r0], boot: true${wb} }`,
  ]);
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { seconds: { type: 'string' }, rounds: { type: 'string' }, 'image-mib': { type: 'string' }, wdelay: { type: 'string' }, 'max-lag-mib': { type: 'string' }, integrity: { type: 'boolean' } } });
  const seconds = Number(values.seconds ?? 5);
  const rounds = Number(values.rounds ?? 1);
  const imageBytes = Number(values['image-mib'] ?? 256) * MiB;
  const wdelay = values.wdelay ?? '10ms';
  const maxLagMiB = Number(values['max-lag-mib'] ?? 64);
  if (!(seconds > 0 && rounds >= 1 && rounds <= 10 && imageBytes >= 16 * MiB && maxLagMiB >= 1 && maxLagMiB <= 1024) || !/^\d+(ms)?$/.test(wdelay)) {
    throw new Error('usage: --seconds S (> 0) --rounds N (1..10) --image-mib M (>= 16) --wdelay N|Nms --max-lag-mib L (1..1024)');
  }
  const dir = mkdtempSync(path.join(os.tmpdir(), 'onestack-write-behind-'));
  const servers: Server[] = [];
  const daemons: BenchDaemon[] = [];
  try {
    // 128 threads: the remote takes many writes at once (a WAN link with latency, not a slow disk).
    const pairs = await delayedPairs(dir, MODES, imageBytes + HEADER_BYTES, [`wdelay=${wdelay}`], 128);
    servers.push(pairs.server);
    for (const m of MODES) daemons.push(await daemon(dir, m, pairs.local(m), pairs.remoteUri(m), maxLagMiB, values.integrity === true));
    const w = WORKLOADS.find((x) => x.id === 'randwrite4k')!;
    const rows: Row[] = [];
    for (let round = 0; round < rounds; round++) {
      for (const [i, m] of MODES.entries()) {
        const d = daemons[i]!;
        progress(`round ${round + 1}/${rounds}: ${m}, ${w.title} for ${seconds} s`);
        const r = await runFio({ kind: 'nbd', uri: `nbd://127.0.0.1:${d.nbdPort}/v` }, { ...w, iodepth: 32 }, seconds, dir);
        const peak = (await lagOf(d))?.peakLagBytes ?? 0;
        const t0 = performance.now();
        const flushed = await runCommand('qemu-io', ['-f', 'raw', '-c', 'flush', `nbd://127.0.0.1:${d.nbdPort}/v`], 120_000);
        if (flushed.code !== 0) throw new Error(`qemu-io flush: ${flushed.stderr}`);
        rows.push({ mode: m, iops: r.figures.iops, latMeanUs: r.figures.latMeanUs, peakLagMiB: peak / MiB, drainMs: performance.now() - t0 });
      }
    }
    const lines = [`raid1 of a local image + nbdkit -t 128 --filter=delay wdelay=${wdelay} (sparse ${imageBytes / MiB} MiB), fio 4k randwrite QD32, ${seconds} s per run;`,
      `write-behind: maxLagMiB ${maxLagMiB}, drainOnFlush${values.integrity === true ? '; both volumes with integrity (CRC32C per 4 KiB)' : ''}`, '',
      'mode                       IOPS   mean lat µs   peak lag MiB   flush after ms'];
    for (const r of rows) lines.push(`${(r.mode === 'plain' ? 'every leg before the ack' : 'remote written behind').padEnd(24)} ${r.iops.toFixed(0).padStart(8)}   ${r.latMeanUs.toFixed(0).padStart(11)}   ${r.peakLagMiB.toFixed(1).padStart(12)}   ${r.drainMs.toFixed(0).padStart(14)}`);
    const med = (m: Mode): number => {
      const xs = rows.filter((r) => r.mode === m).map((r) => r.iops).sort((a, b) => a - b);
      return xs[Math.floor(xs.length / 2)] ?? 0;
    };
    lines.push('', `write-behind ÷ plain IOPS ${(med('behind') / Math.max(1, med('plain'))).toFixed(2)}×`);
    process.stdout.write(lines.join('\n') + '\n');
  } finally {
    for (const d of daemons) await stopServer(d.server);
    for (const s of servers) await stopServer(s);
    rmSync(dir, { recursive: true, force: true });
  }
}

runMain('write-behind', main);
