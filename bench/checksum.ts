// Checksum kernels (issue 10): which per-block checksum the integrity metadata should use.
// Measures ns per 4 KiB block and GiB/s of the addon's crc32cBlocks and xxh64Blocks, the pure-JS
// CRC32C (the fallback without the addon), and for context node:crypto's sha256 and a plain copy
// of the same bytes, on requests of 1 block (a 4 KiB write: one call, so the per-call napi cost
// shows) and of 256 blocks (a 1 MiB write: one call for 256 checksums). Prints a table and a
// one-line recommendation; keeps a JSON record in bench/results/checksum-<timestamp>.json.
// Build: pnpm exec tsc -p bench    Run: node bench/dist/checksum.js [--round-ms 150] [--rounds 9] [--pool-mib 8]
import { hash, randomFillSync } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { blockChecksums, crc32cBlocksJs, nativeInfo } from '@onestack/engine';

const RESULTS_DIR = fileURLToPath(new URL('../results', import.meta.url));
const BLOCK_BYTES = 4096;
const BATCHES = [1, 256] as const;
const GiB = 1024 ** 3;
/** Calibration never runs a round longer than this many calls (bounds the slowest kernel too). */
const CALLS_MAX = 50_000_000;
/** Gap under which the two native kernels count as equally fast (run-to-run noise here is ±10 %+). */
const TIE_SHARE = 0.25;

function progress(msg: string): void {
  process.stderr.write(`[checksum ${new Date().toISOString().slice(11, 19)}] ${msg}\n`);
}

/** One request's worth of work: checksums (or hashes, or a copy) of the `batch` blocks of `data`. */
type Work = (data: Uint8Array) => void;

interface Kernel {
  readonly id: string;
  readonly label: string;
  /** The work for requests of `batch` blocks, or why this kernel cannot run here. */
  readonly make: (batch: number) => Work | string;
}

function kernels(): Kernel[] {
  const k = blockChecksums();
  let sink = 0; // keeps hash results observable, so no engine can drop the work
  return [
    { id: 'native-crc32c', label: 'native crc32c (SSE4.2)', make: (batch) => {
      if (k.backend !== 'native') return `no addon: ${k.reason}`;
      const out = new Uint32Array(batch);
      return (data) => { k.crc32cBlocks(data, BLOCK_BYTES, out); };
    } },
    { id: 'native-xxh64', label: 'native xxh64', make: (batch) => {
      const xxh = k.xxh64Blocks;
      if (xxh === null) return `no addon: ${k.reason}`;
      const out = new BigUint64Array(batch);
      return (data) => { xxh(data, BLOCK_BYTES, out); };
    } },
    { id: 'js-crc32c', label: 'JS crc32c (the fallback)', make: (batch) => {
      const out = new Uint32Array(batch);
      return (data) => { crc32cBlocksJs(data, BLOCK_BYTES, out); };
    } },
    { id: 'sha256', label: 'node:crypto sha256 (per block)', make: () => (data) => {
      for (let at = 0; at < data.length; at += BLOCK_BYTES) sink ^= hash('sha256', data.subarray(at, at + BLOCK_BYTES), 'buffer')[0]!;
    } },
    { id: 'memcpy', label: 'memcpy of the request', make: (batch) => {
      const into = new Uint8Array(batch * BLOCK_BYTES);
      return (data) => { into.set(data); sink ^= into[0]!; };
    } },
  ];
}

/** Nanoseconds for `calls` calls of `work`, cycling through `views`. */
function timeCalls(work: Work, views: readonly Uint8Array[], calls: number): number {
  let v = 0;
  const started = process.hrtime.bigint();
  for (let i = 0; i < calls; i++) {
    work(views[v]!);
    v = v + 1 === views.length ? 0 : v + 1;
  }
  return Number(process.hrtime.bigint() - started);
}

interface Row {
  readonly id: string;
  readonly label: string;
  readonly batch: number;
  readonly nsPerCall: number;
  readonly nsPerBlock: number;
  readonly gibPerSec: number;
  /** ns per call of every round, in order (the median is nsPerCall). */
  readonly roundsNsPerCall: readonly number[];
}

function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

