// The block-device API over one iSCSI LUN: byte offsets in, SCSI commands out. Requests bigger
// than the LUN's transfer limit are split and run concurrently; buffers (SharedArrayBuffer views
// included) are read into and written from directly.

import { hostname } from 'node:os';
import {
  getLbaStatusCdb, parseLbaStatus, readWrite10Cdb, readWrite16Cdb, synchronizeCache10Cdb, synchronizeCache16Cdb, unmapCommand, writeSame16Cdb,
} from './codec/scsi.js';
import type { OperationalParams } from './codec/text.js';
import { probeDevice, runCommand, type DeviceFacts } from './device.js';
import { RemoteError, type RemoteErrorCode } from './errors.js';
import { IscsiSession } from './session.js';

export { RemoteError, type RemoteErrorCode };

export interface IscsiClientOptions {
  readonly host: string;
  /** Default 3260. */
  readonly port?: number;
  readonly targetIqn: string;
  readonly lun: number;
  /** Default 'iqn.2026-11.dev.onestack:initiator-' + hostname. */
  readonly initiatorIqn?: string;
  /** targetUser/targetSecret turn on mutual CHAP. */
  readonly chap?: { readonly user: string; readonly secret: string; readonly targetUser?: string; readonly targetSecret?: string };
  /** What we offer first; default none. */
  readonly digests?: { readonly header?: 'none' | 'crc32c'; readonly data?: 'none' | 'crc32c' };
  /** Per-command deadline, also the login deadline. */
  readonly timeoutMs: number;
  /** One-line events, never secrets. */
  readonly log?: (line: string) => void;
}

export interface BlockDeviceInfo {
  readonly sizeBytes: number;
  /** Logical block length. */
  readonly blockSizeBytes: number;
  /** Largest single SCSI transfer; the client splits bigger requests. */
  readonly maxRequestBytes: number;
  readonly readOnly: boolean;
  readonly canFlush: boolean;
  readonly canFua: boolean;
  readonly canTrim: boolean;
  readonly canWriteZeroes: boolean;
  readonly canMultiConn: boolean;
}

/** A run of the LUN's blocks as GET LBA STATUS reports it; flags as NBD base:allocation (1 hole, 2 reads as zeroes). */
export interface IscsiExtent {
  readonly lengthBytes: number;
  readonly flags: number;
}

export const ISCSI_DEFAULT_PORT = 3260;
/** GET LBA STATUS answer buffer: 8 header bytes and up to 255 descriptors. */
const LBA_STATUS_BYTES = 8 + 255 * 16;
const EXTENT_HOLE = 1;
const EXTENT_ZERO = 2;
const DEFAULT_MAX_REQUEST_BYTES = 8 * 1024 * 1024;
const MAX_REQUEST_BYTES_CAP = 32 * 1024 * 1024;
const TASKS_MAX = 4096;
/** Zero-fill fallback writes share one read-only buffer of this size, a few at a time. */
const ZERO_SCRATCH_BYTES = 1024 * 1024;
const ZERO_WRITES_IN_FLIGHT = 4;
const WRITE_SAME_BYTES_MAX = 64 * 1024 * 1024;
const U32_MAX = 0xffffffff;

export function defaultInitiatorIqn(): string {
  const host = hostname().toLowerCase().replace(/[^a-z0-9.-]/g, '-') || 'host';
  return `iqn.2026-11.dev.onestack:initiator-${host}`;
}

/** Our side of the operational negotiation. */
export function initiatorParams(digests: IscsiClientOptions['digests']): OperationalParams {
  return {
    headerDigest: digests?.header === 'crc32c', dataDigest: digests?.data === 'crc32c', maxRecvDataSegmentLength: 262144,
    targetMaxRecvDataSegmentLength: 8192, initialR2T: false, immediateData: true, firstBurstLength: 262144, maxBurstLength: 16776192,
    maxOutstandingR2T: 1, defaultTime2Wait: 2, defaultTime2Retain: 0, errorRecoveryLevel: 0, dataPDUInOrder: true,
    dataSequenceInOrder: true, maxConnections: 1,
  };
}

