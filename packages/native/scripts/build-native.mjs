#!/usr/bin/env node
// Builds crates/onestack-native into packages/native/native/onestack-native.node.
//
// The addon is optional: when cargo is missing or the build fails, this prints why and exits 0,
// and @onestack/native runs on its pure-JS fallback. Cargo's outputs stay in
// crates/onestack-native/target (git-ignored), never in a shared or global target dir.
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, renameSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const packageDir = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const crateDir = resolve(packageDir, '../../crates/onestack-native');
const manifestPath = join(crateDir, 'Cargo.toml');
const targetDir = join(crateDir, 'target');
const outDir = join(packageDir, 'native');
const outFile = join(outDir, 'onestack-native.node');
const buildTimeoutMs = 15 * 60 * 1000; // a cold release build with LTO takes ~1 min on 2 cores

function giveUp(reason) {
  // An earlier successful build is left alone (a failed rebuild must not take it away); say so.
  const fallback = existsSync(outFile)
    ? `the previously built ${outFile} stays in use (delete it for the pure-JS fallback)`
    : 'the pure-JS fallback will be used';
  console.warn(`native addon not built: ${reason}; ${fallback}`);
  process.exit(0);
}

function run(command, args) {
  const env = { ...process.env };
  delete env.CARGO_TARGET_DIR; // keep artefacts in the crate's own target/
  return spawnSync(command, args, { cwd: packageDir, stdio: 'inherit', env, timeout: buildTimeoutMs });
}

function napiCliPath() {
  try {
    const require = createRequire(join(packageDir, 'package.json'));
    return join(dirname(require.resolve('@napi-rs/cli/package.json')), 'dist', 'cli.js');
  } catch {
    return null;
  }
}

// `napi build` names the file index.node and writes a .d.ts beside it: build into a scratch
// dir and move only the addon, so a failed build never leaves a half-written file behind.
function buildWithNapi(cliPath, scratchDir) {
  const args = [
    cliPath, 'build', '--release',
    '--manifest-path', manifestPath,
    '--target-dir', targetDir,
    '--output-dir', scratchDir,
  ];
  const result = run(process.execPath, args);
  if (result.error) return `napi build could not run (${result.error.message})`;
  if (result.status !== 0) return `napi build exited with ${result.status ?? result.signal}`;
  const built = join(scratchDir, 'index.node');
  return existsSync(built) ? { built } : `napi build produced no ${built}`;
}

// Without @napi-rs/cli (e.g. devDependencies not installed) plain cargo builds the same cdylib.
function buildWithCargo() {
  const result = run('cargo', ['build', '--release', '--manifest-path', manifestPath, '--target-dir', targetDir]);
  if (result.error) return `cargo build could not run (${result.error.message})`;
  if (result.status !== 0) return `cargo build exited with ${result.status ?? result.signal}`;
  const built = join(targetDir, 'release', 'libonestack_native.so');
  return existsSync(built) ? { built } : `cargo build produced no ${built}`;
}

function main() {
  if (process.platform !== 'linux') giveUp(`platform ${process.platform} is not Linux`);
  if (process.env.ONESTACK_NATIVE === 'off') giveUp('ONESTACK_NATIVE=off');
  const cargo = spawnSync('cargo', ['--version'], { encoding: 'utf8' });
  if (cargo.error || cargo.status !== 0) giveUp('cargo is not installed (see https://rustup.rs)');

  const scratchDir = mkdtempSync(join(tmpdir(), 'onestack-native-'));
  let outcome;
  try {
    const cliPath = napiCliPath();
    outcome = cliPath ? buildWithNapi(cliPath, scratchDir) : buildWithCargo();
    if (typeof outcome !== 'string') {
      mkdirSync(outDir, { recursive: true });
      // Copy then rename: a process that already loaded the old file keeps its mapping intact.
      const staged = `${outFile}.tmp-${process.pid}`;
      copyFileSync(outcome.built, staged);
      renameSync(staged, outFile);
    }
  } finally {
    rmSync(scratchDir, { recursive: true, force: true });
  }
  if (typeof outcome === 'string') giveUp(outcome);
  console.log(`native addon built: ${outFile}`);
}

main();
