// Acceptance (issue 9): base:allocation through every layout, seen by real clients. On fresh
// volumes over sparse images `nbdinfo --map` reports one hole/zero extent; after qemu-io writes
// at known offsets exactly those ranges are data — for linear, raid0, raid1 and raid5, for a
// raid1 whose second leg is a remote nbdkit export (its holes and its data are asked over NBD),
// one whose second leg is a thin iSCSI LUN on tgtd (asked with GET LBA STATUS), and for a raid1
// with a failed leg (whose bytes are not read, so they do not count).
// Without the native addon (ONESTACK_NATIVE=off: Node has no lseek) every volume over local
// elements must answer the conservative "all data".
import { openSync, writeSync, closeSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Daemon } from './lib/daemon.js';
import { apiCall } from './lib/daemon-state.js';
import { DATA_OFFSET_BYTES, MiB, removeDir, sparseFile, tempDir, writeConfig, type ElementSpec, type VolumeSpec } from './lib/files.js';
import { qemuIo, qemuIoFailed } from './lib/peers.js';
import { explain, freePort, missingTools, runOk } from './lib/proc.js';
import { startNbdkit, startTgtd, type NbdkitPeer, type TgtdPeer } from './lib/remotes.js';

const KiB = 1024;
const DATA_BYTES = 32 * MiB;
const LEG_BYTES = DATA_OFFSET_BYTES + DATA_BYTES;
const missing = missingTools(['nbdinfo', 'qemu-io', 'nbdkit']);
const missingIscsi = missingTools(['tgtd', 'tgtadm']);

interface MapEntry { readonly offset: number; readonly length: number; readonly type: number }

/** `nbdinfo --map --json` of the base:allocation context, as [offset, length, type] triples. */
async function map(uri: string): Promise<[number, number, number][]> {
  const r = await runOk('nbdinfo', ['--map', '--json', uri], { timeoutMs: 30_000 });
  return (JSON.parse(r.stdout) as MapEntry[]).map((e) => [e.offset, e.length, e.type]);
}

/** The map a volume of sizeBytes must show with data exactly at `data` (sorted, disjoint [offset, length)). */
function expected(sizeBytes: number, data: readonly (readonly [number, number])[]): [number, number, number][] {
  const out: [number, number, number][] = [];
  let at = 0;
  for (const [off, len] of data) {
    if (off > at) out.push([at, off - at, 3]);
    out.push([off, len, 0]);
    at = off + len;
  }
  if (sizeBytes > at) out.push([at, sizeBytes - at, 3]);
  return out;
}

async function write(uri: string, offsetBytes: number, lengthBytes: number): Promise<void> {
  const r = await qemuIo(uri, [`write -P 0x5a ${offsetBytes} ${lengthBytes}`]);
  expect(qemuIoFailed(r), explain(r)).toBe(false);
}

/** Bytes written straight into an image file, behind the daemon's back. */
function scribble(file: string, offsetBytes: number, lengthBytes: number): void {
  const fd = openSync(file, 'r+');
  try {
    writeSync(fd, Buffer.alloc(lengthBytes, 0x77), 0, lengthBytes, offsetBytes);
  } finally {
    closeSync(fd);
  }
}