export function validateCommon(host: string, port: number, timeoutMs: number): void {
  if (typeof host !== 'string' || host.length === 0) throw new RemoteError('EINVAL', 'iSCSI: host is empty');
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new RemoteError('EINVAL', `iSCSI ${host}: port ${port} is not in 1..65535`);
  if (!(Number.isFinite(timeoutMs) && timeoutMs > 0)) throw new RemoteError('EINVAL', `iSCSI ${host}:${port}: timeoutMs must be a positive number`);
}

export class IscsiClient {
  private use16 = true;
  private sync16 = true;
  private writeSame: boolean;
  /** False once the target refused GET LBA STATUS. */
  private lbaStatus = true;
  private zeroScratch: Uint8Array | null = null;

  private constructor(private readonly session: IscsiSession, readonly info: BlockDeviceInfo, private readonly facts: DeviceFacts, private readonly timeoutMs: number) {
    this.writeSame = info.canWriteZeroes;
  }

  static async connect(opts: IscsiClientOptions): Promise<IscsiClient> {
    const port = opts.port ?? ISCSI_DEFAULT_PORT;
    validateCommon(opts.host, port, opts.timeoutMs);
    if (!Number.isInteger(opts.lun) || opts.lun < 0 || opts.lun > 0x3fff) throw new RemoteError('EINVAL', `iSCSI ${opts.host}:${port}: LUN ${opts.lun} is not in 0..16383`);
    if (typeof opts.targetIqn !== 'string' || opts.targetIqn.length === 0) throw new RemoteError('EINVAL', `iSCSI ${opts.host}:${port}: targetIqn is empty`);
    const session = new IscsiSession({
      host: opts.host, port, targetName: opts.targetIqn, initiatorName: opts.initiatorIqn ?? defaultInitiatorIqn(), lun: opts.lun,
      chap: opts.chap, ours: initiatorParams(opts.digests), timeoutMs: opts.timeoutMs, log: opts.log ?? (() => undefined), tasksMax: TASKS_MAX,
    });
    await session.start();
    try {
      const facts = await probeDevice(session, opts.timeoutMs);
      return new IscsiClient(session, deviceInfo(facts), facts, opts.timeoutMs);
    } catch (err) {
      await session.close();
      throw err;
    }
  }

  get connected(): boolean {
    return this.session.connected;
  }

  /** The negotiated operational parameters of the current login (for diagnostics). */
  get negotiated(): OperationalParams | null {
    return this.session.negotiated;
  }

  async read(offsetBytes: number, into: Uint8Array): Promise<void> {
    this.checkRange('read', offsetBytes, into.length, 'EINVAL');
    await this.split(offsetBytes, into.length, (at, len) => this.transfer(false, offsetBytes + at, into.subarray(at, at + len), false));
  }

  async write(offsetBytes: number, data: Uint8Array, flags?: { fua?: boolean }): Promise<void> {
    this.checkWritable('write');
    this.checkRange('write', offsetBytes, data.length, 'ENOSPC');
    const fuaBit = flags?.fua === true && this.info.canFua;
    await this.split(offsetBytes, data.length, (at, len) => this.transfer(true, offsetBytes + at, data.subarray(at, at + len), fuaBit));
    if (flags?.fua === true && !fuaBit) await this.flush();
  }

  async flush(): Promise<void> {
    if (this.sync16) {
      try {
        await runCommand(this.session, { cdb: synchronizeCache16Cdb(), describe: 'SYNCHRONIZE CACHE(16)' }, true, this.timeoutMs);
        return;
      } catch (err) {
        if (!(err instanceof RemoteError) || err.code !== 'ENOTSUP') throw err;
        this.sync16 = false;
      }
    }
    await runCommand(this.session, { cdb: synchronizeCache10Cdb(), describe: 'SYNCHRONIZE CACHE(10)' }, true, this.timeoutMs);
  }