/** A kernel at one request size, calibrated: `calls` calls take about one round. */
interface Case {
  readonly kernel: Kernel;
  readonly batch: number;
  readonly work: Work;
  readonly views: readonly Uint8Array[];
  readonly calls: number;
  readonly roundsNsPerCall: number[];
}

/** Calibrates calls per round to about roundMs by doubling (also the warm-up). */
function calibrate(kernel: Kernel, work: Work, batch: number, pool: Uint8Array, roundMs: number): Case {
  const requestBytes = batch * BLOCK_BYTES;
  const views: Uint8Array[] = [];
  for (let at = 0; at + requestBytes <= pool.length; at += requestBytes) views.push(pool.subarray(at, at + requestBytes));
  let calls = 16;
  // At most log2(CALLS_MAX / 16) steps.
  while (calls < CALLS_MAX && timeCalls(work, views, calls) < roundMs * 1e6 / 4) calls *= 2;
  return { kernel, batch, work, views, calls: Math.min(CALLS_MAX, calls * 4), roundsNsPerCall: [] };
}

function toRow(c: Case): Row {
  const nsPerCall = median(c.roundsNsPerCall);
  const nsPerBlock = nsPerCall / c.batch;
  return { id: c.kernel.id, label: c.kernel.label, batch: c.batch, nsPerCall, nsPerBlock, gibPerSec: BLOCK_BYTES / nsPerBlock * 1e9 / GiB, roundsNsPerCall: c.roundsNsPerCall };
}

function table(rows: readonly Row[], ks: readonly Kernel[], skipped: ReadonlyMap<string, string>): string {
  const head = ['kernel', '1×4 KiB ns/block', '1×4 KiB GiB/s', '256×4 KiB ns/block', '256×4 KiB GiB/s', 'per-call ns', '÷ memcpy (1 / 256)'];
  const find = (id: string, batch: number): Row | undefined => rows.find((r) => r.id === id && r.batch === batch);
  const lines: string[][] = [head];
  for (const k of ks) {
    const one = find(k.id, 1);
    const many = find(k.id, 256);
    if (one === undefined || many === undefined) { lines.push([k.label, `skipped: ${skipped.get(k.id) ?? '?'}`]); continue; }
    const c1 = find('memcpy', 1);
    const c256 = find('memcpy', 256);
    const vsCopy = c1 && c256 ? `${(one.nsPerBlock / c1.nsPerBlock).toFixed(1)} / ${(many.nsPerBlock / c256.nsPerBlock).toFixed(1)}` : '–';
    lines.push([k.label, one.nsPerBlock.toFixed(0), one.gibPerSec.toFixed(2), many.nsPerBlock.toFixed(0), many.gibPerSec.toFixed(2),
      Math.max(0, one.nsPerBlock - many.nsPerBlock).toFixed(0), vsCopy]);
  }
  const widths = head.map((_, i) => Math.max(...lines.filter((l) => l.length > 2).map((l) => (l[i] ?? '').length)));
  return lines.map((l) => l.map((c, i) => (i === 0 ? c.padEnd(widths[0]!) : c.padStart(widths[i]!))).join('  ').trimEnd()).join('\n');
}

interface Recommendation { readonly algo: 'crc32c' | 'xxh64'; readonly reason: string }

/**
 * crc32c unless xxh64 is more than TIE_SHARE faster on both request sizes: crc32c also has a
 * JS fallback with the same bits (an element stays verifiable without the addon), takes 4 bytes
 * per block instead of 8, and is the CRC the superblock, journal and iSCSI digests already use.
 */
