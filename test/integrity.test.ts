// Acceptance (issue 10, raid1): per-block checksums on a raid1 of a local leg and an nbdkit leg.
// Bytes flipped directly in ONE leg's backing file (local, then remote) are caught on read: the
// client gets the original bytes (sha256), the element's integrity counters rise in status, and
// the leg file holds the original block again afterwards. kill -9 during heavy writes, restart:
// reading everything back raises no checksum mismatch, and data flushed before the crash reads back.
import { createHash } from 'node:crypto';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Daemon } from './lib/daemon.js';
import { DATA_OFFSET_BYTES, flipBytes, MiB, readAt, removeDir, sha256Range, sparseFile, tempDir, writeConfig } from './lib/files.js';
import { nbdcopy, qemuIo, qemuIoFailed } from './lib/peers.js';
import { explain, missingTools, sleep, spawnTracked } from './lib/proc.js';
import { startNbdkit, type NbdkitPeer } from './lib/remotes.js';

// Room for the data and its checksum area (data / 1024) after the 4 MiB header.
const ELEMENT_BYTES = DATA_OFFSET_BYTES + 65 * MiB;
const PATTERN_BYTES = 8 * MiB;
const missing = missingTools(['nbdkit', 'qemu-io', 'nbdcopy']);

interface Counts { mismatches: number; repaired: number; unrecoverable: number }
interface ElementView { name: string; state: string; integrity?: Counts }
interface VolumeView { name: string; state: string; integrity?: boolean; elements: ElementView[]; lastRebuild?: { outcome: string } | null; rebuild?: unknown }

async function vol(d: Daemon, name: string): Promise<VolumeView> {
  const v = (await d.status()).volumes.find((x) => x.name === name) as unknown as VolumeView | undefined;
  if (v === undefined) throw new Error(`no volume ${name} in status`);
  return v;
}

function countsOf(v: VolumeView, element: string): Counts {
  return v.elements.find((e) => e.name === element)?.integrity ?? { mismatches: -1, repaired: -1, unrecoverable: -1 };
}

/** Flips one byte of a leg file at data offset `dataOffsetBytes` (files.ts flipBytes). */
function flip(file: string, dataOffsetBytes: number): void {
  flipBytes(file, DATA_OFFSET_BYTES + dataOffsetBytes);
}

function sha256(buf: Buffer): string {
  return createHash('sha256').update(buf).digest('hex');
}

