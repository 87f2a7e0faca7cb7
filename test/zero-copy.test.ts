// Zero copy, counted: large NBD writes are read by the kernel straight into slab slots (the NBD
// server's in-place reader) and reads go out as slot views, so status io.copies stays well
// under one copy per request; page-cache reads are served inline by the fast lane.
import { describe, expect, it } from 'vitest';
import { useDaemon } from './lib/fixture.js';
import { MiB } from './lib/files.js';
import { qemuIo, qemuIoFailed } from './lib/peers.js';
import { explain } from './lib/proc.js';

interface IoStatus {
  readonly copies?: { requests: number; copies: number; bytesCopied: number; perRequest: number };
  readonly fastLane?: { hits: number; misses: number } | null;
}

describe('copies per request and the fast lane, seen in status', () => {
  const fx = useDaemon('zero-copy', [{ name: 'z0', sizeBytes: 128 * MiB }], [{ name: 'zc', layout: 'linear', elements: ['z0'] }]);

  it('1 MiB writes and reads through qemu-io cost far less than one user-space copy each', async () => {
    const uri = fx.daemon.uri('zc');
    const writes = Array.from({ length: 16 }, (_, i) => `write -P 0x${(i + 1).toString(16)} ${i * MiB} 1M`);
    const reads = Array.from({ length: 16 }, (_, i) => `read -P 0x${(i + 1).toString(16)} ${i * MiB} 1M`);
    const w = await qemuIo(uri, writes);
    expect(qemuIoFailed(w), explain(w)).toBe(false);
    const r = await qemuIo(uri, reads);
    expect(qemuIoFailed(r), explain(r)).toBe(false);
    const io = ((await fx.daemon.status()) as unknown as { io?: IoStatus }).io;
    expect(io?.copies).toBeDefined();
    const copies = io!.copies!;
    // 32 client requests become ≥ 32 volume requests; only bytes read together with a request
    // header are copied, so far fewer than one copy (and one MiB) per request.
    expect(copies.requests).toBeGreaterThanOrEqual(32);
    expect(copies.perRequest).toBeLessThan(1);
    expect(copies.bytesCopied).toBeLessThan(16 * MiB);
    // The reads hit pages the writes just left in the page cache, if the addon serves the lane.
    if (io!.fastLane !== null && io!.fastLane !== undefined) expect(io!.fastLane.hits).toBeGreaterThan(0);
  });
});
