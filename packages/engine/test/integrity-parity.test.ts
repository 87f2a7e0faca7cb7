// Integrity on raid5/raid6 through the Engine (real checksum store, real stripe engine): a client
// read of a block that fails its checksum is rebuilt from parity and the unit repaired; a write
// never computes parity from a unit that fails (it is repaired first); a degraded read whose
// input fails is EIO, never wrong bytes (raid6 rebuilds it); after kill -9 during writes, journal
// replay recomputes the checksums of what it wrote again, so nothing reads as corrupt.
// Layout (map-parity.ts, chunk 64 KiB): row r has P on role n-1-(r mod n), data j on (P+np+j) mod n.
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Engine } from '../dist/index.js';
import { DATA_OFFSET_BYTES } from '../dist/meta/types.js';

const MiB = 1024 * 1024;
const KiB = 1024;
const CHUNK = 64 * KiB;
let dir: string;
let engine: Engine | undefined;
let logs: string[] = [];

beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'onestack-integrity-parity-'));
  logs = [];
});
afterEach(async () => {
  await engine?.close();
  engine = undefined;
  fs.rmSync(dir, { recursive: true, force: true });
});

const names = (n: number): string[] => Array.from({ length: n }, (_, i) => String.fromCharCode(97 + i));
const file = (name: string): string => path.join(dir, `${name}.img`);

function config(layout: 'raid5' | 'raid6', n: number) {
  return {
    nbd: { listen: '127.0.0.1:0' }, cache: { readMiB: 0 },
    elements: names(n).map((name) => ({ name, uri: `file:${file(name)}`, createSizeBytes: 12 * MiB })),
    volumes: [{ name: 'p', layout, elements: names(n), chunkKiB: 64, integrity: true }],
  };
}

function open(layout: 'raid5' | 'raid6', n: number): Promise<Engine> {
  return Engine.open({ log: (_level, line) => logs.push(line), config: { ...config(layout, n), dataDir: dir } });
}

function pattern(bytes: number, seed: number): Uint8Array {
  const out = new Uint8Array(bytes);
  for (let i = 0; i < bytes; i++) out[i] = (i * 31 + seed + (i >>> 12) * 7) & 0xff;
  return out;
}

/** Flips one byte of element `name` at data-area offset `dataOffsetBytes`. */
function flip(name: string, dataOffsetBytes: number): void {
  const fd = fs.openSync(file(name), 'r+');
  try {
    const b = Buffer.alloc(1);
    fs.readSync(fd, b, 0, 1, DATA_OFFSET_BYTES + dataOffsetBytes);
    b[0] = b[0]! ^ 0xff;
    fs.writeSync(fd, b, 0, 1, DATA_OFFSET_BYTES + dataOffsetBytes);
  } finally {
    fs.closeSync(fd);
  }
}

function legBytes(name: string, dataOffsetBytes: number, length: number): Buffer {
  const fd = fs.openSync(file(name), 'r');
  try {
    const b = Buffer.alloc(length);
    fs.readSync(fd, b, 0, length, DATA_OFFSET_BYTES + dataOffsetBytes);
    return b;
  } finally {
    fs.closeSync(fd);
  }
}

function counts(e: Engine, element: string): { mismatches: number; repaired: number; unrecoverable: number } | undefined {
  return e.status().volumes.find((v) => v.name === 'p')!.elements.find((x) => x.name === element)?.integrity;
}

