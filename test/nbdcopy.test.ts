// Acceptance: nbdcopy a 256 MiB random file into the export and back out with the same sha256;
// two nbdcopy at once on two connections (two volumes).
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { useDaemon } from './lib/fixture.js';
import { MiB, randomFile, sha256Range } from './lib/files.js';
import { exportSize, nbdcopy } from './lib/peers.js';
import { explain } from './lib/proc.js';

const COPY_BYTES = 256 * MiB;

describe('nbdcopy round trips', () => {
  const fx = useDaemon('nbdcopy', [
    { name: 'a0', sizeBytes: 160 * MiB }, { name: 'a1', sizeBytes: 160 * MiB },
    { name: 'b0', sizeBytes: 300 * MiB }, { name: 'b1', sizeBytes: 300 * MiB },
  ], [
    { name: 'lin', layout: 'linear', elements: ['a0', 'a1'] },
    { name: 'mirror', layout: 'raid1', elements: ['b0', 'b1'] },
  ]);

  it('256 MiB random file → raid1 export → file: same sha256', async () => {
    const src = path.join(fx.dir, 'src.bin');
    const out = path.join(fx.dir, 'out.bin');
    const want = await randomFile(src, COPY_BYTES);
    const uri = fx.daemon.uri('mirror');
    expect(await exportSize(uri)).toBeGreaterThanOrEqual(COPY_BYTES);
    const put = await nbdcopy(src, uri);
    expect(put.code, explain(put)).toBe(0);
    const get = await nbdcopy(uri, out);
    expect(get.code, explain(get)).toBe(0);
    expect(await sha256Range(out, 0, COPY_BYTES)).toBe(want);
  });

  it('two nbdcopy at once into two volumes, then two at once back out: both sha256 match', async () => {
    const vols = ['lin', 'mirror'] as const;
    const srcs = vols.map((v) => path.join(fx.dir, `src-${v}.bin`));
    const outs = vols.map((v) => path.join(fx.dir, `out-${v}.bin`));
    const wants = await Promise.all(srcs.map((s) => randomFile(s, COPY_BYTES)));
    const puts = await Promise.all(vols.map((v, i) => nbdcopy(srcs[i]!, fx.daemon.uri(v))));
    for (const p of puts) expect(p.code, explain(p)).toBe(0);
    // One connection each, so the two copies are truly two connections side by side.
    const gets = await Promise.all(vols.map((v, i) => nbdcopy(fx.daemon.uri(v), outs[i]!, ['--connections=1'])));
    for (const g of gets) expect(g.code, explain(g)).toBe(0);
    for (let i = 0; i < vols.length; i++) {
      expect(await sha256Range(outs[i]!, 0, COPY_BYTES), `volume ${vols[i]}`).toBe(wants[i]);
    }
  });
});
