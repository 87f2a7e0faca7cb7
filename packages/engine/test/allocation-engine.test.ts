// Engine.allocation over real sparse element files for every layout: a fresh volume is one
// hole (creation writes nothing into the data areas), written ranges come back exactly as
// data, failed legs are left out of raid1 answers and a degraded raid5 answers for its missing
// chunks from the row's survivors; element fds are released when their volume goes away.
// Imports the BUILT dist (workers are .js files).
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { sparseSeekUnavailable } from '@onestack/native';
import { Engine } from '../dist/index.js';
import { DATA_OFFSET_BYTES } from '../dist/meta/types.js';
import { refRoles } from './raid56-ref.js';

const MiB = 1024 * 1024;
const KiB = 1024;
const LEG_BYTES = 16 * MiB;
const quiet = (): void => {};
let dir: string;
let engine: Engine | undefined;
beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'onestack-alloc-engine-'));
});
afterEach(async () => {
  await engine?.close();
  engine = undefined;
  fs.rmSync(dir, { recursive: true, force: true });
});

const image = (name: string): string => path.join(dir, `${name}.img`);
type Layout = 'linear' | 'raid0' | 'raid1' | 'raid10' | 'raid5' | 'raid6';

async function open(volumes: readonly { name: string; layout: Layout; legs: readonly string[] }[], cache: 'writeback' | 'none' = 'writeback'): Promise<Engine> {
  engine = await Engine.open({
    log: quiet,
    config: {
      dataDir: dir, nbd: { listen: '127.0.0.1:0' },
      elements: volumes.flatMap((v) => v.legs).map((name) => ({ name, uri: `file:${image(name)}`, createSizeBytes: LEG_BYTES, cache })),
      volumes: volumes.map((v) => ({ name: v.name, layout: v.layout, elements: [...v.legs], chunkKiB: 64 })),
    },
  });
  return engine;
}

/** The extents a volume of sizeBytes should report with data exactly at `data` (sorted, disjoint [off, len)). */
function expected(sizeBytes: number, data: readonly [number, number][]): { lengthBytes: number; flags: number }[] {
  const out: { lengthBytes: number; flags: number }[] = [];
  let at = 0;
  for (const [off, len] of data) {
    if (off > at) out.push({ lengthBytes: off - at, flags: 3 });
    out.push({ lengthBytes: len, flags: 0 });
    at = off + len;
  }
  if (sizeBytes > at) out.push({ lengthBytes: sizeBytes - at, flags: 3 });
  return out;
}

const NO_SEEK = sparseSeekUnavailable();