describe.skipIf(missing !== null)(`block status: base:allocation through the layouts${missing !== null ? ` (skipped: ${missing})` : ''}`, () => {
  let dir = '';
  let nbdkit: NbdkitPeer | null = null;
  let tgtd: TgtdPeer | null = null;
  let daemon: Daemon | null = null;
  let images: ReadonlyMap<string, string> = new Map();
  let native = false;
  const d = (): Daemon => daemon!;

  beforeAll(async () => {
    dir = tempDir('block-status');
    await sparseFile(path.join(dir, 'remote.img'), LEG_BYTES);
    nbdkit = await startNbdkit(['file', path.join(dir, 'remote.img')]);
    const iscsi: ElementSpec[] = [];
    const iscsiVolume: VolumeSpec[] = [];
    if (missingIscsi === null) {
      // A thin-provisioned LUN: tgtd answers GET LBA STATUS from its backing file's holes.
      await sparseFile(path.join(dir, 'lun.img'), LEG_BYTES);
      const controlPort = 1000 + ((await freePort()) % 20000);
      tgtd = await startTgtd({ backingFiles: [path.join(dir, 'lun.img')], controlPort });
      await runOk('tgtadm', ['-C', String(controlPort), '--lld', 'iscsi', '--mode', 'logicalunit', '--op', 'update', '--tid', '1', '--lun', '1', '--params', 'thin_provisioning=1']);
      iscsi.push({ name: 'y0', sizeBytes: LEG_BYTES }, { name: 'ri', uri: tgtd.uri(), options: { timeoutMs: 10_000 } });
      iscsiVolume.push({ name: 'imixed', layout: 'raid1', elements: ['y0', 'ri'] });
    }
    const local = (name: string) => ({ name, sizeBytes: LEG_BYTES });
    const written = await writeConfig(dir, [
      local('l0'), local('l1'), local('s0'), local('s1'), local('s2'), local('m0'), local('m1'),
      local('p0'), local('p1'), local('p2'), local('f0'), local('f1'), local('x0'),
      { name: 'rx', uri: `nbd://127.0.0.1:${nbdkit.port}/`, options: { timeoutMs: 10_000 } }, ...iscsi,
    ], [
      { name: 'lin', layout: 'linear', elements: ['l0', 'l1'] },
      { name: 'r0', layout: 'raid0', elements: ['s0', 's1', 's2'], chunkKiB: 64 },
      { name: 'r1', layout: 'raid1', elements: ['m0', 'm1'] },
      { name: 'r5', layout: 'raid5', elements: ['p0', 'p1', 'p2'], chunkKiB: 64 },
      { name: 'deg', layout: 'raid1', elements: ['f0', 'f1'] },
      { name: 'mixed', layout: 'raid1', elements: ['x0', 'rx'] }, ...iscsiVolume,
    ]);
    images = written.images;
    daemon = await Daemon.start({ dataDir: path.join(dir, 'data'), configPath: written.configPath });
    const status = (await d().status()) as unknown as { native: { backend: string } };
    native = status.native.backend === 'native';
    console.log(`block-status: daemon native backend ${status.native.backend}`);
  }, 60_000);

  afterAll(async () => {
    await daemon?.stop();
    await nbdkit?.stop();
    await tgtd?.stop();
    if (dir !== '') removeDir(dir);
  });

  const LAYOUTS: readonly { volume: string; sizeBytes: number }[] = [
    { volume: 'lin', sizeBytes: 2 * DATA_BYTES }, { volume: 'r0', sizeBytes: 3 * DATA_BYTES },
    { volume: 'r1', sizeBytes: DATA_BYTES }, { volume: 'r5', sizeBytes: 2 * DATA_BYTES },
  ];
  // 4 KiB at 0; 8 KiB across the first 64 KiB chunk boundary; 1 MiB + 12 KiB in the middle; the last 4 KiB.
  const writesFor = (sizeBytes: number): [number, number][] => [[0, 4 * KiB], [60 * KiB, 8 * KiB], [5 * MiB, MiB + 12 * KiB], [sizeBytes - 4 * KiB, 4 * KiB]];

  for (const { volume, sizeBytes } of LAYOUTS) {
    it(`${volume}: fresh = one hole/zero extent; after qemu-io writes exactly the written ranges are data`, async () => {
      const uri = d().uri(volume);
      const allData: [number, number, number][] = [[0, sizeBytes, 0]];
      expect(await map(uri), `${volume} fresh\n${d().logs()}`).toEqual(native ? expected(sizeBytes, []) : allData);
      const writes = writesFor(sizeBytes);
      for (const [off, len] of writes) await write(uri, off, len);
      expect(await map(uri), `${volume} written`).toEqual(native ? expected(sizeBytes, writes) : allData);
    });
  }

  /** A raid1 of a local leg and a remote one whose backing file is `remoteFile`. */
  async function mixedLegMaps(uri: string, remoteFile: string): Promise<void> {
    if (!native) {
      // The local leg cannot tell without lseek: all data, whatever the remote says.
      expect(await map(uri)).toEqual([[0, DATA_BYTES, 0]]);
      return;
    }
    expect(await map(uri), d().logs()).toEqual(expected(DATA_BYTES, []));
    await write(uri, 2 * MiB, 64 * KiB);
    expect(await map(uri)).toEqual(expected(DATA_BYTES, [[2 * MiB, 64 * KiB]]));
    // Data only the remote leg holds (written into its file directly): the volume reads from
    // both legs, so this range is data too — which only the remote's own answer can say.
    scribble(remoteFile, DATA_OFFSET_BYTES + 20 * MiB, 8 * KiB);
    expect(await map(uri)).toEqual(expected(DATA_BYTES, [[2 * MiB, 64 * KiB], [20 * MiB, 8 * KiB]]));
  }

  it('raid1 of a local leg and a remote nbdkit leg: holes and data of the remote leg are asked over NBD', async () => {
    await mixedLegMaps(d().uri('mixed'), path.join(dir, 'remote.img'));
  });

  it.skipIf(missingIscsi !== null)(`raid1 of a local leg and a thin iSCSI LUN (tgtd): the LUN is asked with GET LBA STATUS${missingIscsi !== null ? ` (skipped: ${missingIscsi})` : ''}`, async () => {
    await mixedLegMaps(d().uri('imixed'), path.join(dir, 'lun.img'));
  });

  it('raid1 with a failed leg answers from the leg it reads', async () => {
    const uri = d().uri('deg');
    await write(uri, MiB, 64 * KiB);
    const failed = await apiCall(d(), 'POST', 'elements/f0/fail');
    expect(failed.status, failed.text).toBeLessThan(300);
    // Bytes on the failed leg are never read: they must not turn into data.
    scribble(images.get('f0')!, DATA_OFFSET_BYTES + 9 * MiB, 4 * KiB);
    await write(uri, 3 * MiB, 4 * KiB);
    expect(await map(uri)).toEqual(native ? expected(DATA_BYTES, [[MiB, 64 * KiB], [3 * MiB, 4 * KiB]]) : [[0, DATA_BYTES, 0]]);
    // And data only on the leg it reads shows.
    scribble(images.get('f1')!, DATA_OFFSET_BYTES + 12 * MiB, 4 * KiB);
    expect(await map(uri)).toEqual(native ? expected(DATA_BYTES, [[MiB, 64 * KiB], [3 * MiB, 4 * KiB], [12 * MiB, 4 * KiB]]) : [[0, DATA_BYTES, 0]]);
  });
});