  /** UNMAP when the LUN supports it (LBPU), else nothing: trim is advisory. */
  async trim(offsetBytes: number, lengthBytes: number, flags?: { fua?: boolean }): Promise<void> {
    this.checkWritable('trim');
    this.checkRange('trim', offsetBytes, lengthBytes, 'ENOSPC');
    if (!this.info.canTrim || lengthBytes === 0) return;
    const bs = this.info.blockSizeBytes;
    const limits = this.facts.blockLimits;
    const perCommand = Math.min(limits !== null && limits.maxUnmapLbaCount > 0 ? limits.maxUnmapLbaCount : U32_MAX, U32_MAX);
    const jobs: Promise<unknown>[] = [];
    for (let lba = offsetBytes / bs, left = lengthBytes / bs; left > 0;) {
      const blocks = Math.min(left, perCommand);
      const { cdb, parameters } = unmapCommand([{ lba, blocks }]);
      jobs.push(runCommand(this.session, { cdb, dataOut: parameters, describe: `UNMAP of ${blocks * bs} bytes at byte ${lba * bs}` }, true, this.timeoutMs));
      lba += blocks;
      left -= blocks;
    }
    await settleAll(jobs);
    if (flags?.fua === true) await this.flush();
  }

  async writeZeroes(offsetBytes: number, lengthBytes: number, flags?: { fua?: boolean; noHole?: boolean }): Promise<void> {
    this.checkWritable('writeZeroes');
    this.checkRange('writeZeroes', offsetBytes, lengthBytes, 'ENOSPC');
    if (lengthBytes === 0) return;
    if (this.writeSame) {
      try {
        await this.writeSameZeroes(offsetBytes, lengthBytes, flags?.noHole !== true);
        if (flags?.fua === true) await this.flush();
        return;
      } catch (err) {
        if (!(err instanceof RemoteError) || (err.code !== 'ENOTSUP' && err.code !== 'EINVAL')) throw err;
        this.writeSame = false; // the target refused the form; zero buffers always work
      }
    }
    await this.zeroFill(offsetBytes, lengthBytes);
    if (flags?.fua === true) await this.flush();
  }

  /** Whether blockStatus() can tell holes apart: the LUN is thin-provisioned (LBPME). */
  get canBlockStatus(): boolean {
    return this.facts.capacity.lbpme && this.lbaStatus;
  }

  /**
   * Provisioning of the blocks from offsetBytes on, by GET LBA STATUS: extents in order starting at
   * offsetBytes, at least one, covering at most lengthBytes (maybe less: callers ask again). A
   * deallocated run is a hole, and reads as zeroes only where the LUN says so (LBPRZ). A LUN that
   * is not thin-provisioned, or refuses the command, reports everything as data.
   */
  async blockStatus(offsetBytes: number, lengthBytes: number): Promise<IscsiExtent[]> {
    this.checkRange('blockStatus', offsetBytes, lengthBytes, 'EINVAL');
    if (lengthBytes === 0) throw new RemoteError('EINVAL', `${this.session.where}: blockStatus: empty range`);
    if (!this.canBlockStatus) return [{ lengthBytes, flags: 0 }];
    const bs = this.info.blockSizeBytes;
    const buf = new Uint8Array(LBA_STATUS_BYTES);
    let r;
    try {
      r = await runCommand(this.session, { cdb: getLbaStatusCdb(offsetBytes / bs, buf.length), dataIn: buf, describe: `GET LBA STATUS at byte ${offsetBytes}` }, false, this.timeoutMs);
    } catch (err) {
      if (!(err instanceof RemoteError) || (err.code !== 'ENOTSUP' && err.code !== 'EINVAL')) throw err;
      this.lbaStatus = false; // the target lacks the command: from now on, everything is data
      return [{ lengthBytes, flags: 0 }];
    }
    const holeFlags = EXTENT_HOLE | (this.facts.capacity.lbprz ? EXTENT_ZERO : 0);
    return lbaRunsToExtents(parseLbaStatus(buf.subarray(0, buf.length - r.residualBytes)), offsetBytes / bs, lengthBytes / bs, bs, holeFlags, this.session.where);
  }

  async close(): Promise<void> {
    await this.session.close();
  }

  // ---- internals ----

