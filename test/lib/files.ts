// Temp dirs, sparse element images, random payloads, hashes, and onestack config files.
import { createHash, randomFillSync } from 'node:crypto';
import { closeSync, existsSync, mkdtempSync, openSync, readSync, rmSync, writeSync } from 'node:fs';
import { open, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';

export const MiB = 1024 * 1024;
export const GiB = 1024 * MiB;
/** Every element starts with a reserved header; volume data starts this far into each element. */
export const DATA_OFFSET_BYTES = 4 * MiB;

export function tempDir(prefix: string): string {
  return mkdtempSync(path.join(os.tmpdir(), `onestack-e2e-${prefix}-`));
}

export function removeDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
}

export async function sparseFile(file: string, sizeBytes: number): Promise<void> {
  const fh = await open(file, 'w');
  try { await fh.truncate(sizeBytes); } finally { await fh.close(); }
}

/** A file of random bytes; returns its sha256. */
export async function randomFile(file: string, sizeBytes: number): Promise<string> {
  const block = Buffer.alloc(4 * MiB);
  const hash = createHash('sha256');
  const fh = await open(file, 'w');
  try {
    for (let done = 0; done < sizeBytes; done += block.length) {
      const n = Math.min(block.length, sizeBytes - done);
      randomFillSync(block, 0, n);
      hash.update(block.subarray(0, n));
      await fh.write(block, 0, n, done);
    }
  } finally { await fh.close(); }
  return hash.digest('hex');
}

/** sha256 of [offset, offset + length) of a file (length defaults to the rest of it). */
export async function sha256Range(file: string, offsetBytes = 0, lengthBytes?: number): Promise<string> {
  const fh = await open(file, 'r');
  try {
    const end = lengthBytes === undefined ? (await fh.stat()).size : offsetBytes + lengthBytes;
    const block = Buffer.alloc(4 * MiB);
    const hash = createHash('sha256');
    for (let pos = offsetBytes; pos < end;) {
      const { bytesRead } = await fh.read(block, 0, Math.min(block.length, end - pos), pos);
      if (bytesRead === 0) throw new Error(`${file}: short read at ${pos}, wanted up to ${end}`);
      hash.update(block.subarray(0, bytesRead));
      pos += bytesRead;
    }
    return hash.digest('hex');
  } finally { await fh.close(); }
}

export async function readAt(file: string, offsetBytes: number, lengthBytes: number): Promise<Buffer> {
  const fh = await open(file, 'r');
  try {
    const buf = Buffer.alloc(lengthBytes);
    const { bytesRead } = await fh.read(buf, 0, lengthBytes, offsetBytes);
    return buf.subarray(0, bytesRead);
  } finally { await fh.close(); }
}

/** First offset (relative to the ranges' start) where two file ranges differ, or -1. */
export async function firstDifference(a: string, b: string, offsetBytes: number, lengthBytes: number): Promise<number> {
  const [fa, fb] = [await open(a, 'r'), await open(b, 'r')];
  try {
    const [ba, bb] = [Buffer.alloc(4 * MiB), Buffer.alloc(4 * MiB)];
    for (let done = 0; done < lengthBytes; done += ba.length) {
      const n = Math.min(ba.length, lengthBytes - done);
      const ra = await fa.read(ba, 0, n, offsetBytes + done);
      const rb = await fb.read(bb, 0, n, offsetBytes + done);
      if (ra.bytesRead !== n || rb.bytesRead !== n) return done;
      const cmp = ba.subarray(0, n).compare(bb.subarray(0, n));
      if (cmp !== 0) {
        for (let i = 0; i < n; i++) if (ba[i] !== bb[i]) return done + i;
      }
    }
    return -1;
  } finally { await fa.close(); await fb.close(); }
}

export interface LocalElementSpec {
  readonly name: string;
  readonly sizeBytes: number;
}

