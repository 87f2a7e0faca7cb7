// A reshape whose two-view topology the data path refuses after the superblocks already name it
// (durable/reshape-start.ts rollBack): nothing has moved, so the volume goes back to its old
// geometry, keeps serving every byte, restarts as it was, and the added element can be used again.
// Imports the BUILT dist.
import { describe, expect, it } from 'vitest';
import { Engine } from '../dist/index.js';
import { equalBytes, pattern } from './datapath-harness.js';
import { DATA_BYTES, quiet, ReshapeFiles } from './reshape-engine-harness.js';

const files = new ReshapeFiles('onestack-reshape-rollback-', ['a', 'b', 'c', 'd']);
/** No rebuild section: the default rate. */
const config = (): unknown => files.config({ layout: 'raid5', elements: ['a', 'b', 'c'] });

interface TopologyVolumeLike { readonly reshape?: unknown }
type SetTopology = (volumes: readonly TopologyVolumeLike[], elements: readonly unknown[]) => Promise<void>;

describe('reshape start rolled back', () => {
  it('a refused two-view topology leaves raid5 of 3 serving, restartable, and the element reusable', async () => {
    const c0 = 2 * DATA_BYTES;
    const data = pattern(c0, 31);
    let engine = await Engine.open({ config: config(), log: quiet });
    try {
      await engine.volume('v').write(0, data);
      const dp = (engine as unknown as { dataPath: { setTopology: SetTopology } }).dataPath;
      const real = dp.setTopology.bind(dp);
      let refused = 0;
      dp.setTopology = (volumes, elements) => {
        if (volumes.some((v) => v.reshape !== undefined)) {
          refused++;
          return Promise.reject(new Error('injected: the data path refuses the reshape views'));
        }
        return real(volumes, elements);
      };
      await expect(engine.reshapeVolume('v', { add: ['d'] })).rejects.toThrow(/injected/);
      expect(refused).toBe(1);
      const v = engine.status().volumes.find((x) => x.name === 'v')!;
      expect(v).toMatchObject({ layout: 'raid5', state: 'optimal', sizeBytes: c0, reshape: null });
      expect(v.elements.map((e) => e.name)).toEqual(['a', 'b', 'c']);
      expect(equalBytes(await engine.volume('v').read(0, c0), data), 'every byte still served').toBe(true);
      dp.setTopology = real;
    } finally {
      await engine.close();
    }
    // The old members' superblocks outrank the reshape's: it assembles as it was.
    engine = await Engine.open({ config: config(), log: quiet });
    try {
      const v = engine.status().volumes.find((x) => x.name === 'v')!;
      expect(v).toMatchObject({ layout: 'raid5', state: 'optimal', sizeBytes: c0, reshape: null });
      expect(equalBytes(await engine.volume('v').read(0, c0), data), 'every byte after a restart').toBe(true);
      // The element that was half added holds only a leftover of a start that never ran: usable again.
      await engine.reshapeVolume('v', { add: ['d'] });
      const deadline = Date.now() + 60_000;
      while (engine.status().volumes.find((x) => x.name === 'v')!.reshape !== null) {
        if (Date.now() > deadline) throw new Error('the second reshape did not finish');
        await new Promise((r) => setTimeout(r, 20));
      }
      const after = engine.status().volumes.find((x) => x.name === 'v')!;
      expect(after).toMatchObject({ layout: 'raid5', state: 'optimal', sizeBytes: 3 * DATA_BYTES });
      expect(equalBytes(await engine.volume('v').read(0, c0), data), 'every byte after the real reshape').toBe(true);
    } finally {
      await engine.close();
    }
  }, 120_000);
});
