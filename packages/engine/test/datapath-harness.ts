// Shared set-up for the data-path tests: element files, topologies, a started DataPath.
// Workers are .js files, so this imports the BUILT dist (run tsc -b packages/engine first).
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Layout } from '../src/config/types.js';
import { DATA_OFFSET_BYTES } from '../src/meta/types.js';
import { DataPath, type TopologyElement, type TopologyVolume } from '../dist/datapath/datapath.js';

export const MiB = 1024 * 1024;
export const KiB = 1024;
export const FILE_BYTES = 64 * MiB;
export const DATA_BYTES = FILE_BYTES - DATA_OFFSET_BYTES;

export function tempDir(): string {
  const root = fileURLToPath(new URL('../../../.tmp/', import.meta.url));
  fs.mkdirSync(root, { recursive: true });
  return fs.mkdtempSync(path.join(root, 'datapath-'));
}

export function sparseFiles(dir: string, count: number, bytes = FILE_BYTES): string[] {
  return Array.from({ length: count }, (_, i) => {
    const p = path.join(dir, `e${i}.img`);
    fs.writeFileSync(p, '');
    fs.truncateSync(p, bytes);
    return p;
  });
}

export function elementsFor(paths: readonly string[], opts: { direct?: boolean; dataBytes?: readonly number[] } = {}): TopologyElement[] {
  return paths.map((p, i) => ({
    index: i,
    name: `e${i}`,
    kind: 'local',
    path: p,
    direct: opts.direct ?? false,
    blockSizeBytes: 1,
    dataOffsetBytes: DATA_OFFSET_BYTES,
    dataSizeBytes: opts.dataBytes?.[i] ?? DATA_BYTES,
    state: 'active',
  }));
}

export function volume(index: number, layout: Layout, elements: readonly number[], sizeBytes: number, chunkBytes = 64 * KiB): TopologyVolume {
  return { index, name: `v${index}`, layout, chunkBytes, sizeBytes, order: 'fifo', elements };
}

export function pattern(length: number, seed: number): Uint8Array {
  const out = new Uint8Array(length);
  let x = (seed * 2654435761) >>> 0 || 1;
  for (let i = 0; i < length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 255;
  }
  return out;
}

export function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  return Buffer.compare(Buffer.from(a.buffer, a.byteOffset, a.length), Buffer.from(b.buffer, b.byteOffset, b.length)) === 0;
}

/** Rejects if `p` does not settle within `ms` (a hang is a failure, never a stuck test). */
export function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    p.finally(() => clearTimeout(timer)),
    new Promise<T>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what} did not settle within ${ms} ms`)), ms);
    }),
  ]);
}

export type Started = { dp: DataPath; dir: string; paths: string[] };

export async function startWith(layout: Layout, count: number, opts: { depth?: number; slots?: number; slotKiB?: number; middle?: number; bottom?: number; bad?: readonly number[]; direct?: boolean; chunkBytes?: number } = {}): Promise<Started> {
  const dir = tempDir();
  const paths = sparseFiles(dir, count);
  for (const i of opts.bad ?? []) {
    // A directory where the element file should be: open fails in every bottom worker.
    fs.rmSync(paths[i]!);
    fs.mkdirSync(paths[i]!);
  }
  const dp = await DataPath.start({
    pools: { top: 1, middle: opts.middle ?? 1, bottom: opts.bottom ?? 2, remote: 1 },
    queue: { depth: opts.depth ?? 64, slots: opts.slots ?? 16, slotKiB: opts.slotKiB ?? 256 },
    probeDir: dir,
  });
  const els = elementsFor(paths, { direct: opts.direct ?? false });
  const sizes = els.map((e) => e.dataSizeBytes);
  const size = layout === 'linear' ? sizes.reduce((a, b) => a + b, 0) : layout === 'raid0' ? count * DATA_BYTES : DATA_BYTES;
  await dp.setTopology([volume(0, layout, els.map((e) => e.index), size, opts.chunkBytes)], els);
  return { dp, dir, paths };
}

export async function stop(s: Started | undefined): Promise<void> {
  if (s === undefined) return;
  await s.dp.close();
  fs.rmSync(s.dir, { recursive: true, force: true });
}
