import { DataPath } from './packages/engine/dist/datapath/datapath.js';
import * as fs from 'node:fs';
import { randomUUID } from 'node:crypto';
const dir = '/tmp/b56/dpr'; fs.rmSync(dir, { recursive: true, force: true }); fs.mkdirSync(dir, { recursive: true });
const n = 4, layout = process.env.L ?? 'raid5', np = layout === 'raid5' ? 1 : 2;
const MiB = 1 << 20, DATA = 128 * MiB;
const paths = Array.from({ length: n }, (_, i) => { const p = `${dir}/e${i}.img`; fs.writeFileSync(p, ''); fs.truncateSync(p, DATA + 4 * MiB); return p; });
const dp = await DataPath.start({ pools: { top: 1, middle: 1, bottom: 2, remote: 1 }, queue: { depth: 1024, slots: 256, slotKiB: 256 }, probeDir: dir });
const els = paths.map((p, i) => ({ index: i, name: `e${i}`, kind: 'local', path: p, direct: false, blockSizeBytes: 1, dataOffsetBytes: 4 * MiB, dataSizeBytes: DATA, state: 'active' }));
await dp.setTopology([{ index: 0, name: 'v', layout, chunkBytes: 64 * 1024, sizeBytes: (n - np) * DATA, order: 'fifo', elements: els.map((e) => e.index), arrayId: randomUUID() }], els);
const io = dp.volumeIo(0);
const total = 96 * MiB;
await io.write(0, new Uint8Array(total).fill(3));
async function run(name, bs, qd) {
  const t0 = performance.now(); let next = 0; const count = total / bs;
  await Promise.all(Array.from({ length: qd }, async () => { while (next < count) { const i = next++; const r = await io.readSlots(i * bs, bs); r.release(); } }));
  const s = (performance.now() - t0) / 1000; console.log(name, (total / MiB / s).toFixed(1), 'MiB/s');
}
await run('read 1M qd8 optimal', MiB, 8);
dp.setElementState(1, 'failed');
await run('read 1M qd8 degraded', MiB, 8);
await dp.close();
