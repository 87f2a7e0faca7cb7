// Resync and rebuild of an integrity volume (durable/recovery.ts through the keeper): every unit
// copied from the source leg gets its checksums recomputed from the SOURCE bytes and written to
// the source's and the target's stores before the unit counts as done. After an unclean stop the
// blocks in the bitmap's dirty regions may hold new data with an old checksum (or the reverse);
// a rebuilt leg's area starts as zeros. Holes zeroed by the sparse copy get 0 (no checksum).
import { blockChecksums, type Crc32cBlocks } from '@onestack/native';
import { withCopy, type RawIo } from '../datapath/raw-io.js';
import { DataPathError } from '../datapath/errno.js';
import type { WriteBackStore } from './checksum-io.js';
import { INTEGRITY_BLOCK_BYTES, storedSums, type ChecksumStore } from './types.js';

const BLOCK = INTEGRITY_BLOCK_BYTES;
/** Bytes read, checksummed and written per step of a unit (bounded memory per copy worker). */
const STEP_BYTES = 1024 * 1024;

/**
 * `raw` whose copy() moves the bytes through memory and records their checksums on both legs,
 * whose zero() clears the checksums of the zeroed blocks on both, and whose flush() first makes
 * every checksum written so far durable. `dataOffsetOf(element)`: the element offset of block 0.
 */
export interface Recomputing {
  readonly raw: RawIo;
  /** The sparse copy zeroed a hole of `source` on a target: the source's blocks there carry no checksum either. */
  readonly holeOf: (source: number, offsetBytes: number, lengthBytes: number) => Promise<void>;
}

export function recomputingRaw(raw: RawIo, store: ChecksumStore, dataOffsetOf: (element: number) => number, crc32cBlocks: Crc32cBlocks = blockChecksums().crc32cBlocks): Recomputing {
  /** Elements whose checksums this changed (the source's as well as the target's). */
  const touched = new Set<number>();
  /** The whole blocks around [offset, +length) (`inner`: only those inside it), as [first, end) block numbers. */
  const blocksOf = (element: number, offsetBytes: number, lengthBytes: number, inner: boolean): { first: number; end: number } => {
    const rel = offsetBytes - dataOffsetOf(element);
    if (rel < 0) throw new DataPathError('EINVAL', `integrity copy at ${offsetBytes} of element index ${element} starts before its data area`);
    const round = inner ? Math.ceil : Math.floor;
    const roundEnd = inner ? Math.floor : Math.ceil;
    return { first: round(rel / BLOCK), end: roundEnd((rel + lengthBytes) / BLOCK) };
  };
  const record = async (elements: readonly number[], firstBlock: number, sums: Uint32Array): Promise<void> => {
    for (const el of elements) touched.add(el);
    await Promise.all(elements.map((el) => store.write(el, firstBlock, sums)));
  };
  const copying = withCopy(raw, async (source, target, offsetBytes, lengthBytes) => {
    if (dataOffsetOf(source) !== dataOffsetOf(target)) throw new DataPathError('EINVAL', `integrity copy between legs with different data offsets (${source}, ${target})`);
    // Widened to whole blocks (a partial one would leave a checksum over bytes not copied): the
    // extra bytes are the source's own, inside the same fenced unit (units are whole blocks).
    const { first, end } = blocksOf(source, offsetBytes, lengthBytes, false);
    const base = dataOffsetOf(source) + first * BLOCK;
    const total = (end - first) * BLOCK;
    for (let at = 0; at < total; at += STEP_BYTES) {
      const n = Math.min(STEP_BYTES, total - at);
      const data = await raw.read(source, base + at, n);
      const sums = storedSums(crc32cBlocks, data);
      await Promise.all([raw.write(target, base + at, data), record([source, target], first + at / BLOCK, sums)]);
    }
  });
  /** The whole blocks of a zeroed range read as zeros and carry no checksum (a partial one keeps its own). */
  const clear = async (element: number, offsetBytes: number, lengthBytes: number): Promise<void> => {
    const { first, end } = blocksOf(element, offsetBytes, lengthBytes, true);
    const blocks = end - first;
    if (blocks <= 0) return;
    const zeros = new Uint32Array(Math.min(blocks, STEP_BYTES));
    for (let b = 0; b < blocks; b += zeros.length) await record([element], first + b, zeros.subarray(0, Math.min(zeros.length, blocks - b)));
  };
  return {
    raw: {
      ...copying,
      zero: async (element, offsetBytes, lengthBytes) => {
        await raw.zero(element, offsetBytes, lengthBytes);
        await clear(element, offsetBytes, lengthBytes);
      },
      flush: async (element) => {
        // The source's checksums were rewritten too: make them durable with the target's. The
        // element flushed next only needs its pages written (one sync for pages and data).
        const pages = store as WriteBackStore;
        const mine = touched.has(element) && pages.writeBack !== undefined;
        await Promise.all([...touched].map((el) => (el === element && mine ? pages.writeBack!(el) : store.flush(el))));
        touched.clear();
        await raw.flush(element);
      },
    },
    holeOf: clear,
  };
}
