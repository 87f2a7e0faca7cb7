// An rbd:// element reached through librbd in this process (@onestack/native openRbdImage): the
// same RemoteDevice face as our NBD and iSCSI clients, so remote-link.ts and the control plane
// use it unchanged. Requests go to librbd without waiting; results come back in batches on this
// thread. Each request has the element's deadline (timeoutMs): past it, the request fails with
// EIO and is abandoned (librbd finishes it later into its own buffer, which the engine no longer
// looks at), so a down OSD turns into a stale leg, as a dead NBD server does.
import { openRbdImage, type NativeRbdImage, type RbdDone } from '@onestack/native';
import { DataPathError, type DataPathErrno } from '../datapath/errno.js';
import type { RemoteDevice, RemoteDeviceInfo } from './connect.js';
import type { RbdTarget } from '../config/types.js';
import type { RbdRemoteSpec } from './spec.js';

/** librados' own bounds, from the element's deadline: connects and requests end in errors, never hang. */
const MOUNT_TIMEOUT_S = 15;
const OP_TIMEOUT_S_MIN = 30;
/** Largest request the engine sends in one piece (librbd takes more; this bounds our copies). */
const REQUEST_BYTES_MAX = 32 << 20;
/** Extents per block-status answer: the caller asks again from where it ends. */
const EXTENTS_MAX = 4096;
/** NBD block status flags: a hole that reads as zeroes. */
const HOLE_ZERO = 3;
/** Tags wrap well before 2^32; a tag is live for one request only. */
const TAG_MAX = 0x7fff_ffff;

interface Pending {
  readonly into: Uint8Array | null;
  readonly resolve: () => void;
  readonly reject: (err: DataPathError) => void;
  readonly timer: ReturnType<typeof setTimeout>;
}

/** librbd's errno names onto what the data path carries (a blocklisted client reads ESHUTDOWN). */
function errnoOf(code: string | null | undefined): DataPathErrno {
  switch (code) {
    case 'ENOSPC': case 'EDQUOT': return 'ENOSPC';
    case 'EPERM': case 'EACCES': case 'EROFS': return 'EPERM';
    case 'EINVAL': return 'EINVAL';
    case 'ENOMEM': return 'ENOMEM';
    case 'ESHUTDOWN': return 'ESHUTDOWN';
    case 'EOPNOTSUPP': return 'ENOTSUP';
    default: return 'EIO';
  }
}

/** What a thread needs to open the image on the librbd path (the keyring is a path; librbd reads it). */
export function rbdRemoteSpec(t: RbdTarget, where: string, timeoutMs: number): RbdRemoteSpec {
  return { kind: 'rbd', where, pool: t.pool, image: t.image, conf: t.conf, id: t.id, timeoutMs, ...(t.keyring !== undefined ? { keyring: t.keyring } : {}) };
}

export function rbdOpTimeoutS(timeoutMs: number): number {
  return Math.max(OP_TIMEOUT_S_MIN, Math.ceil((2 * timeoutMs) / 1000));
}

export class RbdDevice implements RemoteDevice {
  readonly info: RemoteDeviceInfo;
  private readonly pending = new Map<number, Pending>();
  private nextTag = 1;
  private closed = false;

  private constructor(
    private readonly image: NativeRbdImage,
    private readonly spec: RbdRemoteSpec,
    sizeBytes: number,
  ) {
    this.info = {
      sizeBytes, blockSizeBytes: 1, maxRequestBytes: REQUEST_BYTES_MAX, readOnly: false,
      canFlush: true, canFua: true, canTrim: true, canWriteZeroes: true, canMultiConn: true,
    };
  }

  /** Opens a channel onto this process's handle of the image (connecting it if none is live). */
  static async connect(spec: RbdRemoteSpec): Promise<RbdDevice> {
    let device: RbdDevice | null = null;
    const image = openRbdImage({
      conf: spec.conf, id: spec.id, pool: spec.pool, image: spec.image, ...(spec.keyring !== undefined ? { keyring: spec.keyring } : {}),
      mountTimeoutS: MOUNT_TIMEOUT_S, opTimeoutS: rbdOpTimeoutS(spec.timeoutMs),
    }, () => device?.drain());
    let sizeBytes: number;
    try {
      sizeBytes = await image.connect();
    } catch (err) {
      await image.close().catch(() => undefined);
      throw new DataPathError('EIO', `${spec.where}: librbd: ${(err as Error).message}`);
    }
    device = new RbdDevice(image, spec, sizeBytes);
    return device;
  }

  /** Not fenced and not closed: librbd reconnects to the cluster by itself. */
  get connected(): boolean {
    return !this.closed && !this.image.fenced();
  }

  /** Requests with librbd on every channel of this image in the process (status). */
  get imageInFlight(): number {
    return this.image.imageInFlight();
  }

