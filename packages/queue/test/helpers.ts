// Shared test helpers: make sure dist/ is current before starting worker threads, which load
// the compiled JavaScript (a worker cannot import the TypeScript sources vitest runs).
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
export const packageDir = join(here, '..');
export const repoRoot = join(packageDir, '..', '..');
export const distIndexUrl = pathToFileURL(join(packageDir, 'dist', 'index.js')).href;

function distIsStale(): boolean {
  const distIndex = join(packageDir, 'dist', 'index.js');
  const buildInfo = join(packageDir, 'dist', '.tsbuildinfo'); // tsc -b touches it on every build
  if (!existsSync(distIndex) || !existsSync(buildInfo)) return true;
  const builtMs = statSync(buildInfo).mtimeMs;
  const srcDir = join(packageDir, 'src');
  return readdirSync(srcDir).some((name) => statSync(join(srcDir, name)).mtimeMs > builtMs);
}

/** Builds packages/queue with the workspace tsc when dist is missing or older than src. */
export function ensureBuilt(): void {
  if (!distIsStale()) return;
  const tsc = join(repoRoot, 'node_modules', 'typescript', 'bin', 'tsc');
  execFileSync(process.execPath, [tsc, '-b', 'packages/queue'], { cwd: repoRoot, stdio: 'pipe', timeout: 60_000 });
}

export function fixtureUrl(name: string): URL {
  return new URL(`./fixtures/${name}`, import.meta.url);
}