/** A remote element: its URI and any extra element keys, written as YAML flow values. */
export interface RemoteElementSpec {
  readonly name: string;
  readonly uri: string;
  readonly options?: Readonly<Record<string, unknown>>;
}

export type ElementSpec = LocalElementSpec | RemoteElementSpec;

export interface VolumeSpec {
  readonly name: string;
  readonly layout: 'linear' | 'raid0' | 'raid1' | 'raid10' | 'raid5' | 'raid6';
  readonly elements: readonly string[];
  readonly chunkKiB?: number;
  readonly boot?: boolean;
  /** Hot spares (raid1/raid10/raid5/raid6): element names. */
  readonly spares?: readonly string[];
  /** Write-intent bitmap region size (raid1/raid10). */
  readonly bitmapRegionKiB?: number;
  /** Per-block checksums (raid1/raid10/raid5/raid6; docs/integrity.md). */
  readonly integrity?: boolean;
}

export interface WrittenConfig {
  readonly configPath: string;
  /** Element name → image path. */
  readonly images: ReadonlyMap<string, string>;
}

/**
 * Writes `onestack.yaml` in `dir` (format of ../shared/SPEC.md) with `file:` elements over
 * sparse images it creates there. Ports and the data dir come from the command line.
 */
export async function writeConfig(dir: string, elements: readonly ElementSpec[], volumes: readonly VolumeSpec[], extraLines: readonly string[] = [],
  opts: { keepImages?: boolean } = {}): Promise<WrittenConfig> {
  const images = new Map<string, string>();
  const lines = ['# written by test/lib/files.ts', 'elements:'];
  for (const e of elements) {
    if ('uri' in e) {
      const extra = Object.entries(e.options ?? {}).map(([k, v]) => `, ${k}: ${JSON.stringify(v)}`).join('');
      lines.push(`  - { name: ${e.name}, uri: ${JSON.stringify(e.uri)}${extra} }`);
      continue;
    }
    const img = path.join(dir, `${e.name}.img`);
    // keepImages: a rewritten config over the same images (restart tests) must not wipe them.
    if (opts.keepImages !== true || !existsSync(img)) await sparseFile(img, e.sizeBytes);
    images.set(e.name, img);
    lines.push(`  - { name: ${e.name}, uri: "file:${img}", cache: writeback }`);
  }
  lines.push(...extraLines, 'volumes:');
  for (const v of volumes) {
    const chunk = v.chunkKiB === undefined ? '' : `, chunkKiB: ${v.chunkKiB}`;
    const boot = v.boot === true ? ', boot: true' : '';
    const spares = v.spares === undefined ? '' : `, spares: [${v.spares.join(', ')}]`;
    const region = v.bitmapRegionKiB === undefined ? '' : `, bitmapRegionKiB: ${v.bitmapRegionKiB}`;
    const integrity = v.integrity === true ? ', integrity: true' : '';
    lines.push(`  - { name: ${v.name}, layout: ${v.layout}, elements: [${v.elements.join(', ')}]${chunk}${boot}${spares}${region}${integrity} }`);
  }
  const configPath = path.join(dir, 'onestack.yaml');
  await writeFile(configPath, lines.join('\n') + '\n');
  return { configPath, images };
}

/**
 * XORs `lengthBytes` bytes of `file` at `offsetBytes` with 0xff (every byte changes) with a plain
 * write, behind the daemon's back — as a bad disk or a buggy target would leave them.
 */
export function flipBytes(file: string, offsetBytes: number, lengthBytes = 1): void {
  const fd = openSync(file, 'r+');
  try {
    const b = Buffer.alloc(lengthBytes);
    readSync(fd, b, 0, lengthBytes, offsetBytes);
    for (let i = 0; i < lengthBytes; i++) b[i] = b[i]! ^ 0xff;
    writeSync(fd, b, 0, lengthBytes, offsetBytes);
  } finally {
    closeSync(fd);
  }
}