describe.skipIf(NO_SEEK !== null)(`Engine.allocation on sparse local elements (${NO_SEEK ?? 'SEEK_DATA via the addon'})`, () => {
  const LAYOUTS: { layout: Layout; legs: number }[] = [
    { layout: 'linear', legs: 2 }, { layout: 'raid0', legs: 3 }, { layout: 'raid1', legs: 2 },
    { layout: 'raid10', legs: 4 }, { layout: 'raid5', legs: 3 }, { layout: 'raid6', legs: 4 },
  ];

  it('fresh volumes of every layout are one hole; written ranges come back exactly as data', async () => {
    const vols = LAYOUTS.map((l, i) => ({ name: l.layout, layout: l.layout, legs: Array.from({ length: l.legs }, (_, j) => `v${i}e${j}`) }));
    const e = await open(vols);
    const writes: [number, number][] = [[0, 4 * KiB], [60 * KiB, 8 * KiB], [5 * MiB, 1 * MiB + 12 * KiB], [LEG_BYTES - 4 * KiB, 4 * KiB]];
    for (const v of vols) {
      const vol = e.volume(v.name);
      expect(await e.allocation(v.name, 0, vol.sizeBytes, 64), `${v.layout} fresh`).toEqual([{ lengthBytes: vol.sizeBytes, flags: 3 }]);
      for (const [off, len] of writes) await vol.write(off, new Uint8Array(len).fill(0x5a));
      await vol.flush();
      expect(await e.allocation(v.name, 0, vol.sizeBytes, 64), `${v.layout} written`).toEqual(expected(vol.sizeBytes, writes));
      // A window and a one-extent answer start where asked and stay inside the request.
      expect(await e.allocation(v.name, 62 * KiB, 2 * MiB, 64), `${v.layout} window`).toEqual([{ lengthBytes: 6 * KiB, flags: 0 }, { lengthBytes: 2 * MiB - 6 * KiB, flags: 3 }]);
      expect(await e.allocation(v.name, 8 * KiB, vol.sizeBytes - 8 * KiB, 1), `${v.layout} one`).toEqual([{ lengthBytes: 52 * KiB, flags: 3 }]);
    }
  });

  it('raid1 and raid5 created at run time over new sparse files stay sparse (no initial resync writes the data areas)', async () => {
    const e = await open([{ name: 'l', layout: 'linear', legs: ['z'] }]);
    for (const [name, layout, n] of [['m', 'raid1', 2], ['p', 'raid5', 3]] as const) {
      const files = Array.from({ length: n }, (_, i) => image(`${name}${i}`));
      const vol = await e.createVolume({ name, layout, elements: files, sizeBytes: LEG_BYTES, chunkKiB: 64 });
      // Let any background work (resync, bitmap) run before looking.
      await new Promise((r) => setTimeout(r, 500));
      expect(e.status().volumes.find((v) => v.name === name)?.state, name).toBe('optimal');
      expect(await e.allocation(name, 0, vol.sizeBytes, 16), name).toEqual([{ lengthBytes: vol.sizeBytes, flags: 3 }]);
      for (const f of files) expect(fs.statSync(f).blocks * 512, `${f} allocated`).toBeLessThan(DATA_OFFSET_BYTES);
    }
  });

  it('O_DIRECT elements (cache: none) answer alike', async () => {
    const e = await open([{ name: 'd', layout: 'raid5', legs: ['a', 'b', 'c'] }], 'none');
    const vol = e.volume('d');
    expect(await e.allocation('d', 0, vol.sizeBytes, 16)).toEqual([{ lengthBytes: vol.sizeBytes, flags: 3 }]);
    await vol.write(7 * MiB, new Uint8Array(128 * KiB).fill(3));
    expect(await e.allocation('d', 0, vol.sizeBytes, 16)).toEqual(expected(vol.sizeBytes, [[7 * MiB, 128 * KiB]]));
  });

  it('raid1 with a failed leg answers from the remaining leg only', async () => {
    const e = await open([{ name: 'm', layout: 'raid1', legs: ['a', 'b'] }]);
    const vol = e.volume('m');
    await vol.write(MiB, new Uint8Array(64 * KiB).fill(1));
    await vol.flush();
    await e.failElement('a');
    // Data written behind the engine's back on the failed leg is not read: it must not show.
    const fd = fs.openSync(image('a'), 'r+');
    fs.writeSync(fd, new Uint8Array(4096).fill(9), 0, 4096, DATA_OFFSET_BYTES + 8 * MiB);
    fs.closeSync(fd);
    expect(await e.allocation('m', 0, vol.sizeBytes, 16)).toEqual(expected(vol.sizeBytes, [[MiB, 64 * KiB]]));
    await vol.write(3 * MiB, new Uint8Array(4096).fill(2));
    expect(await e.allocation('m', 0, vol.sizeBytes, 16)).toEqual(expected(vol.sizeBytes, [[MiB, 64 * KiB], [3 * MiB, 4 * KiB]]));
  });

  it('degraded raid5: a missing chunk is data where its row holds data on a survivor (parity included)', async () => {
    const legs = ['a', 'b', 'c'];
    const e = await open([{ name: 'p', layout: 'raid5', legs }]);
    const vol = e.volume('p');
    // 4 KiB at the start of chunk 0 (row 0): parity of row 0 gets data at [0, 4 KiB) too.
    await vol.write(0, new Uint8Array(4096).fill(7));
    await vol.flush();
    const chunk1Leg = legs[refRoles(3, 1, 0).data[1]!]!;
    await e.failElement(chunk1Leg);
    // Chunk 1 lives on the failed leg: its [0, 4 KiB) is rebuilt from chunk 0 and parity, both data there.
    expect(await e.allocation('p', 0, vol.sizeBytes, 16)).toEqual(expected(vol.sizeBytes, [[0, 4 * KiB], [64 * KiB, 4 * KiB]]));
  });

  it('refuses bad ranges and unknown volumes; releases element fds when the volume goes away', async () => {
    const e = await open([{ name: 'l', layout: 'linear', legs: ['a'] }]);
    const size = e.volume('l').sizeBytes;
    await expect(e.allocation('nope', 0, 4096, 1)).rejects.toMatchObject({ code: 'not-found' });
    await expect(e.allocation('l', size - 4096, 8192, 1)).rejects.toMatchObject({ code: 'invalid' });
    await expect(e.allocation('l', 0, 0, 1)).rejects.toMatchObject({ code: 'invalid' });
    await expect(e.allocation('l', 0, 4096, 0)).rejects.toMatchObject({ code: 'invalid' });
    await e.allocation('l', 0, size, 4);
    const fdsOn = (p: string): number => fs.readdirSync('/proc/self/fd').filter((fd) => {
      try {
        return fs.readlinkSync(`/proc/self/fd/${fd}`) === p;
      } catch {
        return false;
      }
    }).length;
    const before = fdsOn(image('a'));
    expect(before).toBeGreaterThan(0);
    await e.deleteVolume('l');
    await e.removeElement('a');
    // The data path's fds live in worker threads of this process too; all of them go.
    const deadline = Date.now() + 5_000;
    while (fdsOn(image('a')) > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    expect(fdsOn(image('a'))).toBe(0);
  });
});

describe.skipIf(NO_SEEK === null)(`Engine.allocation without the addon${NO_SEEK === null ? ' (skipped: the addon is loaded; ONESTACK_NATIVE=off runs it)' : ''}`, () => {
  it(`answers "all data", the conservative answer (${NO_SEEK ?? 'addon loaded'})`, async () => {
    const e = await open([{ name: 'm', layout: 'raid1', legs: ['a', 'b'] }]);
    const size = e.volume('m').sizeBytes;
    expect(await e.allocation('m', 0, size, 16)).toEqual([{ lengthBytes: size, flags: 0 }]);
  });
});