  private checkWritable(op: string): void {
    if (this.info.readOnly) throw new RemoteError('EPERM', `${this.session.where}: ${op}: the LUN is write-protected`);
  }

  private checkRange(op: string, offsetBytes: number, lengthBytes: number, pastEnd: RemoteErrorCode): void {
    const bs = this.info.blockSizeBytes;
    if (!Number.isSafeInteger(offsetBytes) || offsetBytes < 0 || !Number.isSafeInteger(lengthBytes) || lengthBytes < 0) {
      throw new RemoteError('EINVAL', `${this.session.where}: ${op}: offset ${offsetBytes} / length ${lengthBytes} are not non-negative integers`);
    }
    if (offsetBytes % bs !== 0 || lengthBytes % bs !== 0) {
      throw new RemoteError('EINVAL', `${this.session.where}: ${op}: offset ${offsetBytes} and length ${lengthBytes} must be multiples of the ${bs}-byte block`);
    }
    if (offsetBytes + lengthBytes > this.info.sizeBytes) {
      throw new RemoteError(pastEnd, `${this.session.where}: ${op}: bytes ${offsetBytes}..${offsetBytes + lengthBytes} are past the end (${this.info.sizeBytes} bytes)`);
    }
  }

  /** Runs `one` over maxRequestBytes pieces concurrently; all settle before the first error is thrown. */
  private async split(offsetBytes: number, lengthBytes: number, one: (at: number, len: number) => Promise<void>): Promise<void> {
    const max = this.info.maxRequestBytes;
    if (lengthBytes <= max) { if (lengthBytes > 0) await one(0, lengthBytes); return; }
    const jobs: Promise<void>[] = [];
    for (let at = 0; at < lengthBytes; at += max) jobs.push(one(at, Math.min(max, lengthBytes - at)));
    await settleAll(jobs);
  }

  private async transfer(write: boolean, offsetBytes: number, buf: Uint8Array, fua: boolean): Promise<void> {
    const bs = this.info.blockSizeBytes;
    const lba = offsetBytes / bs;
    const blocks = buf.length / bs;
    const name = write ? 'WRITE' : 'READ';
    const io = write ? { dataOut: buf } : { dataIn: buf };
    if (this.use16) {
      try {
        const r = await runCommand(this.session, { cdb: readWrite16Cdb(write, lba, blocks, fua), ...io, describe: `${name}(16) of ${buf.length} bytes at byte ${offsetBytes}` }, write, this.timeoutMs);
        return this.checkShort(name, r.residualBytes, buf.length, offsetBytes);
      } catch (err) {
        if (!(err instanceof RemoteError) || err.code !== 'ENOTSUP') throw err;
        this.use16 = false; // an old target: the 10-byte forms reach 2 TiB at 512-byte blocks
      }
    }
    if (lba > U32_MAX || blocks > 0xffff) throw new RemoteError('ENOTSUP', `${this.session.where}: ${name}(16) unsupported and the request does not fit ${name}(10)`);
    const r = await runCommand(this.session, { cdb: readWrite10Cdb(write, lba, blocks, fua), ...io, describe: `${name}(10) of ${buf.length} bytes at byte ${offsetBytes}` }, write, this.timeoutMs);
    this.checkShort(name, r.residualBytes, buf.length, offsetBytes);
  }

  private checkShort(name: string, residualBytes: number, lengthBytes: number, offsetBytes: number): void {
    if (residualBytes > 0) throw new RemoteError('EIO', `${this.session.where}: ${name} at byte ${offsetBytes}: target moved ${lengthBytes - residualBytes} of ${lengthBytes} bytes`);
  }

