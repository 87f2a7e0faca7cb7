// Set-up for raid5/6 data-path tests: a DataPath over local element files with one raid5/raid6
// volume, and checks that read the leg files directly and recompute P and Q with the tests' own
// maths (raid56-ref.ts), so the engine's parity code is not trusted by its own test.
import { randomUUID } from 'node:crypto';
import * as fs from 'node:fs';
import { DataPath } from '../dist/datapath/datapath.js';
import { DATA_OFFSET_BYTES } from '../src/meta/types.js';
import { DATA_BYTES, elementsFor, KiB, sparseFiles, tempDir } from './datapath-harness.js';
import { readFileRange } from './helpers.js';
import { refPQ, refRoles } from './raid56-ref.js';

export interface ParityRig {
  dp: DataPath;
  readonly dir: string;
  readonly paths: string[];
  readonly layout: 'raid5' | 'raid6';
  readonly n: number;
  readonly np: 1 | 2;
  readonly chunkBytes: number;
  readonly sizeBytes: number;
  readonly arrayId: string;
}

export interface RigOptions {
  readonly chunkBytes?: number;
  readonly middle?: number;
  readonly slots?: number;
  /** Reuse these files (a restart after a simulated crash) instead of creating new ones. */
  readonly reuse?: ParityRig;
  /** Element states at bind time, by role (default active). */
  readonly failed?: readonly number[];
  /** O_DIRECT elements (cache: none). */
  readonly direct?: boolean;
}

export async function startParity(layout: 'raid5' | 'raid6', n: number, opts: RigOptions = {}): Promise<ParityRig> {
  const dir = opts.reuse?.dir ?? tempDir();
  const paths = opts.reuse?.paths ?? sparseFiles(dir, n);
  const np = layout === 'raid5' ? 1 : 2;
  const chunkBytes = opts.reuse?.chunkBytes ?? opts.chunkBytes ?? 64 * KiB;
  const dp = await DataPath.start({
    pools: { top: 1, middle: opts.middle ?? 1, bottom: 2, remote: 1 },
    queue: { depth: 64, slots: opts.slots ?? 16, slotKiB: 256 },
    probeDir: dir,
  });
  const els = elementsFor(paths, { direct: opts.direct ?? false }).map((e, role) => (opts.failed?.includes(role) === true ? { ...e, state: 'failed' as const } : e));
  const sizeBytes = (n - np) * Math.floor(DATA_BYTES / chunkBytes) * chunkBytes;
  const arrayId = opts.reuse?.arrayId ?? randomUUID();
  await dp.setTopology([{ index: 0, name: 'v0', layout, chunkBytes, sizeBytes, order: 'fifo', elements: els.map((e) => e.index), arrayId }], els);
  return { dp, dir, paths, layout, n, np, chunkBytes, sizeBytes, arrayId };
}

export async function stopParity(rig: ParityRig | undefined, keepFiles = false): Promise<void> {
  if (rig === undefined) return;
  await rig.dp.close();
  if (!keepFiles) fs.rmSync(rig.dir, { recursive: true, force: true });
}

function chunkOf(rig: ParityRig, role: number, row: number): Uint8Array {
  return readFileRange(rig.paths[role]!, DATA_OFFSET_BYTES + row * rig.chunkBytes, rig.chunkBytes);
}

/** Rows of [0, rows) whose P (and Q) in the leg files differ from what the data chunks give. */
export function badParityRows(rig: ParityRig, rows: number, skipRoles: readonly number[] = []): number[] {
  const bad: number[] = [];
  for (let row = 0; row < rows; row++) {
    const roles = refRoles(rig.n, rig.np, row);
    if (roles.data.some((r) => skipRoles.includes(r))) continue;
    const { p, q } = refPQ(roles.data.map((r) => chunkOf(rig, r, row)));
    const pOk = skipRoles.includes(roles.p) || Buffer.compare(p, chunkOf(rig, roles.p, row)) === 0;
    const qOk = rig.np === 1 || skipRoles.includes(roles.q) || Buffer.compare(q, chunkOf(rig, roles.q, row)) === 0;
    if (!pOk || !qOk) bad.push(row);
  }
  return bad;
}

/** Volume bytes [0, length) put together from the data chunks in the leg files (md layout). */
export function volumeFromFiles(rig: ParityRig, lengthBytes: number): Uint8Array {
  const out = new Uint8Array(lengthBytes);
  const k = rig.n - rig.np;
  for (let c = 0; c * rig.chunkBytes < lengthBytes; c++) {
    const row = Math.floor(c / k);
    const role = refRoles(rig.n, rig.np, row).data[c % k]!;
    const bytes = chunkOf(rig, role, row);
    out.set(bytes.subarray(0, Math.min(rig.chunkBytes, lengthBytes - c * rig.chunkBytes)), c * rig.chunkBytes);
  }
  return out;
}

export function rowsIn(rig: ParityRig, lengthBytes: number): number {
  return Math.ceil(lengthBytes / ((rig.n - rig.np) * rig.chunkBytes));
}
