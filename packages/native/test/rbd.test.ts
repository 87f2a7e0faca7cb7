// librbd through the addon (rbd.rs, rbd_api.rs) against a real Ceph cluster: the one-node cluster
// of ../shared/tools/ceph-single-node.sh at $CEPH_CONF (default /tmp/onestack-ceph/ceph.conf).
// Checked: bytes round-trip through rbd_aio_* from a SharedArrayBuffer view; `rbd export` (not
// us) reads what we wrote; many requests in flight come back through few drains; write-zeroes,
// flush, allocated extents; bad arguments and past-the-end requests fail with their errno name;
// two channels share one Ceph client; a fenced handle refuses (ESHUTDOWN). Without the addon,
// rbdUnavailable() says why and openRbdImage throws it.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { openRbdImage, rbdFence, rbdUnavailable, type NativeRbdImage, type RbdDone } from '../src/rbd.js';
import { addonFile } from './helpers.js';

const CONF = process.env['CEPH_CONF'] ?? '/tmp/onestack-ceph/ceph.conf';
const IMAGE = `native-test-${process.pid}`;
const MiB = 1 << 20;
const built = existsSync(addonFile) && process.env['ONESTACK_NATIVE'] !== 'off';

function rbd(args: readonly string[]): { code: number; stdout: Buffer; stderr: string } {
  const r = spawnSync('rbd', ['-c', CONF, ...args], { timeout: 60_000, maxBuffer: 64 * MiB });
  return { code: r.status ?? -1, stdout: r.stdout ?? Buffer.alloc(0), stderr: String(r.stderr ?? '') };
}

/** Why the live tests cannot run here, or null: the addon, librbd and a cluster that answers. */
function liveSkip(): string | null {
  if (!built) return `addon not built (${addonFile} missing; run pnpm build:native) or ONESTACK_NATIVE=off`;
  const why = rbdUnavailable();
  if (why !== null) return why;
  if (!existsSync(CONF)) return `no Ceph cluster (${CONF} missing: start one with ../shared/tools/ceph-single-node.sh)`;
  const r = spawnSync('ceph', ['-c', CONF, '-s', '--connect-timeout', '5'], { timeout: 15_000 });
  return r.status === 0 ? null : `the Ceph cluster at ${CONF} does not answer`;
}
const skip = liveSkip();

/** A channel whose results resolve per-tag promises; counts how many drains carried results. */
class Channel {
  readonly image: NativeRbdImage;
  private readonly waiting = new Map<number, (d: RbdDone) => void>();
  private tag = 0;
  drains = 0;
  constructor(image = IMAGE) {
    this.image = openRbdImage({ conf: CONF, id: 'admin', pool: 'rbd', image, mountTimeoutS: 10, opTimeoutS: 30 }, () => {
      const done = this.image.drain();
      if (done.length > 0) this.drains++;
      for (const d of done) { this.waiting.get(d.tag)?.(d); this.waiting.delete(d.tag); }
    });
  }
  op(send: (tag: number) => void): Promise<RbdDone> {
    const tag = ++this.tag;
    return new Promise((resolve) => { this.waiting.set(tag, resolve); send(tag); });
  }
}