describe.skipIf(missing !== null)(`integrity on raid1 (local + nbdkit)${missing !== null ? ` (skipped: ${missing})` : ''}`, () => {
  let dir = '';
  let daemon: Daemon | null = null;
  let remote: NbdkitPeer | null = null;
  let configPath = '';
  const file = (name: string): string => path.join(dir, `${name}.img`);
  const original = Buffer.alloc(PATTERN_BYTES, 0x5a);

  beforeAll(async () => {
    dir = tempDir('integrity');
    await sparseFile(file('far'), ELEMENT_BYTES);
    // Slow remote writes: at the kill, checksum page writes queued behind running ones on the far
    // leg are lost while its data writes landed (new data, old checksum) — what the resync must fix.
    remote = await startNbdkit(['--filter=delay', 'file', file('far'), 'wdelay=10ms']);
    ({ configPath } = await writeConfig(dir, [{ name: 'near', sizeBytes: ELEMENT_BYTES }, { name: 'far', uri: remote.uri, options: { timeoutMs: 3000 } }],
      [{ name: 'mir', layout: 'raid1', elements: ['near', 'far'], bitmapRegionKiB: 64, integrity: true }],
      // RAM read cache off: its blocks were verified when they were filled, so a re-read would never reach a leg.
      ['cache: { readMiB: 0 }']));
    // Reads alternate between legs (the earlier rule), so the far leg's flipped block is read too;
    // the latency-aware default (docs/transport.md) would keep reads on the near leg.
    daemon = await Daemon.start({ dataDir: path.join(dir, 'data'), configPath, env: { ONESTACK_READ_POLICY: 'queue' } });
  }, 60_000);

  afterAll(async () => {
    await daemon?.stop();
    await remote?.stop();
    if (dir !== '') removeDir(dir);
  });

  /** Reads the flipped block through NBD until the element counts the mismatch (either leg may serve a read). */
  async function readUntilCaught(element: string, offsetBytes: number, before: number): Promise<Counts> {
    const d = daemon!;
    for (let i = 0; i < 40; i++) {
      const r = await qemuIo(d.uri('mir'), [`read -P 0x5a ${offsetBytes} 4k`, `read -P 0x5a ${offsetBytes} 64k`]);
      expect(qemuIoFailed(r), explain(r)).toBe(false); // never the bad bytes
      const c = countsOf(await vol(d, 'mir'), element);
      if (c.mismatches > before) return c;
    }
    throw new Error(`element ${element}: no mismatch counted after 40 reads\n${JSON.stringify((await d.status()).volumes.find((x) => x.name === "mir")?.elements)}\n${d.logs().slice(-1500)}`);
  }

  async function checkAll(): Promise<void> {
    const out = path.join(dir, `read-${Date.now()}.raw`);
    const r = await nbdcopy(daemon!.uri('mir'), out);
    expect(r.code, explain(r)).toBe(0);
    expect(await sha256Range(out, 0, PATTERN_BYTES)).toBe(sha256(original));
  }

  it('the volume has integrity on, and a pattern is written', async () => {
    const v = await vol(daemon!, 'mir');
    expect(v.integrity, JSON.stringify(v)).toBe(true);
    const w = await qemuIo(daemon!.uri('mir'), [`write -P 0x5a 0 ${PATTERN_BYTES}`, 'flush']);
    expect(qemuIoFailed(w), explain(w)).toBe(false);
    expect(countsOf(v, 'near')).toEqual({ mismatches: 0, repaired: 0, unrecoverable: 0 });
  }, 60_000);

  for (const [leg, at] of [['near', 1 * MiB + 4096 + 123], ['far', 3 * MiB + 77]] as const) {
    it(`a byte flipped in the ${leg} leg's file: original bytes served, counted, leg repaired`, async () => {
      const block = Math.floor(at / 4096) * 4096;
      const before = countsOf(await vol(daemon!, 'mir'), leg).mismatches;
      flip(file(leg), at);
      expect((await readAt(file(leg), DATA_OFFSET_BYTES + block, 4096)).equals(original.subarray(0, 4096))).toBe(false);
      const c = await readUntilCaught(leg, block, before);
      expect(c.repaired).toBeGreaterThanOrEqual(1);
      expect(c.unrecoverable).toBe(0);
      await checkAll();
      // The raw leg holds the original block again.
      expect((await readAt(file(leg), DATA_OFFSET_BYTES + block, 4096)).equals(original.subarray(0, 4096))).toBe(true);
    }, 120_000);
  }

  it('kill -9 during heavy writes, restart: no checksum mismatch on reading everything back', async () => {
    let d = daemon!;
    // Heavy writes over [16M, 48M) while the daemon is killed; [0, 8M) was flushed before.
    const cmds: string[] = [];
    for (let i = 0; i < 4000; i++) cmds.push(`aio_write -P ${(i % 200) + 1} ${16 * MiB + ((i * 37) % 512) * 64 * 1024} 64k`);
    const writer = spawnTracked('qemu-io', ['-f', 'raw', ...cmds.flatMap((c) => ['-c', c]), d.uri('mir')]);
    await sleep(1500);
    expect(writer.exitCode, 'the writer is still writing when the daemon is killed').toBe(null);
    await d.crash();
    writer.kill('SIGKILL');
    daemon = d = await Daemon.start({ dataDir: d.dataDir, configPath, nbdPort: d.nbdPort, apiPort: d.apiPort });
    // The resync of the dirty regions recomputes their checksums; read everything meanwhile and after.
    await checkAll();
    const deadline = Date.now() + 60_000;
    let v = await vol(d, 'mir');
    while (v.rebuild !== null && v.rebuild !== undefined && Date.now() < deadline) {
      await sleep(200);
      v = await vol(d, 'mir');
    }
    // The unclean stop was seen and the dirty regions were resynced (their checksums recomputed).
    expect(d.stdout + d.stderr, d.logs()).toMatch(/resync of .* started/);
    expect(v.lastRebuild?.outcome, JSON.stringify(v)).toBe('done');
    const everything = path.join(dir, 'all.raw');
    const r = await nbdcopy(d.uri('mir'), everything);
    expect(r.code, explain(r) + d.logs()).toBe(0);
    v = await vol(d, 'mir');
    for (const leg of ['near', 'far']) expect(countsOf(v, leg), `${leg}\n${d.logs()}`).toEqual({ mismatches: 0, repaired: 0, unrecoverable: 0 });
    await checkAll();
  }, 180_000);
});
