// What the librbd and gateway test files share (issue 12): an element's status with its rbd
// field, and the acceptance case "ceph-osd stopped during fio verify": fio writes and verifies 40 MiB at 3 MiB/s on a raid1 of a local file and an
// rbd leg named r0 while the cluster's only OSD is away for ~8 s. fio must end without error, the
// leg must be seen away, come back active by a resync of dirty regions only (never a full rebuild),
// and `rbd export` (librbd, not onestack) must then hold what the local leg holds.
import { createHash } from 'node:crypto';
import path from 'node:path';
import { expect } from 'vitest';
import type { Daemon } from './daemon.js';
import { DATA_OFFSET_BYTES, MiB, randomFile, sha256Range } from './files.js';
import { fio, nbdcopy } from './peers.js';
import { explain, sleep } from './proc.js';
import { osdPid, rbdExportHead, startOsd } from './ceph.js';

const WRITTEN_BYTES = 40 * MiB;

export interface RbdStatus { path: string; pool: string; image: string; pid: number | null; restarts: number; state: string; clientAddrs?: string[]; inFlight?: number; fallback?: string }
export interface ElementView { name: string; kind: string; state: string; uri: string; rbd?: RbdStatus }

/** The daemon's status of one element; throws naming what is there when it is missing. */
export async function elementView(daemon: Daemon, name: string): Promise<ElementView> {
  const elements = (await daemon.status()).elements as readonly ElementView[];
  const e = elements.find((x) => x.name === name);
  if (e === undefined) throw new Error(`no element ${name} in ${JSON.stringify(elements)}`);
  return e;
}

export async function osdStopUnderFio(daemon: Daemon, dir: string, localImage: string, image: string): Promise<void> {
  const r0State = async (): Promise<string> => (await elementView(daemon, 'r0')).state;
  const osd = osdPid();
  expect(osd, 'osd.0 pid file').not.toBeNull();
  // About 13 s of writes, the OSD away for ~8 s of them (a request gives up after 5 s); verify reads come from an active leg.
  const run1 = fio(['--name=osd', '--ioengine=nbd', `--uri=${daemon.uri('v')}`, '--rw=write', '--bs=64k', '--iodepth=4', `--size=${WRITTEN_BYTES / MiB}M`,
    '--rate=3m', '--verify=crc32c', '--do_verify=1', '--verify_fatal=1'], dir);
  await sleep(2000);
  process.kill(osd!, 'SIGTERM');
  let sawAway = false;
  for (let i = 0; i < 16; i++) {
    await sleep(500);
    if ((await r0State()) !== 'active') sawAway = true;
  }
  await startOsd();
  const { result, jobs } = await run1;
  expect(result.code, explain(result)).toBe(0);
  expect(jobs[0]?.error ?? 0).toBe(0);
  expect(sawAway, daemon.logs()).toBe(true);
  const deadline = Date.now() + 120_000;
  while (Date.now() < deadline && (await r0State()) !== 'active') await sleep(1000);
  expect(await r0State(), daemon.logs()).toBe('active');
  expect(daemon.stderr).toMatch(/element r0 answers again; resync of \d+ dirty region/);
  expect(daemon.stderr).not.toMatch(/element r0 answers again; full rebuild/);
  const exported = await rbdExportHead(DATA_OFFSET_BYTES + WRITTEN_BYTES, image);
  const sha = createHash('sha256').update(exported.subarray(DATA_OFFSET_BYTES)).digest('hex');
  expect(sha).toBe(await sha256Range(localImage, DATA_OFFSET_BYTES, WRITTEN_BYTES));
}

/** nbdcopy COPY_BYTES of random data into volume v and back: equal sha256, and `rbd export` finds the bytes after the 4 MiB header. */
export async function roundTripWithExport(daemon: Daemon, dir: string, image: string, copyBytes: number): Promise<string> {
  const src = path.join(dir, 'src.bin');
  const back = path.join(dir, 'back.bin');
  const want = await randomFile(src, copyBytes);
  const up = await nbdcopy(src, daemon.uri('v'), ['--flush']);
  expect(up.code, explain(up)).toBe(0);
  const down = await nbdcopy(daemon.uri('v'), back);
  expect(down.code, explain(down)).toBe(0);
  expect(await sha256Range(back, 0, copyBytes)).toBe(want);
  const exported = await rbdExportHead(DATA_OFFSET_BYTES + copyBytes, image);
  expect(createHash('sha256').update(exported.subarray(DATA_OFFSET_BYTES)).digest('hex')).toBe(want);
  return want;
}