describe.skipIf(skip !== null)(`librbd through the addon${skip !== null ? ` (skipped: ${skip})` : ''}`, () => {
  let ch: Channel;

  beforeAll(async () => {
    const made = rbd(['create', `rbd/${IMAGE}`, '--size', '64M']);
    expect(made.code, made.stderr).toBe(0);
    ch = new Channel();
    expect(await ch.image.connect()).toBe(64 * MiB);
  }, 60_000);

  afterAll(async () => {
    await ch?.image.close();
    rbd(['rm', '--no-progress', `rbd/${IMAGE}`]);
  }, 60_000);

  it('writes from a SharedArrayBuffer view, reads them back, and rbd export finds them', async () => {
    const view = new Uint8Array(new SharedArrayBuffer(2 * MiB), 4096, MiB);
    for (let i = 0; i < view.length; i++) view[i] = (i * 31 + 7) & 0xff;
    expect((await ch.op((t) => ch.image.write(t, 8 * MiB, view))).ret).toBeGreaterThanOrEqual(0);
    expect((await ch.op((t) => ch.image.flush(t))).ret).toBe(0);
    const back = await ch.op((t) => ch.image.read(t, 8 * MiB, MiB));
    expect(back.ret).toBe(MiB);
    expect(Buffer.compare(Buffer.from(back.data!), Buffer.from(view))).toBe(0);
    const exported = rbd(['export', '--no-progress', `rbd/${IMAGE}`, '-']);
    expect(exported.code, exported.stderr).toBe(0);
    expect(Buffer.compare(exported.stdout.subarray(8 * MiB, 9 * MiB), Buffer.from(view))).toBe(0);
  });

  it('write-zeroes zeroes exactly its range; allocated() names the written object and not the untouched ones', async () => {
    expect((await ch.op((t) => ch.image.writeZeroes(t, 8 * MiB, 4096))).ret).toBe(0);
    const r = await ch.op((t) => ch.image.read(t, 8 * MiB, 8192));
    expect(r.data!.subarray(0, 4096).every((b) => b === 0)).toBe(true);
    expect(r.data![4096]).toBe((4096 * 31 + 7) & 0xff);
    const { extents, endBytes } = await ch.image.allocated(0, 64 * MiB, 1024);
    expect(endBytes).toBe(64 * MiB);
    // 4 MiB objects: the write at 8 MiB lives in object 2, [8, 12) MiB; nothing else was written.
    expect(extents).toEqual([8 * MiB, 4 * MiB]);
  });

  it('1000 requests in flight come back, through far fewer drains than requests', async () => {
    const block = new Uint8Array(4096).fill(0x5a);
    const before = ch.drains;
    const all = await Promise.all(Array.from({ length: 1000 }, (_, i) => ch.op((t) => ch.image.write(t, 16 * MiB + (i % 64) * 4096, block))));
    expect(all.every((d) => d.ret >= 0)).toBe(true);
    expect(ch.image.inFlight()).toBe(0);
    expect(ch.drains - before).toBeLessThan(1000);
    expect(ch.drains - before).toBeGreaterThan(0);
  });

  it('refuses bad arguments before librbd sees them; a read past the end fails with EINVAL from librbd', async () => {
    expect(() => ch.image.read(1, -1, 4096)).toThrow(/EINVAL/);
    expect(() => ch.image.read(1, 0, 0)).toThrow(/EINVAL/);
    expect(() => ch.image.read(1, 0.5, 4096)).toThrow(/EINVAL/);
    expect(() => ch.image.write(1, 0, 'text' as unknown as Uint8Array)).toThrow(/EINVAL/);
    const past = await ch.op((t) => ch.image.read(t, 64 * MiB, 4096));
    expect(past).toMatchObject({ ret: -22, code: 'EINVAL' });
  });

  it('a second channel shares the Ceph client; a missing image is ENOENT', async () => {
    const other = new Channel();
    try {
      await other.image.connect();
      expect(other.image.clientAddrs()).toBe(ch.image.clientAddrs());
      const r = await other.op((t) => other.image.read(t, 8 * MiB + 4096, 4096));
      expect(r.data![0]).toBe((4096 * 31 + 7) & 0xff);
    } finally {
      await other.image.close();
    }
    const missing = new Channel('no-such-image');
    await expect(missing.image.connect()).rejects.toThrow(/ENOENT: opening image rbd\/no-such-image failed/);
    await missing.image.close();
  });

  it('a fenced handle refuses every request with ESHUTDOWN, and so does a new channel onto it', async () => {
    expect(rbdFence('rbd', IMAGE)).toBe(1);
    expect(ch.image.fenced()).toBe(true);
    expect(() => ch.image.read(1, 0, 4096)).toThrow(/ESHUTDOWN/);
    const late = new Channel();
    await expect(late.image.connect()).rejects.toThrow(/ESHUTDOWN/);
    await late.image.close();
  });
});

describe('without librbd', () => {
  it('rbdUnavailable() is null exactly when openRbdImage can open a channel, and otherwise names why', () => {
    const why = rbdUnavailable();
    if (why === null) {
      expect(built).toBe(true);
      return;
    }
    expect(why).toMatch(/native addon|librbd/);
    expect(() => openRbdImage({ conf: CONF, id: 'admin', pool: 'rbd', image: 'x', mountTimeoutS: 1, opTimeoutS: 1 }, () => undefined)).toThrow(why);
  });
});
