// Integrity benchmark (issue 10): the cost of per-block checksums. The same raid1 of two local
// images is served twice, once plain and once with `integrity: true`, and fio runs the four
// workloads against each in one run (interleaved, so drift on a shared machine hits both alike).
// Prints IOPS / MiB/s and the integrity ÷ plain ratio per workload; keeps a JSON record.
// Build: pnpm exec tsc -p bench    Run: node bench/dist/integrity.js [--seconds 5] [--image-mib 1024] [--rounds 2]
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

function progress(msg: string): void {
  process.stderr.write(`[integrity ${new Date().toISOString().slice(11, 19)}] ${msg}\n`);
}

async function daemon(dir: string, name: string, integrity: boolean, imageBytes: number): Promise<BenchDaemon> {
  const images = [0, 1].map((i) => path.join(dir, `${name}-${i}.img`));
  for (const img of images) await sparseImage(img, imageBytes + HEADER_BYTES + imageBytes / 512); // room for the checksum area
  return startBenchDaemon(dir, name, [
    'cache: { readMiB: 0 }', // measure the elements and the checksums, not the RAM cache
    'elements:',
    ...images.map((img, i) => `  - { name: e${i}, uri: "file:${img}" }`),
    'volumes:',
    `  - { name: v, layout: raid1, elements: [e0, e1], integrity: ${integrity}, boot: true }`,
  ]);
}

interface Row { readonly workload: string; readonly plain: number[]; readonly integrity: number[] }

const median = (xs: readonly number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? Number.NaN;

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { seconds: { type: 'string' }, 'image-mib': { type: 'string' }, rounds: { type: 'string' }, dir: { type: 'string' } } });
  const seconds = Number(values.seconds ?? '5');
  const imageBytes = Number(values['image-mib'] ?? '1024') * MiB;
  const rounds = Math.min(Math.max(1, Number(values.rounds ?? '2')), 10);
  const dir = mkdtempSync(path.join(values.dir ?? os.tmpdir(), 'onestack-integrity-bench-'));
  const startedMs = Date.now();
  try {
    const plain = await daemon(dir, 'plain', false, imageBytes);
    const checked = await daemon(dir, 'integrity', true, imageBytes);
    const rows: Row[] = [];
    // Writes first, so the reads find written (checksummed) blocks.
    const order: Workload[] = ['seqwrite1m', 'randwrite4k', 'seqread1m', 'randread4k'].map((id) => WORKLOADS.find((w) => w.id === id)!);
    for (const w of order) {
      const row: Row = { workload: w.title, plain: [], integrity: [] };
      for (let r = 0; r < rounds; r++) {
        for (const [d, into] of [[plain, row.plain], [checked, row.integrity]] as const) {
          const m = await runFio({ kind: 'nbd', uri: `nbd://127.0.0.1:${d.nbdPort}/v` }, w, seconds, dir);
          into.push(headline(m.figures, w));
        }
        progress(`${w.title} round ${r + 1}: plain ${row.plain.at(-1)!.toFixed(0)}, integrity ${row.integrity.at(-1)!.toFixed(0)} ${w.headline === 'iops' ? 'IOPS' : 'MiB/s'}`);
      }
      rows.push(row);
    }
    await stopServer(plain.server);
    await stopServer(checked.server);
    const lines = ['raid1 of two local images (page cache), RAM read cache off; medians of the rounds', '',
      `${'workload'.padEnd(20)}${'plain'.padStart(12)}${'integrity'.padStart(12)}${'ratio'.padStart(8)}`];
    for (const r of rows) lines.push(`${r.workload.padEnd(20)}${median(r.plain).toFixed(0).padStart(12)}${median(r.integrity).toFixed(0).padStart(12)}${(median(r.integrity) / median(r.plain)).toFixed(2).padStart(8)}`);
    process.stdout.write(lines.join('\n') + `\n\ntotal elapsed ${((Date.now() - startedMs) / 1000).toFixed(0)} s\n`);
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
