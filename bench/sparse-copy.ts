// Sparse-copy benchmark (issue 9): a large volume holding a little data, copied out with the
// tools backup software uses (nbdcopy, qemu-img convert). With base:allocation they read only the
// data; without it they read every byte. Runs onestack (linear, raid1, raid5) and the peers
// (qemu-nbd, nbdkit, and nbdkit with its noextents filter = a server without block status) on the
// same bytes in one run, and reports seconds, the bytes the copy read from onestack's elements,
// and whether each output is sparse and has the source's sha256.
// Build: pnpm exec tsc -p bench    Run: node bench/dist/sparse-copy.js [--size-gib 4] [--data-mib 64]
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { open, writeFile } from 'node:fs/promises';
import { sparseImage } from './lib/images.js';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { benchApi, REPO_ROOT, startBenchDaemon, type BenchDaemon } from './lib/daemon.js';
import { freePort, killAll, runCommand, startServer, stopServer, waitReady, type Server } from './lib/proc.js';

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;
const PIECE_BYTES = 256 * 1024;
/** Element images get this much room beyond the volume data (superblock, bitmap, journal areas). */
const HEADER_BYTES = 64 * MiB;
const COPY_TIMEOUT_MS = 20 * 60 * 1000;

function progress(msg: string): void {
  process.stderr.write(`[sparse-copy ${new Date().toISOString().slice(11, 19)}] ${msg}\n`);
}

interface Row {
  readonly system: string;
  readonly tool: 'nbdcopy' | 'qemu-img';
  readonly seconds: number;
  /** Bytes read from onestack's elements during the copy (null for peers). */
  readonly elementReadBytes: number | null;
  readonly outputAllocatedBytes: number;
  readonly sha256Matches: boolean;
}

/** A sparse source: `dataBytes` of random pieces at deterministic scattered offsets. */
async function makeSource(file: string, sizeBytes: number, dataBytes: number): Promise<void> {
  await sparseImage(file, sizeBytes);
  const fh = await open(file, 'r+');
  const pieces = Math.floor(dataBytes / PIECE_BYTES);
  const slots = Math.floor(sizeBytes / PIECE_BYTES);
  const buf = Buffer.alloc(PIECE_BYTES);
  try {
    for (let i = 0; i < pieces; i++) {
      // Spread evenly with a fixed jitter, so runs are comparable.
      const slot = Math.floor(((i + 0.5) * slots) / pieces);
      for (let j = 0; j < buf.length; j += 4) buf.writeUInt32LE((i * 2654435761 + j * 40503) >>> 0, j);
      await fh.write(buf, 0, buf.length, slot * PIECE_BYTES);
    }
  } finally {
    await fh.close();
  }
}

async function sha256(file: string): Promise<string> {
  const h = createHash('sha256');
  const fh = await open(file, 'r');
  const buf = Buffer.alloc(4 * MiB);
  try {
    for (;;) {
      const { bytesRead } = await fh.read(buf, 0, buf.length, null);
      if (bytesRead === 0) break;
      h.update(buf.subarray(0, bytesRead));
    }
  } finally {
    await fh.close();
  }
  return h.digest('hex');
}

async function elementReadBytes(d: BenchDaemon): Promise<number> {
  const status = await benchApi(d, 'GET', 'status') as { elements?: { stats?: { readBytes: number } }[] };
  return (status.elements ?? []).reduce((sum, e) => sum + (e.stats?.readBytes ?? 0), 0);
}

async function run(cmd: string, args: readonly string[]): Promise<void> {
  const done = await runCommand(cmd, args, COPY_TIMEOUT_MS);
  if (done.code !== 0) throw new Error(`${cmd} ${args.join(' ')}: exit ${done.code}: ${done.stderr.trim().slice(-400)}`);
}

/** Copies `uri` out with both tools; each output is checked against the source and removed. */
async function copyOut(system: string, uri: string, dir: string, expected: string, daemon?: BenchDaemon): Promise<Row[]> {
  const rows: Row[] = [];
  for (const tool of ['nbdcopy', 'qemu-img'] as const) {
    const out = path.join(dir, `out-${system}-${tool}.raw`);
    rmSync(out, { force: true });
    const before = daemon !== undefined ? await elementReadBytes(daemon) : 0;
    const t0 = process.hrtime.bigint();
    if (tool === 'nbdcopy') await run('nbdcopy', [uri, out]);
    else await run('qemu-img', ['convert', '-f', 'raw', '-O', 'raw', uri, out]);
    const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
    const elementRead = daemon !== undefined ? (await elementReadBytes(daemon)) - before : null;
    const row: Row = { system, tool, seconds, elementReadBytes: elementRead, outputAllocatedBytes: statSync(out).blocks * 512, sha256Matches: (await sha256(out)) === expected };
    rows.push(row);
    progress(`${system} ${tool}: ${seconds.toFixed(2)} s, output ${(row.outputAllocatedBytes / MiB).toFixed(0)} MiB allocated${elementRead !== null ? `, ${(elementRead / MiB).toFixed(0)} MiB read from elements` : ''}${row.sha256Matches ? '' : ', SHA256 DIFFERS'}`);
    rmSync(out, { force: true });
  }
  return rows;
}

