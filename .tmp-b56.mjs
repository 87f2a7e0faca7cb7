import { DataPath } from './packages/engine/dist/datapath/datapath.js';
import * as fs from 'node:fs';
import { randomUUID } from 'node:crypto';
const dir = '/tmp/b56/dp'; fs.rmSync(dir, { recursive: true, force: true }); fs.mkdirSync(dir, { recursive: true });
const n = Number(process.env.N ?? 4), layout = process.env.L ?? 'raid5', np = layout === 'raid5' ? 1 : 2;
const MiB = 1 << 20, DATA = 256 * MiB;
const paths = Array.from({ length: n }, (_, i) => { const p = `${dir}/e${i}.img`; fs.writeFileSync(p, ''); fs.truncateSync(p, DATA + 4 * MiB); return p; });
const dp = await DataPath.start({ pools: { top: 1, middle: Number(process.env.MID ?? 1), bottom: 2, remote: 1 }, queue: { depth: 1024, slots: 256, slotKiB: 256 }, probeDir: dir });
const els = paths.map((p, i) => ({ index: i, name: `e${i}`, kind: 'local', path: p, direct: false, blockSizeBytes: 1, dataOffsetBytes: 4 * MiB, dataSizeBytes: DATA, state: 'active' }));
await dp.setTopology([{ index: 0, name: 'v', layout, chunkBytes: 64 * 1024, sizeBytes: (n - np) * DATA, order: 'fifo', elements: els.map((e) => e.index), arrayId: randomUUID() }], els);
const io = dp.volumeIo(0);
async function run(name, bs, qd, total, random) {
  const data = new Uint8Array(bs).fill(7);
  const t0 = performance.now(); let next = 0; const count = Math.floor(total / bs);
  await Promise.all(Array.from({ length: qd }, async () => { while (next < count) { const i = next++; const off = random ? Math.floor(Math.random() * ((n - np) * DATA / bs)) * bs : i * bs; await io.write(off, data); } }));
  const s = (performance.now() - t0) / 1000; console.log(name, (total / MiB / s).toFixed(1), 'MiB/s', Math.round(count / s), 'IOPS');
}
await run('seq768k qd8', 768 * 1024, 8, 96 * MiB, false);
await run('rand4k qd32', 4096, 32, 16 * MiB, true);
await dp.close();
