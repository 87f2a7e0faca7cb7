// Integrity benchmark (issue 10): the cost of per-block checksums. The same volume is served
// twice, once plain and once with `integrity: true`, for each layout (a raid1 of two local images,
// a raid5 of three: data and parity units checksummed), and fio runs the four workloads against
// every volume in one run (interleaved, so drift on a shared machine hits all alike).
// Prints IOPS / MiB/s and the integrity ÷ plain ratio per layout and workload; keeps a JSON record.
// Build: pnpm exec tsc -p bench
// Run: node bench/dist/integrity.js [--seconds 5] [--image-mib 1024] [--rounds 2] [--layouts raid1,raid5] [--no-record]
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { sparseImage } from './lib/images.js';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { REPO_ROOT, startBenchDaemon, type BenchDaemon } from './lib/daemon.js';
import { headline, runFio, WORKLOADS, type Workload } from './lib/fio.js';
import { killAll, stopServer } from './lib/proc.js';

const MiB = 1024 * 1024;
const HEADER_BYTES = 4 * MiB;
/** Images per layout: the fewest each layout allows. */
const LAYOUTS = { raid1: 2, raid5: 3 } as const;
type Layout = keyof typeof LAYOUTS;

function progress(msg: string): void {
  process.stderr.write(`[integrity ${new Date().toISOString().slice(11, 19)}] ${msg}\n`);
}

async function daemon(dir: string, layout: Layout, integrity: boolean, imageBytes: number): Promise<BenchDaemon> {
  const name = `${layout}-${integrity ? 'integrity' : 'plain'}`;
  const images = Array.from({ length: LAYOUTS[layout] }, (_, i) => path.join(dir, `${name}-${i}.img`));
  for (const img of images) await sparseImage(img, imageBytes + HEADER_BYTES + imageBytes / 512); // room for the checksum area
  return startBenchDaemon(dir, name, [
    'cache: { readMiB: 0 }', // measure the elements and the checksums, not the RAM cache
    'elements:',
    ...images.map((img, i) => `  - { name: e${i}, uri: "file:${img}" }`),
    'volumes:',
    `  - { name: v, layout: ${layout}, elements: [${images.map((_, i) => `e${i}`).join(', ')}], integrity: ${integrity}, boot: true }`,
  ]);
}

interface Row { readonly layout: Layout; readonly workload: string; readonly plain: number[]; readonly integrity: number[] }
interface Pair { readonly layout: Layout; readonly plain: BenchDaemon; readonly integrity: BenchDaemon }

const median = (xs: readonly number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? Number.NaN;

function parseLayouts(s: string): Layout[] {
  const out = s.split(',').map((x) => x.trim()).filter((x) => x !== '');
  const bad = out.filter((x) => !(x in LAYOUTS));
  if (bad.length > 0 || out.length === 0) throw new Error(`--layouts ${s}: choose from ${Object.keys(LAYOUTS).join(', ')}`);
  return out as Layout[];
}

/** Every workload on every volume, rounds interleaved across all of them. */
async function measure(pairs: readonly Pair[], seconds: number, rounds: number, dir: string): Promise<Row[]> {
  const rows: Row[] = [];
  // Writes first, so the reads find written (checksummed) blocks.
  const order: Workload[] = ['seqwrite1m', 'randwrite4k', 'seqread1m', 'randread4k'].map((id) => WORKLOADS.find((w) => w.id === id)!);
  for (const w of order) {
    const mine = pairs.map((p) => ({ pair: p, row: { layout: p.layout, workload: w.title, plain: [] as number[], integrity: [] as number[] } }));
    for (let r = 0; r < rounds; r++) {
      for (const { pair, row } of mine) {
        for (const [d, into] of [[pair.plain, row.plain], [pair.integrity, row.integrity]] as const) {
          const m = await runFio({ kind: 'nbd', uri: `nbd://127.0.0.1:${d.nbdPort}/v` }, w, seconds, dir);
          into.push(headline(m.figures, w));
        }
        progress(`${pair.layout} ${w.title} round ${r + 1}: plain ${row.plain.at(-1)!.toFixed(0)}, integrity ${row.integrity.at(-1)!.toFixed(0)} ${w.headline === 'iops' ? 'IOPS' : 'MiB/s'}`);
      }
    }
    rows.push(...mine.map((m) => m.row));
  }
  return rows;
}

function table(rows: readonly Row[]): string {
  const lines = ['raid1 of two / raid5 of three local images (page cache), RAM read cache off; medians of the rounds', '',
    `${'layout'.padEnd(8)}${'workload'.padEnd(20)}${'plain'.padStart(12)}${'integrity'.padStart(12)}${'ratio'.padStart(8)}`];
  for (const r of rows) {
    const [p, i] = [median(r.plain), median(r.integrity)];
    lines.push(`${r.layout.padEnd(8)}${r.workload.padEnd(20)}${p.toFixed(0).padStart(12)}${i.toFixed(0).padStart(12)}${(i / p).toFixed(2).padStart(8)}`);
  }
  return lines.join('\n');
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { seconds: { type: 'string' }, 'image-mib': { type: 'string' }, rounds: { type: 'string' }, dir: { type: 'string' },
    layouts: { type: 'string' }, 'no-record': { type: 'boolean' } } });
  const seconds = Number(values.seconds ?? '5');
  const imageBytes = Number(values['image-mib'] ?? '1024') * MiB;
  const rounds = Math.min(Math.max(1, Number(values.rounds ?? '2')), 10);
  const layouts = parseLayouts(values.layouts ?? 'raid1,raid5');
  if (!(seconds > 0 && imageBytes >= 16 * MiB)) throw new Error(`--seconds must be positive and --image-mib at least 16 (got ${values.seconds}, ${values['image-mib']})`);
  const dir = mkdtempSync(path.join(values.dir ?? os.tmpdir(), 'onestack-integrity-bench-'));
  const startedMs = Date.now();
  try {
    const pairs: Pair[] = [];
    for (const layout of layouts) pairs.push({ layout, plain: await daemon(dir, layout, false, imageBytes), integrity: await daemon(dir, layout, true, imageBytes) });
    const rows = await measure(pairs, seconds, rounds, dir);
    for (const p of pairs) {
      await stopServer(p.plain.server);
      await stopServer(p.integrity.server);
    }
    process.stdout.write(table(rows) + `\n\ntotal elapsed ${((Date.now() - startedMs) / 1000).toFixed(0)} s\n`);
    if (values['no-record'] === true) return;
    const results = path.join(REPO_ROOT, 'bench', 'results');
    mkdirSync(results, { recursive: true });
    await writeFile(path.join(results, `integrity-${new Date().toISOString().replace(/[:.]/g, '-')}.json`), JSON.stringify({ seconds, imageBytes, rounds, rows }, null, 2) + '\n');
  } finally {
    killAll();
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  killAll();
  process.stderr.write(`integrity bench: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
