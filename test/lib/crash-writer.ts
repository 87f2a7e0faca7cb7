// The workload of the crash-consistency loop: random 4 KiB writes over NBD, each block stamped
// with (offset, generation), a FLUSH every few writes, some writes with FUA, and a log of what was
// acknowledged and what was made durable (a FLUSH completed after the write's acknowledgement, or
// the write's own FUA). After a SIGKILL and a restart, `verify` reads every block the log knows:
// a block must hold its last durable write, or one of the writes sent after it (those may or may
// not have reached the disk), never anything else.
//
// At most one write per block is in flight: NBD leaves the order of overlapping requests
// undefined, so two in-flight writes to one block would make "the last write" meaningless.
import { createHash } from 'node:crypto';
import { NbdClient } from '@onestack/nbd';

export const BLOCK_BYTES = 4096;
const VERIFY_QUEUE_DEPTH = 16;
const PICK_TRIES_MAX = 64;

interface BlockLog {
  /** Generation of the last durable write (flushed or FUA); 0 = never written: zeroes. */
  durable: number;
  /** Generations sent after it (acknowledged or not): any of them may be on disk. */
  later: number[];
  /** The last acknowledged generation since `durable` (0 = none). */
  acked: number;
  /** `durable` was made so by a FLUSH or FUA since the last read-back (not just read back). */
  flushedSinceCheck: boolean;
}

export interface WriterStats {
  /** Writes acknowledged, FLUSHes completed, FUA writes acknowledged, writes that failed (the kill). */
  writes: number;
  flushes: number;
  fuaWrites: number;
  failedWrites: number;
  /**
   * Blocks read back by verify; of those, the ones with a generation they must hold (flushed,
   * FUA, or what an earlier read-back found), and the ones whose must-hold generation is a write
   * flushed (or FUA) in the cycle before: the flushed writes checked.
   */
  blocksChecked: number;
  durableChecked: number;
  flushedWritesChecked: number;
  /** Acknowledged but not yet flushed writes that verify found on disk anyway (informational). */
  ackedUnflushedFound: number;
  ackedUnflushedTotal: number;
}

/** Deterministic block contents: a 32-byte header (offset, generation, digest) and filler. */
export function blockFor(offsetBytes: number, generation: number): Uint8Array {
  const b = new Uint8Array(BLOCK_BYTES);
  const view = new DataView(b.buffer);
  view.setBigUint64(0, BigInt(offsetBytes));
  view.setUint32(8, generation);
  const seed = createHash('sha256').update(`${offsetBytes}:${generation}`).digest();
  for (let i = 32; i < BLOCK_BYTES; i++) b[i] = seed[i % 32]!;
  b.set(seed.subarray(0, 20), 12);
  return b;
}

export class CrashWriter {
  private readonly log = new Map<number, BlockLog>();
  private readonly busy = new Set<number>();
  private generation = 0;
  private draws = 0;
  readonly stats: WriterStats = {
    writes: 0, flushes: 0, fuaWrites: 0, failedWrites: 0, blocksChecked: 0, durableChecked: 0, flushedWritesChecked: 0, ackedUnflushedFound: 0, ackedUnflushedTotal: 0,
  };

  constructor(private readonly blocks: number, private readonly seed: number) {}

  private random(): number {
    // xorshift32 on the seed: the same sequence for the same seed.
    let x = (this.seed + ++this.draws * 2654435761) >>> 0 || 1;
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return x >>> 0;
  }

  /** A block with no write in flight (bounded tries; -1 if every try hit a busy block). */
  private pickOffset(): number {
    for (let i = 0; i < PICK_TRIES_MAX; i++) {
      const offset = (this.random() % this.blocks) * BLOCK_BYTES;
      if (!this.busy.has(offset)) return offset;
    }
    return -1;
  }

  private entry(offset: number): BlockLog {
    let e = this.log.get(offset);
    if (e === undefined) {
      e = { durable: 0, later: [], acked: 0, flushedSinceCheck: false };
      this.log.set(offset, e);
    }
    return e;
  }

  /** `gen` is durable on its block: nothing sent before it can be there any more. */
  private makeDurable(e: BlockLog, gen: number): void {
    if (gen <= e.durable) return;
    e.durable = gen;
    e.flushedSinceCheck = true;
    e.later = e.later.filter((g) => g > gen);
    if (e.acked <= gen) e.acked = 0;
  }

