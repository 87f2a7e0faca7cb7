// The raw maintenance channel (DataPath.raw) and the 'rebuilding' leg state: element-offset I/O
// through the common queue, whatever the element's state; writes reach a leg being rebuilt, reads
// never come from it.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DATA_OFFSET_BYTES } from '../src/meta/types.js';
import { equalBytes, KiB, MiB, pattern, startWith, stop, type Started } from './datapath-harness.js';
import { readFileRange } from './helpers.js';

describe('raw element I/O and rebuilding legs (raid1 of 2)', () => {
  let s: Started;
  beforeAll(async () => {
    s = await startWith('raid1', 2);
  });
  afterAll(() => stop(s));

  it('reads and writes element offsets, header area included, on one element only', async () => {
    const header = pattern(8 * KiB, 3);
    await s.dp.raw.write(1, 4096, header, { fua: true });
    expect(equalBytes(readFileRange(s.paths[1]!, 4096, header.length), header)).toBe(true);
    expect(equalBytes(readFileRange(s.paths[0]!, 4096, header.length), new Uint8Array(header.length))).toBe(true);
    expect(equalBytes(await s.dp.raw.read(1, 4096, header.length), header)).toBe(true);
    await s.dp.raw.flush(1);
  });

  it('copies a range from one leg to the other slot by slot (more than one slot)', async () => {
    const data = pattern(MiB + 12 * KiB, 4);
    await s.dp.volumeIo(0).write(2 * MiB, data);
    await s.dp.raw.write(1, DATA_OFFSET_BYTES + 2 * MiB, new Uint8Array(data.length).fill(0xee));
    await s.dp.raw.copy(0, 1, DATA_OFFSET_BYTES + 2 * MiB, data.length);
    expect(equalBytes(readFileRange(s.paths[1]!, DATA_OFFSET_BYTES + 2 * MiB, data.length), data)).toBe(true);
  });

  it('a rebuilding leg takes writes but serves no reads, and reaches a failed element too', async () => {
    s.dp.setElementState(1, 'rebuilding');
    try {
      const data = pattern(64 * KiB, 5);
      await s.dp.volumeIo(0).write(8 * MiB, data);
      expect(equalBytes(readFileRange(s.paths[1]!, DATA_OFFSET_BYTES + 8 * MiB, data.length), data), 'write reached the rebuilding leg').toBe(true);
      await s.dp.raw.write(1, DATA_OFFSET_BYTES + 8 * MiB, new Uint8Array(data.length).fill(0x11));
      for (let i = 0; i < 8; i++) expect(equalBytes(await s.dp.volumeIo(0).read(8 * MiB, data.length), data), 'read from the active leg').toBe(true);
      s.dp.setElementState(1, 'failed');
      expect(equalBytes(await s.dp.raw.read(1, DATA_OFFSET_BYTES + 8 * MiB, 16), new Uint8Array(16).fill(0x11))).toBe(true);
    } finally {
      s.dp.setElementState(1, 'active');
    }
  });

  it('a write that only the rebuilding leg took is not acknowledged', async () => {
    s.dp.setElementState(1, 'rebuilding');
    s.dp.setElementState(0, 'failed');
    try {
      await expect(s.dp.volumeIo(0).write(0, pattern(4096, 6))).rejects.toMatchObject({ errno: 'EIO' });
    } finally {
      s.dp.setElementState(0, 'active');
      s.dp.setElementState(1, 'active');
    }
  });

  it('refuses an element that is not in the topology', async () => {
    await expect(s.dp.raw.read(7, 0, 4096)).rejects.toMatchObject({ errno: 'EINVAL' });
  });
});