  private async writeSameZeroes(offsetBytes: number, lengthBytes: number, mayUnmap: boolean): Promise<void> {
    const bs = this.info.blockSizeBytes;
    const lbp = this.facts.provisioning;
    // Unmapped blocks read as zeroes only with LBPRZ; otherwise write the zeroes for real.
    const unmap = mayUnmap && lbp !== null && lbp.lbpws && lbp.lbprz && this.facts.capacity.lbpme;
    const limit = this.facts.blockLimits?.maxWriteSameLengthBlocks ?? 0;
    const perCommand = Math.min(limit > 0 ? limit : Infinity, WRITE_SAME_BYTES_MAX / bs, U32_MAX);
    const block = new Uint8Array(bs);
    const jobs: Promise<unknown>[] = [];
    for (let lba = offsetBytes / bs, left = lengthBytes / bs; left > 0;) {
      const blocks = Math.min(left, perCommand);
      jobs.push(runCommand(this.session, { cdb: writeSame16Cdb(lba, blocks, unmap), dataOut: block, describe: `WRITE SAME(16) of ${blocks * bs} bytes at byte ${lba * bs}` }, true, this.timeoutMs));
      lba += blocks;
      left -= blocks;
    }
    await settleAll(jobs);
  }

  private async zeroFill(offsetBytes: number, lengthBytes: number): Promise<void> {
    const piece = Math.min(ZERO_SCRATCH_BYTES, this.info.maxRequestBytes);
    this.zeroScratch ??= new Uint8Array(piece);
    const zeros = this.zeroScratch;
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < lengthBytes) {
        const at = next;
        const len = Math.min(piece, lengthBytes - at);
        next += len;
        await this.transfer(true, offsetBytes + at, zeros.subarray(0, len), false);
      }
    };
    await settleAll(Array.from({ length: ZERO_WRITES_IN_FLIGHT }, worker));
  }
}

/**
 * GET LBA STATUS runs -> extents of [firstLba, +blocks): contiguous from firstLba (a gap or a run
 * that starts elsewhere ends the answer), clipped to the range, merged when their flags agree.
 */
export function lbaRunsToExtents(
  runs: readonly { lba: number; blocks: number; provisioning: number }[], firstLba: number, blocks: number, bs: number, holeFlags: number, where: string,
): IscsiExtent[] {
  const out: { lengthBytes: number; flags: number }[] = [];
  const endLba = firstLba + blocks;
  let at = firstLba;
  for (const run of runs) {
    if (at >= endLba) break;
    // The first run must contain firstLba; later ones must follow on (SBC-3: descriptors are contiguous).
    if (run.blocks === 0 || run.lba > at || run.lba + run.blocks <= at) break;
    const n = Math.min(run.lba + run.blocks, endLba) - at;
    const flags = run.provisioning === 0 ? 0 : holeFlags;
    const last = out[out.length - 1];
    if (last !== undefined && last.flags === flags) last.lengthBytes += n * bs;
    else out.push({ lengthBytes: n * bs, flags });
    at += n;
  }
  if (out.length === 0) throw new RemoteError('EPROTO', `${where}: GET LBA STATUS did not describe LBA ${firstLba}`);
  return out;
}

function deviceInfo(f: DeviceFacts): BlockDeviceInfo {
  const bs = f.capacity.blockSizeBytes;
  const vpdMax = f.blockLimits !== null && f.blockLimits.maxTransferLengthBlocks > 0 ? f.blockLimits.maxTransferLengthBlocks * bs : 0;
  const maxRequest = vpdMax > 0 ? Math.min(vpdMax, MAX_REQUEST_BYTES_CAP) : DEFAULT_MAX_REQUEST_BYTES;
  const lbp = f.provisioning;
  return {
    sizeBytes: (f.capacity.lastLba + 1) * bs, blockSizeBytes: bs, maxRequestBytes: Math.max(bs, maxRequest - (maxRequest % bs)),
    readOnly: f.writeProtected, canFlush: true, canFua: f.dpoFua, canTrim: lbp !== null && lbp.lbpu && f.capacity.lbpme,
    canWriteZeroes: !f.writeProtected && (lbp?.lbpws === true || (f.blockLimits?.maxWriteSameLengthBlocks ?? 0) > 0),
    canMultiConn: false,
  };
}

/** Waits for every job, then throws the first failure (so no job still writes a buffer we returned). */
async function settleAll(jobs: Promise<unknown>[]): Promise<void> {
  const results = await Promise.allSettled(jobs);
  for (const r of results) if (r.status === 'rejected') throw r.reason;
}
