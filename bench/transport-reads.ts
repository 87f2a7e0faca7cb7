// Transport-aware reads benchmark (issue 11, docs/transport.md): a raid1 of a local image and a
// remote leg that nbdkit's delay filter slows to RDELAY per request, served twice in one run —
// once with the earlier read rule (least queued, ONESTACK_READ_POLICY=queue) and once with the
// latency-aware rule — and fio 4k randread at QD32 and QD1 against each, interleaved over the rounds so
// drift on a shared machine hits both alike. Prints IOPS, mean latency and the share of element
// reads the remote leg served (status counters). The RAM read cache is off: the legs are measured.
// Build: pnpm exec tsc -p bench
// Run: node bench/dist/transport-reads.js [--seconds 5] [--rounds 1] [--image-mib 256] [--rdelay 20ms]
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { benchApi, startBenchDaemon, type BenchDaemon } from './lib/daemon.js';
import { runFio, WORKLOADS } from './lib/fio.js';
import { delayedPairs } from './lib/delayed-remote.js';
import { ENV, runMain, stopServer, type Server } from './lib/proc.js';

const MiB = 1024 * 1024;
const HEADER_BYTES = 4 * MiB;
const POLICIES = ['queue', 'latency'] as const;
type Policy = (typeof POLICIES)[number];

interface Row { policy: Policy; qd: number; iops: number; latMeanUs: number; remoteShare: number }
/** QD32 as in bench/nbd-peers; QD1 shows what a single reader sees (every read waits for its leg). */
const DEPTHS = [32, 1] as const;

function progress(msg: string): void {
  process.stderr.write(`[transport-reads ${new Date().toISOString().slice(11, 19)}] ${msg}\n`);
}

interface ElementReads { name: string; stats?: { readOps: number } }

async function readOps(d: BenchDaemon): Promise<Map<string, number>> {
  const s = (await benchApi(d, 'GET', 'status')) as { elements: ElementReads[] };
  return new Map(s.elements.map((e) => [e.name, e.stats?.readOps ?? 0]));
}

async function daemon(dir: string, policy: Policy, local: string, remoteUri: string): Promise<BenchDaemon> {
  // The daemon (and its middle workers) read the rule from the environment at start-up.
  ENV['ONESTACK_READ_POLICY'] = policy;
  try {
    return await startBenchDaemon(dir, policy, [
      'cache: { readMiB: 0 }',
      'elements:',
      `  - { name: l0, uri: "file:${local}" }`,
      `  - { name: r0, uri: "${remoteUri}", timeoutMs: 30000 }`,
      'volumes:',
      '  - { name: v, layout: raid1, elements: [l0, r0], boot: true }',
    ]);
  } finally {
    delete ENV['ONESTACK_READ_POLICY'];
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { seconds: { type: 'string' }, rounds: { type: 'string' }, 'image-mib': { type: 'string' }, rdelay: { type: 'string' } } });
  const seconds = Number(values.seconds ?? 5);
  const rounds = Number(values.rounds ?? 1);
  const imageBytes = Number(values['image-mib'] ?? 256) * MiB;
  const rdelay = values.rdelay ?? '20ms';
  if (!(seconds > 0 && rounds >= 1 && rounds <= 10 && imageBytes >= 16 * MiB) || !/^\d+(ms)?$/.test(rdelay)) {
    throw new Error('usage: --seconds S (> 0) --rounds N (1..10) --image-mib M (>= 16) --rdelay N|Nms');
  }
  const dir = mkdtempSync(path.join(os.tmpdir(), 'onestack-transport-'));
  const servers: Server[] = [];
  const daemons: BenchDaemon[] = [];
  try {
    const pairs = await delayedPairs(dir, POLICIES, imageBytes + HEADER_BYTES, [`rdelay=${rdelay}`, `wdelay=${rdelay}`]);
    servers.push(pairs.server);
    for (const p of POLICIES) daemons.push(await daemon(dir, p, pairs.local(p), pairs.remoteUri(p)));
    const base = WORKLOADS.find((x) => x.id === 'randread4k')!;
    const rows: Row[] = [];
    for (let round = 0; round < rounds; round++) {
      for (const qd of DEPTHS) for (const [i, p] of POLICIES.entries()) {
        const d = daemons[i]!;
        const w = { ...base, iodepth: qd, title: `4k randread QD${qd}` };
        progress(`round ${round + 1}/${rounds}: ${p} rule, ${w.title} for ${seconds} s`);
        const before = await readOps(d);
        const m = await runFio({ kind: 'nbd', uri: `nbd://127.0.0.1:${d.nbdPort}/v` }, w, seconds, dir);
        const after = await readOps(d);
        const delta = (name: string): number => (after.get(name) ?? 0) - (before.get(name) ?? 0);
        const total = delta('l0') + delta('r0');
        rows.push({ policy: p, qd, iops: m.figures.iops, latMeanUs: m.figures.latMeanUs, remoteShare: total === 0 ? 0 : delta('r0') / total });
      }
    }
    const lines = [`raid1 of a local image + nbdkit --filter=delay rdelay=${rdelay} (sparse ${imageBytes / MiB} MiB, RAM cache off), fio 4k randread, ${seconds} s per run`, '',
      'rule                   QD     IOPS   mean lat µs   reads on remote'];
    for (const r of rows) lines.push(`${(r.policy === 'queue' ? 'least queued (old)' : 'latency-aware (new)').padEnd(20)} ${String(r.qd).padStart(4)} ${r.iops.toFixed(0).padStart(8)}   ${r.latMeanUs.toFixed(0).padStart(11)}   ${(r.remoteShare * 100).toFixed(1).padStart(13)} %`);
    const med = (p: Policy, qd: number): number => {
      const xs = rows.filter((r) => r.policy === p && r.qd === qd).map((r) => r.iops).sort((a, b) => a - b);
      return xs[Math.floor(xs.length / 2)] ?? 0;
    };
    lines.push('', ...DEPTHS.map((qd) => `QD${qd}: new ÷ old IOPS ${(med('latency', qd) / Math.max(1, med('queue', qd))).toFixed(2)}×`));
    process.stdout.write(lines.join('\n') + '\n');
  } finally {
    for (const d of daemons) await stopServer(d.server);
    for (const s of servers) await stopServer(s);
    rmSync(dir, { recursive: true, force: true });
  }
}

runMain('transport-reads', main);
