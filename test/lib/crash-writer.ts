// The workload of the crash-consistency loop: random 4 KiB writes over NBD, each block stamped
// with (offset, generation), a FLUSH every few writes, and a log of what was acknowledged and what
// was flushed. After a SIGKILL and a restart, `verify` reads every block the log knows: a block
// must hold its last flushed write, or one of the writes acknowledged or sent after that flush
// (those may or may not have reached the disk), never anything else.
import { createHash } from 'node:crypto';
import { NbdClient } from '@onestack/nbd';

export const BLOCK_BYTES = 4096;

interface BlockLog {
  /** Generation of the last write whose FLUSH completed (0 = never written: zeroes). */
  flushed: number;
  /** Generations sent after that flush (acknowledged or not): any of them may be on disk. */
  later: number[];
}

export interface WriterStats {
  writes: number;
  flushes: number;
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
  private generation = 0;
  readonly stats: WriterStats = { writes: 0, flushes: 0 };

  constructor(private readonly blocks: number, private readonly seed: number) {}

  private next(): number {
    // xorshift32 on the seed: the same block sequence for the same seed.
    let x = (this.seed + this.generation * 2654435761) >>> 0 || 1;
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) % this.blocks;
  }

  /** Writes until `signal` aborts (the daemon is being killed); never throws for a dead server. */
  async run(client: NbdClient, signal: AbortSignal, flushEvery: number, queueDepth: number): Promise<void> {
    const inFlight = new Set<Promise<void>>();
    let sinceFlush: number[] = [];
    while (!signal.aborted) {
      const offset = this.next() * BLOCK_BYTES;
      const gen = ++this.generation;
      const entry = this.log.get(offset) ?? { flushed: 0, later: [] };
      entry.later.push(gen);
      this.log.set(offset, entry);
      sinceFlush.push(offset);
      const p: Promise<void> = client.write(offset, blockFor(offset, gen)).then(() => { this.stats.writes++; }, () => undefined).finally(() => inFlight.delete(p));
      inFlight.add(p);
      if (inFlight.size >= queueDepth) await Promise.race(inFlight);
      if (sinceFlush.length < flushEvery) continue;
      // A flush covers the writes acknowledged before it was sent: wait for them first.
      await Promise.all(inFlight);
      const covered = sinceFlush;
      sinceFlush = [];
      const ok = await client.flush().then(() => true, () => false);
      if (!ok || signal.aborted) break;
      this.stats.flushes++;
      for (const off of new Set(covered)) {
        const e = this.log.get(off)!;
        e.flushed = e.later.at(-1)!;
        e.later = [];
      }
    }
    await Promise.allSettled([...inFlight]);
  }

  /** Problems found reading every logged block back (empty = consistent). */
  async verify(client: NbdClient, problemsMax = 10): Promise<string[]> {
    const problems: string[] = [];
    const buf = new Uint8Array(BLOCK_BYTES);
    for (const [offset, e] of this.log) {
      await client.read(offset, buf);
      const gen = new DataView(buf.buffer).getUint32(8);
      const allowed = [e.flushed, ...e.later];
      const expected = gen === 0 && e.flushed === 0 ? new Uint8Array(BLOCK_BYTES) : blockFor(offset, gen);
      if (!allowed.includes(gen) || Buffer.compare(Buffer.from(buf), Buffer.from(expected)) !== 0) {
        problems.push(`block at ${offset}: holds generation ${gen}, allowed ${allowed.join(',')}${allowed.includes(gen) ? ' (torn or corrupt)' : ''}`);
        if (problems.length >= problemsMax) break;
      }
      // What is on disk now is the new baseline for the next cycle.
      e.flushed = gen === 0 && e.flushed === 0 ? 0 : gen;
      e.later = [];
    }
    return problems;
  }
}