  private send(client: NbdClient, offset: number, fuaEvery: number): Promise<void> {
    const gen = ++this.generation;
    const e = this.entry(offset);
    e.later.push(gen);
    const fua = fuaEvery > 0 && gen % fuaEvery === 0;
    this.busy.add(offset);
    return client.write(offset, blockFor(offset, gen), { fua }).then(() => {
      this.stats.writes++;
      e.acked = gen;
      if (!fua) return;
      this.stats.fuaWrites++;
      this.makeDurable(e, gen);
    }, () => { this.stats.failedWrites++; }).finally(() => this.busy.delete(offset));
  }

  /**
   * Writes until `signal` aborts (the daemon is being killed); never throws for a dead server.
   * Every `flushEvery` writes it waits for those in flight and sends a FLUSH; every `fuaEvery`th
   * write (0: none) carries FUA.
   */
  async run(client: NbdClient, signal: AbortSignal, opts: { flushEvery: number; queueDepth: number; fuaEvery: number }): Promise<void> {
    const inFlight = new Set<Promise<void>>();
    let sinceFlush = new Set<number>();
    while (!signal.aborted) {
      const offset = this.pickOffset();
      if (offset >= 0) {
        const p: Promise<void> = this.send(client, offset, opts.fuaEvery).finally(() => inFlight.delete(p));
        inFlight.add(p);
        sinceFlush.add(offset);
      }
      if (inFlight.size >= opts.queueDepth || (offset < 0 && inFlight.size > 0)) await Promise.race(inFlight);
      if (sinceFlush.size < opts.flushEvery) continue;
      // A flush covers the writes acknowledged before it was sent: wait for them first.
      await Promise.all(inFlight);
      const covered = sinceFlush;
      sinceFlush = new Set();
      const ok = await client.flush().then(() => true, () => false);
      if (!ok || signal.aborted) break;
      this.stats.flushes++;
      for (const off of covered) {
        const e = this.log.get(off)!;
        if (e.acked > 0) this.makeDurable(e, e.acked);
      }
    }
    await Promise.allSettled([...inFlight]);
  }

  private check(offset: number, e: BlockLog, buf: Uint8Array, problems: string[]): void {
    const gen = new DataView(buf.buffer, buf.byteOffset).getUint32(8);
    const allowed = [e.durable, ...e.later];
    const expected = gen === 0 && e.durable === 0 ? new Uint8Array(BLOCK_BYTES) : blockFor(offset, gen);
    const intact = Buffer.compare(Buffer.from(buf.buffer, buf.byteOffset, BLOCK_BYTES), Buffer.from(expected)) === 0;
    this.stats.blocksChecked++;
    if (e.durable > 0) this.stats.durableChecked++;
    if (e.flushedSinceCheck) this.stats.flushedWritesChecked++;
    if (e.acked > e.durable) {
      this.stats.ackedUnflushedTotal++;
      if (gen >= e.acked) this.stats.ackedUnflushedFound++;
    }
    if (!allowed.includes(gen) || !intact) {
      const what = e.durable > 0 ? `lost flushed write: generation ${e.durable} (durable)` : 'corrupt block';
      problems.push(`offset ${offset}: ${what}; holds generation ${gen}${allowed.includes(gen) ? ' torn or corrupt' : ''}, allowed ${allowed.join(',')}`);
    }
    // What is on disk now is the new baseline for the next cycle.
    e.durable = gen === 0 && e.durable === 0 ? 0 : gen;
    e.later = [];
    e.acked = 0;
    e.flushedSinceCheck = false;
  }

  /** Problems found reading every logged block back (empty = consistent); each names the offset. */
  async verify(client: NbdClient, problemsMax = 20): Promise<string[]> {
    const problems: string[] = [];
    const entries = [...this.log.entries()];
    const bufs = Array.from({ length: VERIFY_QUEUE_DEPTH }, () => new Uint8Array(BLOCK_BYTES));
    let next = 0;
    const lane = async (buf: Uint8Array): Promise<void> => {
      while (next < entries.length && problems.length < problemsMax) {
        const [offset, e] = entries[next++]!;
        await client.read(offset, buf);
        this.check(offset, e, buf, problems);
      }
    };
    await Promise.all(bufs.map(lane));
    return problems;
  }

  /** Blocks the log knows (written at least once). */
  get loggedBlocks(): number {
    return this.log.size;
  }
}
