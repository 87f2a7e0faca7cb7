// Test helpers for the integrity data path: an in-memory ChecksumStore (the contract of
// src/integrity/types.ts, without the on-element area) that counts its calls.
import type { ChecksumStore } from '../src/integrity/types.js';

export class MemChecksumStore implements ChecksumStore {
  readonly blockBytes = 4096;
  readonly sums = new Map<number, Map<number, number>>();
  readonly calls = { read: 0, write: 0, flush: 0 };

  async read(element: number, firstBlock: number, count: number): Promise<Uint32Array> {
    this.calls.read++;
    const m = this.sums.get(element);
    const out = new Uint32Array(count);
    for (let i = 0; i < count; i++) out[i] = m?.get(firstBlock + i) ?? 0;
    return out;
  }

  async write(element: number, firstBlock: number, sums: Uint32Array): Promise<void> {
    this.calls.write++;
    let m = this.sums.get(element);
    if (m === undefined) this.sums.set(element, (m = new Map()));
    sums.forEach((s, i) => (s === 0 ? m!.delete(firstBlock + i) : m!.set(firstBlock + i, s)));
  }

  async flush(): Promise<void> {
    this.calls.flush++;
  }

  forget(element: number): void {
    this.sums.delete(element);
  }

  get(element: number, block: number): number {
    return this.sums.get(element)?.get(block) ?? 0;
  }
}

/** The same, answering from memory without a promise (checksum-io.ts PeekableStore). */
export class PeekableMemStore extends MemChecksumStore {
  peeks = 0;

  peek(element: number, firstBlock: number, count: number, out: Uint32Array): boolean {
    this.peeks++;
    const m = this.sums.get(element);
    for (let i = 0; i < count; i++) out[i] = m?.get(firstBlock + i) ?? 0;
    return true;
  }
}
