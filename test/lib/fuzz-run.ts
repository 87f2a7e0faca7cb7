// Shared knobs of the fuzz tests (issue 8): one fixed seed and a per-property case count, both
// overridable from the environment, and a case counter for the long run (bench/fuzz.ts).
//   FUZZ_SEED=N     seed of every property (default fixed, so CI is reproducible)
//   FUZZ_RUNS=N     cases per property (default: each property's CI count, sized to keep a file < ~20 s)
//   FUZZ_LIVE_RUNS=N  batches of the live-server fuzz (test/fuzz-live.test.ts; FUZZ_RUNS does not apply)
//   FUZZ_REPORT=F   append one JSON line per property {file, name, runs, ms, seed, failed} to F
import { appendFileSync } from 'node:fs';
import path from 'node:path';
import fc from 'fast-check';
import { expect } from 'vitest';

const DEFAULT_SEED = 20261108;

function intFromEnv(name: string): number | undefined {
  const text = process.env[name];
  if (text === undefined || text.trim() === '') return undefined;
  const value = Number(text);
  if (!Number.isSafeInteger(value)) throw new Error(`${name}=${text} is not an integer`);
  return value;
}

export const FUZZ_SEED = intFromEnv('FUZZ_SEED') ?? DEFAULT_SEED;
const RUNS_OVERRIDE = intFromEnv('FUZZ_RUNS');
if (RUNS_OVERRIDE !== undefined && RUNS_OVERRIDE < 1) throw new Error('FUZZ_RUNS must be at least 1');

/** Cases for a property whose CI count is `ciRuns` (FUZZ_RUNS wins when set). */
export function runsFor(ciRuns: number): number {
  return RUNS_OVERRIDE ?? ciRuns;
}

/** Batches of the live-server fuzz: FUZZ_LIVE_RUNS, else its CI count. */
export function liveRunsFor(ciRuns: number): number {
  const runs = intFromEnv('FUZZ_LIVE_RUNS') ?? ciRuns;
  if (runs < 1) throw new Error('FUZZ_LIVE_RUNS must be at least 1');
  return runs;
}

/** Adds a line to the FUZZ_REPORT file (for counts that are not fast-check runs, like live sessions). */
export function recordCases(name: string, cases: number, ms: number, failed = false): void {
  record(name, cases, ms, failed);
}

function record(name: string, runs: number, ms: number, failed: boolean): void {
  const file = process.env.FUZZ_REPORT;
  if (file === undefined || file === '') return;
  const testFile = path.basename(expect.getState().testPath ?? 'unknown');
  appendFileSync(file, `${JSON.stringify({ file: testFile, name, runs, ms: Math.round(ms), seed: FUZZ_SEED, failed })}\n`);
}

function parameters<Ts>(ciRuns: number, extra?: fc.Parameters<Ts>): fc.Parameters<Ts> {
  // Shrinking is bounded so that a failure is reported in seconds, not minutes.
  return { seed: FUZZ_SEED, numRuns: runsFor(ciRuns), maxSkipsPerRun: 1000, includeErrorInReport: true, ...extra };
}

function report<Ts>(name: string, details: fc.RunDetails<Ts>, startedMs: number): void {
  record(name, details.numRuns, performance.now() - startedMs, details.failed);
  if (details.failed) throw new Error(`fuzz property "${name}" failed (FUZZ_SEED=${FUZZ_SEED})\n${fc.defaultReportMessage(details) ?? ''}`);
}

/** Runs a synchronous property with the shared seed; throws fast-check's report on failure. */
export function fuzz<Ts>(name: string, property: fc.IProperty<Ts>, ciRuns: number, extra?: fc.Parameters<Ts>): void {
  const startedMs = performance.now();
  let details: fc.RunDetails<Ts>;
  try {
    details = fc.check(property, parameters(ciRuns, extra));
  } catch (err) {
    record(name, 0, performance.now() - startedMs, true); // an arbitrary itself threw
    throw err;
  }
  report(name, details, startedMs);
}

/** The same for an asynchronous property. */
export async function fuzzAsync<Ts>(name: string, property: fc.IAsyncProperty<Ts>, ciRuns: number, extra?: fc.Parameters<Ts>): Promise<void> {
  const startedMs = performance.now();
  let details: fc.RunDetails<Ts>;
  try {
    details = await fc.check(property, parameters(ciRuns, extra));
  } catch (err) {
    record(name, 0, performance.now() - startedMs, true);
    throw err;
  }
  report(name, details, startedMs);
}

/**
 * Runs `fn` and returns it together with the ArrayBuffer bytes that are alive afterwards but were
 * not before (an upper bound on what it allocated and kept; a GC during `fn` only lowers it).
 */
export function arrayBufferGrowth<T>(fn: () => T): { value: T; grownBytes: number } {
  const before = process.memoryUsage().arrayBuffers;
  const value = fn();
  return { value, grownBytes: process.memoryUsage().arrayBuffers - before };
}

/** What an "only the codec's own error" check calls: rethrows anything that is not `errorClass`. */
export function onlyTyped(err: unknown, ...errorClasses: ReadonlyArray<abstract new (...args: never[]) => Error>): void {
  if (errorClasses.some((cls) => err instanceof cls)) return;
  throw err;
}
