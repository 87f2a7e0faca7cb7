// Shared set-up: a directory on a real disk (O_DIRECT with real alignment rules), a tmpfs
// directory, and a loop device when losetup works here.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, statfsSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
export const packageDir = join(here, '..');
export const repoRoot = join(packageDir, '..', '..');
export const addonFile = join(packageDir, 'native', 'onestack-native.node');

const tmpfsMagic = 0x01021994;

function isTmpfs(dir: string): boolean {
  return statfsSync(dir).type === tmpfsMagic;
}

/** A fresh directory on a disk-backed fs (repo .tmp/, else os.tmpdir()), or null if none. */
export function makeDiskDir(): string | null {
  const repoTmp = join(repoRoot, '.tmp');
  mkdirSync(repoTmp, { recursive: true });
  for (const parent of [repoTmp, tmpdir()]) {
    if (!isTmpfs(parent)) return mkdtempSync(join(parent, 'native-test-'));
  }
  return null;
}

/** A fresh directory on tmpfs (/dev/shm), or null if there is none. */
export function makeTmpfsDir(): string | null {
  if (!existsSync('/dev/shm') || !isTmpfs('/dev/shm')) return null;
  return mkdtempSync(join('/dev/shm', 'onestack-native-test-'));
}

export function removeDir(dir: string | null): void {
  if (dir !== null) rmSync(dir, { recursive: true, force: true });
}

export function writePattern(path: string, lengthBytes: number, seed = 7): Buffer {
  const data = Buffer.alloc(lengthBytes);
  for (let i = 0; i < lengthBytes; i += 1) data[i] = (i * 31 + seed) & 0xff || 1; // never 0
  writeFileSync(path, data);
  return data;
}

export interface LoopDevice {
  path: string;
  sizeBytes: number;
  detach(): void;
}

/** Attaches a sparse file as a loop device; returns the reason instead when that fails here. */
export function attachLoop(dir: string, sizeBytes: number): LoopDevice | string {
  const image = join(dir, 'loop.img');
  writeFileSync(image, '');
  truncateSync(image, sizeBytes);
  try {
    const path = execFileSync('losetup', ['-f', '--show', image], { encoding: 'utf8', timeout: 10_000 }).trim();
    const detach = (): void => {
      execFileSync('losetup', ['-d', path], { timeout: 10_000 });
    };
    return { path, sizeBytes, detach };
  } catch (error) {
    const message = error instanceof Error ? error.message.split('\n')[0] : String(error);
    return `losetup cannot attach a loop device here (needs root and /dev/loop-control): ${message}`;
  }
}
