// The long fuzz run (issue 8): every codec fuzz file (packages/*/test/fuzz-*.test.ts) with many
// more cases per property than CI runs, optionally the live-server fuzz with many more batches,
// then a summary of the cases run per property, the total, and the time taken.
// Build: pnpm exec tsc -p bench
// Run:   node bench/dist/fuzz.js --runs 100000 [--seed 42] [--live-batches 2000] [--no-codecs] [--only fuzz-config]
// The same without this script: FUZZ_RUNS=100000 pnpm exec vitest run packages/*/test/fuzz-*.test.ts
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const REPO_ROOT = fileURLToPath(new URL('../..', import.meta.url));
const RESULTS_DIR = path.join(REPO_ROOT, 'bench', 'results');
/** No per-test timeout worth having in a run that is meant to be long: one day. */
const TEST_TIMEOUT_MS = 24 * 3600 * 1000;

interface Line { file: string; name: string; runs: number; ms: number; seed: number; failed: boolean }

function progress(msg: string): void {
  process.stderr.write(`[fuzz ${new Date().toISOString().slice(11, 19)}] ${msg}\n`);
}

function positiveInt(text: string | undefined, what: string, fallback: number | undefined): number | undefined {
  if (text === undefined) return fallback;
  const n = Number(text);
  if (!Number.isSafeInteger(n) || n < 1) throw new Error(`${what} must be a positive integer, got ${text}`);
  return n;
}

/** The codec fuzz files, as vitest paths. */
function codecFiles(): string[] {
  const files: string[] = [];
  for (const pkg of readdirSync(path.join(REPO_ROOT, 'packages'))) {
    const dir = path.join(REPO_ROOT, 'packages', pkg, 'test');
    if (!existsSync(dir)) continue;
    for (const f of readdirSync(dir)) if (/^fuzz-.*\.test\.ts$/.test(f)) files.push(path.join('packages', pkg, 'test', f));
  }
  return files.sort();
}

function vitest(files: readonly string[], env: NodeJS.ProcessEnv): Promise<number> {
  return new Promise((resolve) => {
    const args = ['exec', 'vitest', 'run', `--testTimeout=${TEST_TIMEOUT_MS}`, `--hookTimeout=${TEST_TIMEOUT_MS}`, ...files];
    progress(`pnpm ${args.join(' ')}`);
    const child = spawn('pnpm', args, { cwd: REPO_ROOT, env: { ...process.env, ...env }, stdio: 'inherit' });
    child.on('error', (err) => { progress(`cannot start vitest: ${err.message}`); resolve(127); });
    child.on('exit', (code, signal) => resolve(code ?? (signal !== null ? 128 : 1)));
  });
}

function readReport(file: string): Line[] {
  if (!existsSync(file)) return [];
  return readFileSync(file, 'utf8').split('\n').filter((l) => l.trim() !== '').map((l) => JSON.parse(l) as Line);
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: { runs: { type: 'string' }, seed: { type: 'string' }, 'live-batches': { type: 'string' }, 'no-codecs': { type: 'boolean' }, only: { type: 'string' } },
  });
  const runs = positiveInt(values.runs, '--runs', 20_000)!;
  const seed = values.seed === undefined ? Date.now() % 2 ** 31 : Number(values.seed);
  if (!Number.isSafeInteger(seed)) throw new Error(`--seed must be an integer, got ${values.seed}`);
  const liveBatches = positiveInt(values['live-batches'], '--live-batches', undefined);
  const work = mkdtempSync(path.join(os.tmpdir(), 'onestack-fuzz-'));
  const report = path.join(work, 'report.jsonl');
  const startedMs = performance.now();
  let rc = 0;
  try {
    const env = { FUZZ_SEED: String(seed), FUZZ_REPORT: report };
    if (values['no-codecs'] !== true) {
      const files = codecFiles().filter((f) => values.only === undefined || f.includes(values.only));
      if (files.length === 0) throw new Error(`no codec fuzz file matches --only ${values.only ?? ''}`);
      progress(`${files.length} codec fuzz files, ${runs} cases per property, seed ${seed}`);
      rc = Math.max(rc, await vitest(files, { ...env, FUZZ_RUNS: String(runs) }));
    }
    if (liveBatches !== undefined) {
      progress(`live-server fuzz: ${liveBatches} batches of up to 8 connections`);
      rc = Math.max(rc, await vitest(['test/fuzz-live.test.ts'], { ...env, FUZZ_LIVE_RUNS: String(liveBatches) }));
    }
    const lines = readReport(report);
    const wallMs = performance.now() - startedMs;
    // A live batch is a handful of connections, each counted on its own line: count those.
    const total = lines.filter((l) => l.name !== 'live NBD batches').reduce((n, l) => n + l.runs, 0);
    for (const l of lines) console.log(`${l.failed ? 'FAIL' : 'ok  '} ${String(l.runs).padStart(9)} cases ${(l.ms / 1000).toFixed(1).padStart(8)} s  ${l.file}: ${l.name}`);
    console.log(`fuzz: ${total} cases in ${lines.length} properties, ${(wallMs / 1000).toFixed(0)} s wall, seed ${seed}, ${lines.filter((l) => l.failed).length} failed, vitest exit ${rc}`);
    mkdirSync(RESULTS_DIR, { recursive: true });
    const out = path.join(RESULTS_DIR, `fuzz-${new Date().toISOString().replace(/[:.]/g, '-')}.json`);
    writeFileSync(out, `${JSON.stringify({ seed, runsPerProperty: runs, liveBatches: liveBatches ?? 0, totalCases: total, wallMs: Math.round(wallMs), vitestExit: rc, properties: lines }, null, 2)}\n`);
    progress(`results: ${path.relative(REPO_ROOT, out)}`);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
  process.exitCode = rc;
}

main().catch((err: unknown) => {
  process.stderr.write(`fuzz: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exitCode = 1;
});