describe('integrity on raid5/raid6 through the Engine', () => {
  it('raid5: a flipped data byte is served rebuilt from parity, counted on that element, and repaired on the leg', async () => {
    engine = await open('raid5', 3);
    const vol = engine.volume('p');
    const data = pattern(MiB, 1);
    await vol.write(0, data);
    await vol.flush();
    // Row 0: P on role 2 (c), data 0 on a, data 1 on b. Volume offset 8192 is a's block 2.
    flip('a', 8192 + 5);
    expect(Buffer.from(await vol.read(0, MiB)).equals(Buffer.from(data))).toBe(true);
    expect(counts(engine, 'a')).toEqual({ mismatches: 1, repaired: 1, unrecoverable: 0 });
    expect(counts(engine, 'b')).toEqual({ mismatches: 0, repaired: 0, unrecoverable: 0 });
    expect(legBytes('a', 8192, 4096).equals(Buffer.from(data.subarray(8192, 12288)))).toBe(true);
    expect(logs.some((l) => /failed its checksum; data rewritten from parity/.test(l))).toBe(true);
  });

  it('raid5: a write never computes parity from a unit that fails its checksum: the unit is repaired first', async () => {
    engine = await open('raid5', 3);
    const vol = engine.volume('p');
    const data = pattern(MiB, 2);
    await vol.write(0, data);
    await vol.flush();
    // b holds row 0's data 1 (volume 64 KiB..): a 4 KiB write at volume 0 (data 0) reconstructs
    // parity from b's block 0 (reconstruct-write reads one unit, read-modify-write two).
    flip('b', 5);
    const fresh = pattern(4096, 3);
    await vol.write(0, fresh);
    expect(counts(engine, 'b')).toEqual({ mismatches: 1, repaired: 1, unrecoverable: 0 });
    expect(legBytes('b', 0, 4096).equals(Buffer.from(data.subarray(CHUNK, CHUNK + 4096)))).toBe(true);
    // Parity is right: with a failed, data 0 comes from b and P.
    await engine.failElement('a');
    const expected = Buffer.from(data);
    expected.set(fresh, 0);
    expect(Buffer.from(await vol.read(0, MiB)).equals(expected)).toBe(true);
  });

  it('raid5 degraded: a rebuilt read whose input fails its checksum is EIO, never wrong bytes', async () => {
    engine = await open('raid5', 3);
    const vol = engine.volume('p');
    const data = pattern(MiB, 4);
    await vol.write(0, data);
    await vol.flush();
    await engine.failElement('c');
    // Row 1: P on b, data 0 on c (lost), data 1 on a, at data offset 64 KiB. Volume 128 KiB is row 1's data 0.
    flip('a', CHUNK + 5);
    await expect(vol.read(2 * CHUNK, 4096)).rejects.toThrow(/EIO|checksum|parity/);
    // Data 1 of row 1 read directly from a: fails, and with c lost nothing can rebuild it.
    await expect(vol.read(3 * CHUNK, 4096)).rejects.toThrow(/EIO|checksum|parity/);
    expect(counts(engine, 'a')!.unrecoverable).toBeGreaterThan(0);
    // Blocks next to it still read right.
    expect(Buffer.from(await vol.read(2 * CHUNK + 4096, 4096)).equals(Buffer.from(data.subarray(2 * CHUNK + 4096, 2 * CHUNK + 8192)))).toBe(true);
  });

  it('raid6 degraded by one: an input that fails is rebuilt from P and Q, the read is right', async () => {
    engine = await open('raid6', 4);
    const vol = engine.volume('p');
    const data = pattern(MiB, 5);
    await vol.write(0, data);
    await vol.flush();
    // Row 0 of 4: P on d (role 3), Q on a (role 0), data 0 on b, data 1 on c.
    await engine.failElement('b');
    flip('c', 4096 + 5);
    expect(Buffer.from(await vol.read(0, 2 * CHUNK)).equals(Buffer.from(data.subarray(0, 2 * CHUNK)))).toBe(true);
    expect(counts(engine, 'c')).toEqual({ mismatches: 1, repaired: 1, unrecoverable: 0 });
    expect(legBytes('c', 4096, 4096).equals(Buffer.from(data.subarray(CHUNK + 4096, CHUNK + 8192)))).toBe(true);
  });

  it('raid5: kill -9 during writes, reopen: replay recomputes the checksums it rewrote; everything reads, nothing counted', async () => {
    const child = spawn(process.execPath, [fileURLToPath(new URL('./fixtures/parity-writer.mjs', import.meta.url)), dir, JSON.stringify(config('raid5', 3))], { stdio: ['ignore', 'pipe', 'inherit'] });
    try {
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error('the writer did not start writing within 30 s')), 30_000);
        child.stdout.on('data', (b: Buffer) => {
          if (b.toString().includes('writing')) {
            clearTimeout(timer);
            setTimeout(resolve, 700); // let writes pile up in the journal
          }
        });
        child.on('exit', (code) => reject(new Error(`the writer exited (${code}) before it was killed`)));
      });
    } finally {
      child.kill('SIGKILL');
    }
    await new Promise((r) => child.once('close', r));
    engine = await open('raid5', 3);
    expect(logs.some((l) => /replayed from the stripe journal recomputed/.test(l))).toBe(true);
    const vol = engine.volume('p');
    expect(Buffer.from(await vol.read(0, 256 * KiB)).every((b) => b === 0xa5)).toBe(true);
    for (let at = 0; at < vol.sizeBytes; at += 4 * MiB) await vol.read(at, Math.min(4 * MiB, vol.sizeBytes - at));
    for (const name of names(3)) expect(counts(engine, name)).toEqual({ mismatches: 0, repaired: 0, unrecoverable: 0 });
  }, 90_000);
});
