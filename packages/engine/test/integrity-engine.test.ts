// Integrity through the Engine (control plane only; the data path's verification is tested
// elsewhere): config and createVolume wiring, status fields and counters, the per-volume checksum
// store reaching the elements' areas and surviving close/open, refusal on other layouts, delete.
// Imports the BUILT dist.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Engine } from '../dist/index.js';
import { DATA_OFFSET_BYTES } from '../dist/meta/types.js';

const MiB = 1024 * 1024;
let dir: string;
let engine: Engine | undefined;
beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'onestack-integrity-engine-'));
});
afterEach(async () => {
  await engine?.close();
  engine = undefined;
  fs.rmSync(dir, { recursive: true, force: true });
});

function open(): Promise<Engine> {
  return Engine.open({
    log: () => undefined,
    config: {
      dataDir: dir, nbd: { listen: '127.0.0.1:0' },
      elements: ['a', 'b'].map((name) => ({ name, uri: `file:${path.join(dir, `${name}.img`)}`, createSizeBytes: 16 * MiB })),
      volumes: [{ name: 'v', layout: 'raid1', elements: ['a', 'b'], chunkKiB: 64, integrity: true }],
    },
  });
}

describe('integrity through the Engine', () => {
  it('serves a smaller raid1, shows integrity and counters in status, and keeps flushed checksums across close/open', async () => {
    engine = await open();
    // 16 MiB after the header: D = 16 MiB - 16 KiB (area 16 KiB), chunk-rounded to 16 MiB - 64 KiB.
    expect(engine.volume('v').sizeBytes).toBe(16 * MiB - 64 * 1024);
    const status = engine.status().volumes.find((v) => v.name === 'v')!;
    expect(status.integrity).toBe(true);
    expect(status.elements.map((e) => e.integrity)).toEqual([{ mismatches: 0, repaired: 0, unrecoverable: 0 }, { mismatches: 0, repaired: 0, unrecoverable: 0 }]);
    const store = engine.integrityStoreOf('v');
    expect(store).toBeDefined();
    // Data-path index 1 is element b: the registry gives slots in config order.
    await store!.write(1, 10, Uint32Array.of(0xdeadbeef, 2));
    await store!.flush(1);
    const onFile = fs.readFileSync(path.join(dir, 'b.img')).subarray(DATA_OFFSET_BYTES + 16 * MiB - 64 * 1024 + 40, DATA_OFFSET_BYTES + 16 * MiB - 64 * 1024 + 48);
    expect(Array.from(new Uint32Array(onFile.buffer.slice(onFile.byteOffset, onFile.byteOffset + 8)))).toEqual([0xdeadbeef, 2]);
    engine.integrity.counters.count(1, 'repaired', 3);
    expect(engine.status().volumes[0]!.elements[1]!.integrity).toEqual({ mismatches: 0, repaired: 3, unrecoverable: 0 });
    await engine.close();
    engine = await open();
    expect(Array.from(await engine.integrityStoreOf('v')!.read(1, 10, 2))).toEqual([0xdeadbeef, 2]);
  });

  it('scrubs judge copies by their checksums (scrub-integrity.test.ts): check and repair both run and report per element', async () => {
    engine = await open();
    const repaired = await engine.scrub('v', { repair: true });
    expect(repaired).toMatchObject({ outcome: 'done', mismatchedUnits: 0, byElement: [] });
    const checked = await engine.scrub('v');
    expect(checked.outcome).toBe('done');
  });

  it('a degraded raid1 is still scrubbed: its one copy is judged by its checksums (found bad, not repairable)', async () => {
    engine = await open();
    await engine.volume('v').write(0, new Uint8Array(MiB).fill(0x3c));
    await engine.volume('v').flush();
    await engine.failElement('b');
    const fd = fs.openSync(path.join(dir, 'a.img'), 'r+');
    fs.writeSync(fd, Buffer.from([0xc3]), 0, 1, DATA_OFFSET_BYTES + 4096 + 9);
    fs.closeSync(fd);
    const result = await engine.scrub('v', { repair: true });
    expect(result).toMatchObject({ outcome: 'done', byElement: [{ element: 'a', badBlocks: 1, repairedBlocks: 0, unrecoverableBlocks: 1 }] });
    expect(result.skippedBytes).toBe(0);
    await expect(engine.volume('v').read(4096, 4096)).rejects.toThrow(/EIO|checksum/);
  });

  it('createVolume: integrity on raid1/raid10, refused on raid0 before anything is created; delete drops the store', async () => {
    engine = await Engine.open({ log: () => undefined, config: { dataDir: dir, nbd: { listen: '127.0.0.1:0' }, elements: [], volumes: [] } });
    const file = (n: string): string => `file:${path.join(dir, `${n}.img`)}`;
    await expect(engine.createVolume({ name: 'p', layout: 'raid0', elements: ['p0', 'p1', 'p2'].map(file), sizeBytes: 8 * MiB, integrity: true }))
      .rejects.toThrow(/integrity needs a layout that can repair a bad block/);
    expect(fs.existsSync(path.join(dir, 'p0.img'))).toBe(false);
    const vol = await engine.createVolume({ name: 'm', layout: 'raid10', elements: ['m0', 'm1', 'm2', 'm3'].map(file), sizeBytes: 8 * MiB, integrity: true });
    expect(vol.sizeBytes).toBe(2 * (8 * MiB - 64 * 1024));
    expect(engine.status().volumes.find((v) => v.name === 'm')!.integrity).toBe(true);
    expect(engine.integrityStoreOf('m')).toBeDefined();
    const plain = await engine.createVolume({ name: 'q', layout: 'raid1', elements: ['q0', 'q1'].map(file), sizeBytes: 8 * MiB });
    expect(plain.sizeBytes).toBe(8 * MiB);
    expect(engine.status().volumes.find((v) => v.name === 'q')!.integrity).toBe(false);
    expect(engine.status().volumes.find((v) => v.name === 'q')!.elements.every((e) => e.integrity === undefined)).toBe(true);
    expect(engine.integrityStoreOf('q')).toBeUndefined();
    await engine.deleteVolume('m');
    expect(engine.integrityStoreOf('m')).toBeUndefined();
  });

  it('a run-time integrity volume keeps integrity across close/open (the state file records it)', async () => {
    const empty = { log: () => undefined, config: { dataDir: dir, nbd: { listen: '127.0.0.1:0' }, elements: [], volumes: [] } };
    engine = await Engine.open(empty);
    await engine.createVolume({ name: 'r', layout: 'raid1', elements: ['r0', 'r1'].map((n) => `file:${path.join(dir, `${n}.img`)}`), sizeBytes: 8 * MiB, integrity: true });
    await engine.close();
    engine = await Engine.open(empty);
    expect(engine.status().volumes.find((v) => v.name === 'r')?.integrity).toBe(true);
    expect(engine.integrityStoreOf('r')).toBeDefined();
  });
});
