// Which unit of a raid5/6 stripe holds a wrong block, and its right bytes (pure; docs/integrity.md).
// Every entry of a stripe span (data 0..k-1, P = k, Q = k + 1) carries its own checksums, so a
// block that fails its checksum is known bad whichever unit it is in, and parity rebuilds it from
// the others, block by block (two entries bad at different blocks of one span are two single
// faults). A rebuilt block is trusted when it matches the entry's stored checksum (the data was
// bad), or when every input it came from verified (then the stored checksum was the bad part, or
// both were). Anything else is lost: reported, never written.
import { reconstruct } from '../datapath/parity.js';
import { checksumMatches, INTEGRITY_BLOCK_BYTES, storedChecksum } from './types.js';
import type { Crc32cBlocks } from '@onestack/native';

const BLOCK = INTEGRITY_BLOCK_BYTES;

/** One stripe entry over the span: its bytes (null: not readable now) and stored checksums (null: unknown). */
export interface EntrySpan {
  readonly bytes: Uint8Array | null;
  readonly stored: Uint32Array | null;
}

/** A block to write back to an entry: its new stored checksum, and whether its bytes changed too. */
export interface BlockFix {
  readonly block: number;
  /** The entry's bytes at `block` were replaced in `bytes` (write them); false: only the checksum was wrong. */
  readonly data: boolean;
  readonly sum: number;
}

export interface SpanResolution {
  /** Per entry: blocks that failed their checksum (or were absent-and-needed: never). */
  readonly bad: number[][];
  /** Per entry: what to write back (a subset of `bad`). */
  readonly fixes: BlockFix[][];
  /** Per entry: blocks that failed and could not be rebuilt (their bytes are untouched and wrong). */
  readonly lost: number[][];
}

type Verdict = 'absent' | 'unchecked' | 'good' | 'bad';

/**
 * Resolves a span of `blocks` whole blocks over `entries` (length k + np). Bytes of fixed blocks
 * are rebuilt in place in `entries[e].bytes`. `crc` computes CRC32C per block (one call per entry).
 */
export function resolveStripeSpan(k: number, np: 1 | 2, entries: readonly EntrySpan[], blocks: number, crc: Crc32cBlocks): SpanResolution {
  if (entries.length !== k + np) throw new RangeError(`resolveStripeSpan: ${entries.length} entries for k=${k} np=${np}`);
  for (const e of entries) {
    if (e.bytes !== null && e.bytes.length !== blocks * BLOCK) throw new RangeError(`resolveStripeSpan: entry of ${e.bytes.length} bytes for ${blocks} blocks`);
    if (e.stored !== null && e.stored.length < blocks) throw new RangeError(`resolveStripeSpan: ${e.stored.length} checksums for ${blocks} blocks`);
  }
  const crcs = entries.map((e) => {
    if (e.bytes === null) return null;
    const out = new Uint32Array(blocks);
    crc(e.bytes, BLOCK, out);
    return out;
  });
  const verdict = (e: number, i: number): Verdict => {
    const x = entries[e]!;
    if (x.bytes === null) return 'absent';
    if (x.stored === null || x.stored[i] === 0) return 'unchecked';
    return checksumMatches(x.stored[i]!, crcs[e]![i]!) ? 'good' : 'bad';
  };
  const out: SpanResolution = { bad: entries.map(() => []), fixes: entries.map(() => []), lost: entries.map(() => []) };
  const scratch = entries.map(() => new Uint8Array(BLOCK));
  for (let i = 0; i < blocks; i++) {
    const v = entries.map((_, e) => verdict(e, i));
    const bad = v.flatMap((x, e) => (x === 'bad' ? [e] : []));
    if (bad.length === 0) continue;
    for (const e of bad) out.bad[e]!.push(i);
    const absent = v.flatMap((x, e) => (x === 'absent' ? [e] : []));
    if (bad.length + absent.length > np) {
      for (const e of bad) out.lost[e]!.push(i);
      continue;
    }
    // Parity left over (raid6 with one fault) keeps unchecked entries out of the inputs too, so
    // the rebuild comes from verified bytes when there are enough of them.
    const fails = [...bad, ...absent];
    for (let e = 0; e < entries.length && fails.length < np; e++) if (v[e] === 'unchecked') fails.push(e);
    rebuildBlock(k, np, entries, i, fails, scratch);
    const inputsVerified = v.every((x, e) => x === 'good' || fails.includes(e));
    for (const e of bad) {
      const rebuilt = scratch[e]!;
      const one = new Uint32Array(1);
      crc(rebuilt, BLOCK, one);
      const sum = storedChecksum(one[0]!);
      const matchesStored = entries[e]!.stored![i] === sum;
      if (!matchesStored && !inputsVerified) {
        out.lost[e]!.push(i);
        continue;
      }
      const mine = entries[e]!.bytes!.subarray(i * BLOCK, (i + 1) * BLOCK);
      const same = storedChecksum(crcs[e]![i]!) === sum && sameBytes(mine, rebuilt);
      if (!same) mine.set(rebuilt);
      out.fixes[e]!.push({ block: i, data: !same, sum });
    }
  }
  return out;
}

/** Rebuilds block i of the `fails` entries into `scratch[e]` from the others (parity.ts reconstruct). */
function rebuildBlock(k: number, np: 1 | 2, entries: readonly EntrySpan[], i: number, fails: readonly number[], scratch: Uint8Array[]): void {
  const bufs = entries.map((x, e) => {
    const b = scratch[e]!;
    if (fails.includes(e)) b.fill(0);
    else b.set(x.bytes!.subarray(i * BLOCK, (i + 1) * BLOCK));
    return b;
  });
  reconstruct(bufs, k, np, fails);
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return Buffer.compare(Buffer.from(a.buffer, a.byteOffset, a.length), Buffer.from(b.buffer, b.byteOffset, b.length)) === 0;
}