  clientAddrs(): string {
    return this.image.clientAddrs();
  }

  read(offsetBytes: number, into: Uint8Array): Promise<void> {
    return this.submit(into, (tag) => this.image.read(tag, offsetBytes, into.byteLength));
  }

  /** FUA needs nothing more: the client cache is off (rbd_cache=false), so an acknowledged write is on the OSDs. */
  write(offsetBytes: number, data: Uint8Array): Promise<void> {
    return this.submit(null, (tag) => this.image.write(tag, offsetBytes, data));
  }

  flush(): Promise<void> {
    return this.submit(null, (tag) => this.image.flush(tag));
  }

  /** A trim must read back as zeroes on a mirror leg (remote-link.ts), so it is a zero write. */
  trim(offsetBytes: number, lengthBytes: number): Promise<void> {
    return this.writeZeroes(offsetBytes, lengthBytes);
  }

  writeZeroes(offsetBytes: number, lengthBytes: number): Promise<void> {
    const pieces: Promise<void>[] = [];
    for (let done = 0; done < lengthBytes; done += REQUEST_BYTES_MAX) {
      const len = Math.min(REQUEST_BYTES_MAX, lengthBytes - done);
      pieces.push(this.submit(null, (tag) => this.image.writeZeroes(tag, offsetBytes + done, len)));
    }
    return Promise.all(pieces).then(() => undefined);
  }

  /**
   * Block status as the allocation probe wants it (flags 1 hole, 2 reads as zeroes): librbd's
   * allocated objects are data, the rest holes. Whole objects, so data may be over-reported,
   * never a hole.
   */
  async blockStatus(offsetBytes: number, lengthBytes: number): Promise<{ lengthBytes: number; flags: number }[]> {
    const { extents, endBytes } = await this.image.allocated(offsetBytes, lengthBytes, EXTENTS_MAX);
    const out: { lengthBytes: number; flags: number }[] = [];
    let pos = offsetBytes;
    for (let i = 0; i + 1 < extents.length; i += 2) {
      const at = extents[i]!;
      const len = extents[i + 1]!;
      if (at > pos) out.push({ lengthBytes: at - pos, flags: HOLE_ZERO });
      out.push({ lengthBytes: len, flags: 0 });
      pos = at + len;
    }
    if (endBytes > pos) out.push({ lengthBytes: endBytes - pos, flags: HOLE_ZERO });
    if (out.length === 0) throw new DataPathError('EIO', `${this.spec.where}: librbd reported nothing for ${lengthBytes} bytes at ${offsetBytes}`);
    return out;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const [tag, p] of this.pending) this.settle(tag, p, new DataPathError('ESHUTDOWN', `${this.spec.where}: closed`));
    await this.image.close();
  }

  private submit(into: Uint8Array | null, send: (tag: number) => void): Promise<void> {
    if (this.closed) return Promise.reject(new DataPathError('ESHUTDOWN', `${this.spec.where}: closed`));
    const tag = this.nextTag;
    this.nextTag = tag >= TAG_MAX ? 1 : tag + 1;
    return new Promise<void>((resolve, reject) => {
      try {
        send(tag);
      } catch (err) {
        const e = err as Error & { code?: string };
        reject(new DataPathError(errnoOf(e.code), `${this.spec.where}: librbd: ${e.message}`));
        return;
      }
      // The deadline gives up on the request, not on librbd's work: see the file comment.
      const timer = setTimeout(() => {
        const p = this.pending.get(tag);
        if (p !== undefined) this.settle(tag, p, new DataPathError('EIO', `${this.spec.where}: no answer from librbd in ${this.spec.timeoutMs} ms`));
      }, this.spec.timeoutMs);
      this.pending.set(tag, { into, resolve, reject, timer });
    });
  }

  private settle(tag: number, p: Pending, err: DataPathError | null): void {
    this.pending.delete(tag);
    clearTimeout(p.timer);
    if (err === null) p.resolve();
    else p.reject(err);
  }

  /** Every result waiting; results of abandoned requests (no longer pending) are dropped. */
  private drain(): void {
    let done: RbdDone[];
    try {
      done = this.image.drain();
    } catch {
      return; // closed meanwhile
    }
    for (const d of done) {
      const p = this.pending.get(d.tag);
      if (p === undefined) continue;
      if (d.ret < 0) {
        this.settle(d.tag, p, new DataPathError(errnoOf(d.code), `${this.spec.where}: librbd: ${d.code ?? `error ${-d.ret}`}`));
        continue;
      }
      if (p.into !== null && d.data !== null && d.data !== undefined) p.into.set(d.data.subarray(0, p.into.byteLength));
      this.settle(d.tag, p, null);
    }
  }
}