async function peer(name: string, cmd: string, args: (port: number) => string[], uriPath: string, dir: string, expected: string): Promise<Row[]> {
  const port = await freePort();
  const server: Server = startServer(name, cmd, args(port), REPO_ROOT);
  try {
    await waitReady(server, port, 15_000);
    return await copyOut(name, `nbd://127.0.0.1:${port}/${uriPath}`, dir, expected);
  } finally {
    await stopServer(server);
  }
}

/** onestack over fresh sparse images: the source goes in with nbdcopy (holes stay holes), then out. */
async function onestack(layout: 'linear' | 'raid1' | 'raid5', dir: string, src: string, sizeBytes: number, expected: string): Promise<Row[]> {
  const n = layout === 'linear' ? 1 : layout === 'raid1' ? 2 : 3;
  const perElement = layout === 'raid5' ? sizeBytes / 2 : sizeBytes;
  const images = Array.from({ length: n }, (_, i) => path.join(dir, `${layout}-${i}.img`));
  for (const img of images) await sparseImage(img, perElement + HEADER_BYTES);
  const d = await startBenchDaemon(dir, layout, [
    'elements:',
    ...images.map((img, i) => `  - { name: e${i}, uri: "file:${img}" }`),
    'volumes:',
    `  - { name: v, layout: ${layout}, elements: [${images.map((_, i) => `e${i}`).join(', ')}], sizeBytes: ${sizeBytes}, boot: true }`,
  ]);
  try {
    const uri = `nbd://127.0.0.1:${d.nbdPort}/v`;
    await run('nbdcopy', ['--destination-is-zero', src, uri]);
    return await copyOut(`onestack-${layout}`, uri, dir, expected, d);
  } finally {
    await stopServer(d.server);
    for (const img of images) rmSync(img, { force: true });
  }
}

function report(rows: readonly Row[], sizeBytes: number, dataBytes: number): string {
  const lines = [`sparse copy of a ${sizeBytes / GiB} GiB volume holding ${dataBytes / MiB} MiB of data`, '',
    `${'system'.padEnd(24)}${'tool'.padEnd(10)}${'seconds'.padStart(9)}${'elements read'.padStart(15)}${'out allocated'.padStart(15)}  sha256`];
  for (const r of rows) {
    const read = r.elementReadBytes === null ? '-' : `${(r.elementReadBytes / MiB).toFixed(0)} MiB`;
    lines.push(`${r.system.padEnd(24)}${r.tool.padEnd(10)}${r.seconds.toFixed(2).padStart(9)}${read.padStart(15)}${`${(r.outputAllocatedBytes / MiB).toFixed(0)} MiB`.padStart(15)}  ${r.sha256Matches ? 'ok' : 'DIFFERS'}`);
  }
  const noExtents = rows.find((r) => r.system === 'nbdkit-noextents' && r.tool === 'nbdcopy');
  const ours = rows.find((r) => r.system === 'onestack-raid1' && r.tool === 'nbdcopy');
  if (noExtents !== undefined && ours !== undefined) lines.push('', `onestack-raid1 nbdcopy is ×${(noExtents.seconds / ours.seconds).toFixed(1)} faster than a server without block status`);
  return lines.join('\n') + '\n';
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { 'size-gib': { type: 'string' }, 'data-mib': { type: 'string' }, dir: { type: 'string' } } });
  const sizeBytes = Number(values['size-gib'] ?? '4') * GiB;
  const dataBytes = Number(values['data-mib'] ?? '64') * MiB;
  if (!(sizeBytes > 0 && dataBytes > 0 && dataBytes <= sizeBytes / 4)) throw new Error('need --size-gib > 0 and 0 < --data-mib <= a quarter of the size');
  const dir = mkdtempSync(path.join(values.dir ?? os.tmpdir(), 'onestack-sparse-'));
  const startedMs = Date.now();
  try {
    const src = path.join(dir, 'src.raw');
    progress(`making a ${sizeBytes / GiB} GiB sparse source with ${dataBytes / MiB} MiB of data`);
    await makeSource(src, sizeBytes, dataBytes);
    const expected = await sha256(src);
    const rows: Row[] = [];
    rows.push(...await peer('qemu-nbd', 'qemu-nbd', (p) => ['-f', 'raw', '-r', '-t', '-b', '127.0.0.1', '-p', String(p), '--cache=writeback', src], '', dir, expected));
    rows.push(...await peer('nbdkit-file', 'nbdkit', (p) => ['-f', '-r', '-i', '127.0.0.1', '-p', String(p), 'file', src], '', dir, expected));
    rows.push(...await peer('nbdkit-noextents', 'nbdkit', (p) => ['-f', '-r', '-i', '127.0.0.1', '-p', String(p), '--filter=noextents', 'file', src], '', dir, expected));
    for (const layout of ['linear', 'raid1', 'raid5'] as const) rows.push(...await onestack(layout, dir, src, sizeBytes, expected));
    const text = report(rows, sizeBytes, dataBytes);
    process.stdout.write(text + `total elapsed ${((Date.now() - startedMs) / 1000).toFixed(0)} s\n`);
    const results = path.join(REPO_ROOT, 'bench', 'results');
    mkdirSync(results, { recursive: true });
    await writeFile(path.join(results, `sparse-copy-${new Date().toISOString().replace(/[:.]/g, '-')}.json`), JSON.stringify({ sizeBytes, dataBytes, rows }, null, 2) + '\n');
  } finally {
    killAll();
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  killAll();
  process.stderr.write(`sparse-copy bench: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
