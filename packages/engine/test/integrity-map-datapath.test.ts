// The integrity map fed by the real data path (integrity/checksum-io.ts → counters.countFor →
// integrity/map.ts) on a raid10, where element blocks and volume blocks differ: a repaired block
// is marked 2 at its VOLUME offset, a block bad on both legs of its pair is marked 1 (and EIO).
import * as fs from 'node:fs';
import { describe, expect, it } from 'vitest';
import { DataPath } from '../dist/datapath/datapath.js';
import { IntegrityCounters } from '../dist/integrity/counters.js';
import { flipFileBytes, readFileRange } from './helpers.js';
import { DATA_OFFSET_BYTES } from '../src/meta/types.js';
import { DATA_BYTES, KiB, MiB, elementsFor, equalBytes, pattern, sparseFiles, tempDir, volume } from './datapath-harness.js';
import { PeekableMemStore } from './integrity-harness.js';

const BLOCK = 4096;

/** Changes one byte of a leg file (through the page cache, which the data path reads from). */
function flip(path: string, columnOffsetBytes: number): void {
  flipFileBytes(path, DATA_OFFSET_BYTES + columnOffsetBytes, 1);
}

describe('integrity map from the raid10 data path', () => {
  it('marks repaired and unrecoverable blocks at their volume offsets', async () => {
    const dir = tempDir();
    const paths = sparseFiles(dir, 4);
    const dp = await DataPath.start({ pools: { top: 1, middle: 1, bottom: 2, remote: 1 }, queue: { depth: 64, slots: 16, slotKiB: 256 }, probeDir: dir });
    try {
      await dp.setTopology([volume(0, 'raid10', [0, 1, 2, 3], 2 * DATA_BYTES, 64 * KiB)], elementsFor(paths));
      const counters = new IntegrityCounters();
      dp.setIntegrity(0, { store: new PeekableMemStore(), count: counters.countFor('v'), log: () => {} });
      const io = dp.volumeIo(0);
      const data = pattern(1 * MiB, 31);
      await io.write(0, data);
      await io.flush();
      // Chunk 1 (volume 64K) is pair 1 row 0: legs 2, 3 at column 0. Flip leg 3 there (+100 bytes in the block).
      flip(paths[3]!, 100);
      // Chunk 5 (volume 320K) is pair 1 row 2: column 128K. Flip BOTH legs: no good copy.
      flip(paths[2]!, 128 * KiB + 10);
      flip(paths[3]!, 128 * KiB + 10);
      // Reads of chunk 1 until leg 3 serves one (ties alternate): the flipped block is then repaired.
      for (let i = 0; i < 8 && counters.snapshot(3).repaired === 0; i++) expect(equalBytes(await io.read(64 * KiB, 64 * KiB), data.subarray(64 * KiB, 128 * KiB))).toBe(true);
      expect(counters.snapshot(3).repaired).toBe(1);
      await expect(io.read(320 * KiB, BLOCK)).rejects.toMatchObject({ errno: 'EIO' });
      const flagged = [];
      let at = 0;
      for (const e of counters.maps.extents('v', 0, 1 * MiB, 64)) {
        if (e.flags !== 0) flagged.push({ offsetBytes: at, lengthBytes: e.lengthBytes, flags: e.flags });
        at += e.lengthBytes;
      }
      expect(at).toBe(1 * MiB);
      expect(flagged).toEqual([{ offsetBytes: 64 * KiB, lengthBytes: BLOCK, flags: 2 }, { offsetBytes: 320 * KiB, lengthBytes: BLOCK, flags: 1 }]);
    } finally {
      await dp.close();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
