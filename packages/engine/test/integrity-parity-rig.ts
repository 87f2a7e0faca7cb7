// A raid5/raid6 test rig (raid56-harness.ts) whose stripe engine has integrity: a StripeIntegrity
// over an in-memory checksum store (integrity-harness.ts) that counts events per element, and
// helpers that seed and check the stored checksums from the leg files directly.
import { blockChecksums } from '@onestack/native';
import type { StripeIntegrity, StripeIntegrityEvent } from '../src/datapath/stripe-integrity.js';
import type { VolumeGeometry } from '../src/datapath/map.js';
import { DATA_OFFSET_BYTES } from '../src/meta/types.js';
import { DATA_BYTES } from './datapath-harness.js';
import { readFileRange } from './helpers.js';
import { MemChecksumStore } from './integrity-harness.js';
import { startParity, type ParityRig, type RigOptions } from './raid56-harness.js';

export const BLOCK = 4096;
const { crc32cBlocks } = blockChecksums();

export interface IntegrityParityRig {
  readonly rig: ParityRig;
  readonly store: MemChecksumStore;
  readonly it: StripeIntegrity;
  /** `${element}:${event}` -> blocks. */
  readonly events: Map<string, number>;
  /** Volume offsets of the counted events that carried one. */
  readonly placed: { element: number; event: StripeIntegrityEvent; volumeOffsetBytes: number }[];
  readonly notes: string[];
}

export function crcOf(bytes: Uint8Array): number {
  const out = new Uint32Array(1);
  crc32cBlocks(bytes, BLOCK, out);
  return out[0] === 0 ? 1 : out[0]!;
}

/** Block number (from the start of the data area) of an element offset; the test elements all start their data at DATA_OFFSET_BYTES. */
function blockOf(elementOffsetBytes: number): number {
  const rel = elementOffsetBytes - DATA_OFFSET_BYTES;
  if (rel < 0 || rel % BLOCK !== 0) throw new RangeError(`element offset ${elementOffsetBytes} is not a whole block of the data area`);
  return rel / BLOCK;
}

/** Roles are elements here (the rig's element i holds role i). */
function memIntegrity(store: MemChecksumStore, events: Map<string, number>, placed: IntegrityParityRig['placed'], notes: string[]): StripeIntegrity {
  const sumsOf = (bytes: Uint8Array): Uint32Array => {
    const out = new Uint32Array(bytes.length / BLOCK);
    crc32cBlocks(bytes, BLOCK, out);
    return out.map((x) => (x === 0 ? 1 : x));
  };
  return {
    crc32cBlocks,
    record: (role, off, len, bytes) => store.write(role, blockOf(off), bytes === null ? new Uint32Array(len / BLOCK) : sumsOf(bytes.subarray(0, len))),
    recordSums: (role, off, sums) => store.write(role, blockOf(off), sums),
    stored: (role, off, len) => store.read(role, blockOf(off), len / BLOCK),
    writeBack: async () => undefined,
    repairSpan: () => Promise.reject(new Error('repairSpan: not part of the maintenance tests')),
    recompute: async (ranges) => {
      if (ranges.length > 0) throw new Error('recompute: the maintenance tests replay no journal');
    },
    count: (role, event, blocks, volumeOffsetBytes) => {
      events.set(`${role}:${event}`, (events.get(`${role}:${event}`) ?? 0) + blocks);
      if (volumeOffsetBytes !== undefined) placed.push({ element: role, event, volumeOffsetBytes });
    },
    note: (line) => notes.push(line),
  };
}

export async function startIntegrityParity(layout: 'raid5' | 'raid6', n: number, opts: RigOptions = {}): Promise<IntegrityParityRig> {
  const rig = await startParity(layout, n, opts);
  const store = new MemChecksumStore();
  const events = new Map<string, number>();
  const placed: IntegrityParityRig['placed'] = [];
  const notes: string[] = [];
  const it = memIntegrity(store, events, placed, notes);
  rig.dp.stripe(0).integrity = it;
  return { rig, store, it, events, placed, notes };
}

/** The same over the data path's own wiring (DataPath.setIntegrity: ParityIntegrity, the write path records). */
export async function startWiredParity(layout: 'raid5' | 'raid6', n: number, opts: RigOptions = {}): Promise<IntegrityParityRig> {
  const rig = await startParity(layout, n, opts);
  const store = new MemChecksumStore();
  const events = new Map<string, number>();
  const placed: IntegrityParityRig['placed'] = [];
  const notes: string[] = [];
  await rig.dp.setIntegrity(0, {
    store,
    count: (element, event, blocks, volumeOffsetBytes) => {
      events.set(`${element}:${event}`, (events.get(`${element}:${event}`) ?? 0) + blocks);
      if (volumeOffsetBytes !== undefined) placed.push({ element, event, volumeOffsetBytes });
    },
    log: (line) => notes.push(line),
  });
  const it = rig.dp.stripe(0).integrity;
  if (it === null) throw new Error('setIntegrity left the stripe engine without checksums');
  return { rig, store, it, events, placed, notes };
}

/** Stores every role's checksums of rows [0, rows) from the leg files (what a verified write would have recorded). */
export async function seedSums(r: IntegrityParityRig, rows: number): Promise<void> {
  for (let role = 0; role < r.rig.n; role++) {
    const bytes = readFileRange(r.rig.paths[role]!, DATA_OFFSET_BYTES, rows * r.rig.chunkBytes);
    const sums = new Uint32Array(bytes.length / BLOCK);
    crc32cBlocks(bytes, BLOCK, sums);
    await r.store.write(role, 0, sums.map((x) => (x === 0 ? 1 : x)));
  }
}

/** Blocks of rows [0, rows) of `role` whose leg bytes fail the stored checksum (stored 0 counts as failing: the tests seed every block). */
export function failingBlocks(r: IntegrityParityRig, role: number, rows: number): number[] {
  const bytes = readFileRange(r.rig.paths[role]!, DATA_OFFSET_BYTES, rows * r.rig.chunkBytes);
  const sums = new Uint32Array(bytes.length / BLOCK);
  crc32cBlocks(bytes, BLOCK, sums);
  const out: number[] = [];
  sums.forEach((x, i) => {
    if (r.store.get(role, i) !== (x === 0 ? 1 : x)) out.push(i);
  });
  return out;
}

/** The rig's volume geometry (as the control plane would give a scrub). */
export function geometryOf(rig: ParityRig): VolumeGeometry {
  return { layout: rig.layout, chunkBytes: rig.chunkBytes, sizeBytes: rig.sizeBytes, elements: rig.paths.map(() => ({ dataOffsetBytes: DATA_OFFSET_BYTES, dataSizeBytes: DATA_BYTES })) };
}