function recommend(rows: readonly Row[]): Recommendation {
  const ns = (id: string, batch: number): number | undefined => rows.find((r) => r.id === id && r.batch === batch)?.nsPerBlock;
  const [c1, c256, x1, x256, j1] = [ns('native-crc32c', 1), ns('native-crc32c', 256), ns('native-xxh64', 1), ns('native-xxh64', 256), ns('js-crc32c', 1)];
  if (c1 === undefined || c256 === undefined || x1 === undefined || x256 === undefined) {
    return { algo: 'crc32c', reason: 'the addon is not loaded: crc32c is the only checksum with a JS kernel (measure again with the addon for the real choice)' };
  }
  const f = (x: number): string => `${x.toFixed(0)} ns`;
  const figures = `4 KiB write: crc32c ${f(c1)} vs xxh64 ${f(x1)} per block; 1 MiB: ${f(c256)} vs ${f(x256)}`;
  if (x1 < c1 * (1 - TIE_SHARE) && x256 < c256 * (1 - TIE_SHARE)) {
    return { algo: 'xxh64', reason: `${figures}: xxh64 is over ${TIE_SHARE * 100} % faster on both, worth 8 bytes per block and no JS fallback` };
  }
  const fallback = j1 === undefined ? '' : `, JS fallback ${f(j1)}`;
  const pace = c1 <= x1 && c256 <= x256 ? 'crc32c is faster on both' : `xxh64 is less than ${TIE_SHARE * 100} % faster`;
  return { algo: 'crc32c', reason: `${figures}${fallback}: ${pace}; a 4 KiB call pays ~${f(Math.max(0, c1 - c256))} of call overhead ` +
    'on top of the kernel either way; crc32c also has a JS fallback with the same bits, takes 4 bytes per block instead of 8, ' +
    'and is the CRC the superblock, journal and iSCSI digests already use' };
}

function main(): void {
  const { values } = parseArgs({ options: { 'round-ms': { type: 'string' }, rounds: { type: 'string' }, 'pool-mib': { type: 'string' } } });
  const roundMs = Number(values['round-ms'] ?? 150);
  const rounds = Number(values.rounds ?? 9);
  const poolMiB = Number(values['pool-mib'] ?? 8);
  if (!(roundMs > 0) || !Number.isInteger(rounds) || rounds < 1 || !Number.isInteger(poolMiB) || poolMiB < 1) {
    process.stderr.write('usage: checksum.js [--round-ms N>0] [--rounds N>=1] [--pool-mib N>=1]\n');
    process.exit(2);
  }
  // A pool of random data a few times the L2: requests cycle through it, as a server's slab does.
  const pool = new Uint8Array(new SharedArrayBuffer(poolMiB * 1024 * 1024));
  for (let at = 0; at < pool.length; at += 65536) randomFillSync(pool.subarray(at, at + 65536));
  const ks = kernels();
  const skipped = new Map<string, string>();
  const started = Date.now();
  const cases: Case[] = [];
  for (const k of ks) {
    for (const batch of BATCHES) {
      const work = k.make(batch);
      if (typeof work === 'string') { skipped.set(k.id, work); progress(`${k.id}: skipped (${work})`); break; }
      cases.push(calibrate(k, work, batch, pool, roundMs));
    }
  }
  // Rounds interleave the cases: a burst of load elsewhere on the machine hits all of them alike,
  // so the ratios within a run hold even when the absolute figures drift.
  for (let r = 0; r < rounds; r++) {
    for (const c of cases) c.roundsNsPerCall.push(timeCalls(c.work, c.views, c.calls) / c.calls);
    progress(`round ${r + 1}/${rounds}`);
  }
  const rows = cases.map(toRow);
  for (const row of rows) progress(`${row.id} ×${row.batch}: ${row.nsPerBlock.toFixed(0)} ns/block, ${row.gibPerSec.toFixed(2)} GiB/s`);
  const rec = recommend(rows);
  process.stdout.write(`${table(rows, ks, skipped)}\n\nrecommendation: ${rec.algo} (${rec.reason})\n`);
  const host = { cpu: os.cpus()[0]?.model ?? 'unknown', cpus: os.cpus().length, node: process.version, kernel: os.release(), native: nativeInfo() };
  const record = { host, blockBytes: BLOCK_BYTES, batches: BATCHES, poolMiB, roundMs, rounds, rows, skipped: Object.fromEntries(skipped), recommendation: rec, elapsedMs: Date.now() - started };
  mkdirSync(RESULTS_DIR, { recursive: true });
  const file = path.join(RESULTS_DIR, `checksum-${new Date().toISOString().replace(/[:.]/g, '-')}.json`);
  writeFileSync(file, `${JSON.stringify(record, null, 2)}\n`);
  process.stdout.write(`record: ${path.relative(process.cwd(), file)}\n`);
}

main();
