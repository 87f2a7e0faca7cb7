// Parameter blocks of the COMPUTE op (compute.ts runs them). A COMPUTE parent has no
// sub-descriptors: its AUX word names a block in the control SAB (one per stripe scratch slot,
// owned by the unit that holds that slot), which lists the buffers (slab slot + offset) by
// stripe index: data 0..k-1, P = k, Q = k + 1, then per data index an "old" buffer (RMW) or the
// computed P/Q (CHECK). The main thread fills a block before it submits the parent and reads the
// outputs after the completion, so ring handoffs order every access.

export const ComputeMode = { RECONSTRUCT: 1, RMW: 2, CHECK: 3 } as const;
export type ComputeModeCode = (typeof ComputeMode)[keyof typeof ComputeMode];

/** Most stripe indices a block describes: 64 roles, plus 64 "old" buffers and two spare. */
export const ENTRIES_MAX = 130;
export const WIDTH_MAX = 64;

/** Parameter block words. */
export const PW = {
  MODE: 0,
  LENGTH: 1,
  K: 2,
  NP: 3,
  /** RECONSTRUCT: the stripe indices to recompute (-1: none). */
  FAIL_A: 4,
  FAIL_B: 5,
  /** CHECK results: bit 0 P wrong, bit 1 Q wrong, bit 2 unlocatable mismatch. */
  OUT_FLAGS: 6,
  /** CHECK results: data indices located as wrong (bits 0-31, 32-63). */
  OUT_DATA_LO: 7,
  OUT_DATA_HI: 8,
  /** Indices (bits over 0..65 in three words) whose CRC32C the op also computes for the journal. */
  CRC_MASK: 9,
  /** CHECK results: byte positions where the parity disagrees. */
  OUT_MISMATCHED: 12,
  ENTRIES: 16,
  CRCS: 16 + 2 * ENTRIES_MAX,
} as const;
export const PARAM_WORDS = PW.CRCS + WIDTH_MAX + 2 + 6;

export const CHECK_P_BAD = 1;
export const CHECK_Q_BAD = 2;
export const CHECK_UNLOCATABLE = 4;

/** Entry index of data j's "old" buffer (RMW) and of the computed P and Q (CHECK). */
export function oldEntry(k: number, np: number, j: number): number {
  return k + np + j;
}

/** Main-thread writer of one parameter block. */
export class ComputeParams {
  constructor(
    private readonly words: Int32Array,
    readonly block: number,
  ) {
    if (!(Number.isInteger(block) && block >= 0 && (block + 1) * PARAM_WORDS <= words.length)) throw new RangeError(`compute block ${block} outside the table`);
  }

  private get base(): number {
    return this.block * PARAM_WORDS;
  }

  /** Clears the block for a new op over buffers of `lengthBytes` with k data and np parity. */
  begin(mode: ComputeModeCode, lengthBytes: number, k: number, np: 1 | 2): this {
    if (!(k >= 1 && k + np <= WIDTH_MAX && lengthBytes > 0)) throw new RangeError(`compute: k=${k} np=${np} length=${lengthBytes}`);
    const b = this.base;
    this.words.fill(0, b, b + PARAM_WORDS);
    this.words.fill(-1, b + PW.ENTRIES, b + PW.ENTRIES + 2 * ENTRIES_MAX);
    this.words[b + PW.MODE] = mode;
    this.words[b + PW.LENGTH] = lengthBytes;
    this.words[b + PW.K] = k;
    this.words[b + PW.NP] = np;
    this.words[b + PW.FAIL_A] = -1;
    this.words[b + PW.FAIL_B] = -1;
    return this;
  }

  entry(index: number, slot: number, offsetBytes: number): this {
    if (!(index >= 0 && index < ENTRIES_MAX)) throw new RangeError(`compute entry ${index} outside [0, ${ENTRIES_MAX})`);
    this.words[this.base + PW.ENTRIES + 2 * index] = slot;
    this.words[this.base + PW.ENTRIES + 2 * index + 1] = offsetBytes;
    return this;
  }

  fails(a: number, b = -1): this {
    this.words[this.base + PW.FAIL_A] = a;
    this.words[this.base + PW.FAIL_B] = b;
    return this;
  }

  /** Asks for the CRC32C of entry `index` (a stripe index, < 66) after the op. */
  crc(index: number): this {
    const at = this.base + PW.CRC_MASK + (index >>> 5);
    this.words[at] = this.words[at]! | (1 << (index & 31));
    return this;
  }

  crcOf(index: number): number {
    return this.words[this.base + PW.CRCS + index]! >>> 0;
  }

  word(w: number): number {
    return this.words[this.base + w]!;
  }
}

