// Running SCSI commands with the retry rules (UNIT ATTENTION once, BUSY/TASK SET FULL with
// back-off inside the deadline) and learning what the LUN is: INQUIRY, VPD pages, capacity,
// mode sense. Failures become one-line RemoteErrors naming the portal, target and LUN.

import {
  inquiryCdb, modeSense6Cdb, parseBlockLimitsVpd, parseLogicalBlockProvisioningVpd, parseModeSense6Header, parseReadCapacity10,
  parseReadCapacity16, parseStandardInquiry, parseSupportedVpdPages, readCapacity10Cdb, readCapacity16Cdb, testUnitReadyCdb,
  type BlockLimits, type Capacity, type LogicalBlockProvisioning,
} from './codec/scsi.js';
import { classifyStatus } from './codec/sense.js';
import { IscsiProtocolError, RemoteError } from './errors.js';
import type { IscsiSession } from './session.js';
import type { ScsiRequest, ScsiResult } from './tasks.js';

const BUSY_RETRIES_MAX = 8;
const UNIT_ATTENTIONS_MAX = 1;
/** TEST UNIT READY at connect absorbs the unit attentions a fresh I_T nexus collects. */
const READY_ATTEMPTS_MAX = 6;
const VPD_SUPPORTED = 0x00;
const VPD_BLOCK_LIMITS = 0xb0;
const VPD_LOGICAL_BLOCK_PROVISIONING = 0xb2;

/** Runs one command; resolves only on success (GOOD, or sense that says "recovered"). */
export async function runCommand(session: IscsiSession, request: ScsiRequest, write: boolean, timeoutMs: number): Promise<ScsiResult> {
  const startedAt = Date.now();
  let unitAttentions = 0;
  let busy = 0;
  for (;;) {
    const r = await session.execute(request);
    const failure = classifyStatus(r.status, r.sense, write);
    if (failure === null) return r;
    const inTime = Date.now() - startedAt < timeoutMs;
    if (failure.retry === 'once' && unitAttentions < UNIT_ATTENTIONS_MAX && inTime) { unitAttentions++; continue; }
    if (failure.retry === 'busy' && busy < BUSY_RETRIES_MAX && inTime) { await sleep(5 * 2 ** busy++); continue; }
    throw new RemoteError(failure.code, `${session.where}: ${request.describe}: ${failure.text}`);
  }
}

/** Data actually returned by a read-type command (allocation length minus residual). */
function returned(buf: Uint8Array, r: ScsiResult): Uint8Array {
  return buf.subarray(0, Math.max(0, buf.length - r.residualBytes));
}

export interface DeviceFacts {
  readonly capacity: Capacity;
  readonly blockLimits: BlockLimits | null;
  readonly provisioning: LogicalBlockProvisioning | null;
  readonly writeProtected: boolean;
  readonly dpoFua: boolean;
  readonly vendor: string;
  readonly product: string;
}

export async function waitReady(session: IscsiSession, timeoutMs: number): Promise<void> {
  for (let i = 1; ; i++) {
    const r = await session.execute({ cdb: testUnitReadyCdb(), describe: 'TEST UNIT READY' });
    const failure = classifyStatus(r.status, r.sense, false);
    if (failure === null) return;
    if (failure.retry === 'no' || i >= READY_ATTEMPTS_MAX) throw new RemoteError(failure.code, `${session.where}: TEST UNIT READY: ${failure.text}`);
    if (failure.retry === 'busy') await sleep(Math.min(20 * i, timeoutMs / READY_ATTEMPTS_MAX));
  }
}

export async function probeDevice(session: IscsiSession, timeoutMs: number): Promise<DeviceFacts> {
  await waitReady(session, timeoutMs);
  const run = (request: ScsiRequest): Promise<ScsiResult> => runCommand(session, request, false, timeoutMs);
  try {
    const stdBuf = new Uint8Array(96);
    const std = parseStandardInquiry(returned(stdBuf, await run({ cdb: inquiryCdb(stdBuf.length), dataIn: stdBuf, describe: 'INQUIRY' })));
    if (std.peripheralQualifier !== 0) throw new RemoteError('ENOENT', `${session.where}: no logical unit here (peripheral qualifier ${std.peripheralQualifier})`);
    if (std.deviceType !== 0) throw new RemoteError('ENOTSUP', `${session.where}: not a disk (peripheral device type 0x${std.deviceType.toString(16)})`);
    const pages = await optional(async () => {
      const b = new Uint8Array(255);
      return parseSupportedVpdPages(returned(b, await run({ cdb: inquiryCdb(b.length, VPD_SUPPORTED), dataIn: b, describe: 'INQUIRY VPD 0x00' })));
    }) ?? [];
    const vpd = async (page: number): Promise<Uint8Array | null> => {
      if (!pages.includes(page)) return null;
      const b = new Uint8Array(255);
      return optional(async () => returned(b, await run({ cdb: inquiryCdb(b.length, page), dataIn: b, describe: `INQUIRY VPD 0x${page.toString(16)}` })));
    };
    const limitsPage = await vpd(VPD_BLOCK_LIMITS);
    const lbpPage = await vpd(VPD_LOGICAL_BLOCK_PROVISIONING);
    const capacity = await readCapacity(session, run);
    const mode = await optional(async () => {
      const b = new Uint8Array(192);
      return parseModeSense6Header(returned(b, await run({ cdb: modeSense6Cdb(b.length), dataIn: b, describe: 'MODE SENSE(6)' })));
    });
    return {
      capacity, blockLimits: limitsPage === null ? null : parseBlockLimitsVpd(limitsPage),
      provisioning: lbpPage === null ? null : parseLogicalBlockProvisioningVpd(lbpPage),
      writeProtected: mode?.writeProtected ?? false, dpoFua: mode?.dpoFua ?? false, vendor: std.vendor, product: std.product,
    };
  } catch (err) {
    if (err instanceof IscsiProtocolError) throw new RemoteError('EPROTO', `${session.where}: ${err.message}`);
    throw err;
  }
}

async function readCapacity(session: IscsiSession, run: (r: ScsiRequest) => Promise<ScsiResult>): Promise<Capacity> {
  const b16 = new Uint8Array(32);
  let cap: Capacity;
  try {
    cap = parseReadCapacity16(returned(b16, await run({ cdb: readCapacity16Cdb(), dataIn: b16, describe: 'READ CAPACITY(16)' })));
  } catch (err) {
    if (!(err instanceof RemoteError) || (err.code !== 'ENOTSUP' && err.code !== 'EINVAL')) throw err;
    const b10 = new Uint8Array(8);
    cap = parseReadCapacity10(returned(b10, await run({ cdb: readCapacity10Cdb(), dataIn: b10, describe: 'READ CAPACITY(10)' })));
    if (cap.lastLba === 0xffffffff) throw new RemoteError('EOVERFLOW', `${session.where}: LUN too large for READ CAPACITY(10) and READ CAPACITY(16) is unsupported`);
  }
  if (cap.blockSizeBytes < 512 || cap.blockSizeBytes > 1024 * 1024 || (cap.blockSizeBytes & (cap.blockSizeBytes - 1)) !== 0) {
    throw new RemoteError('EPROTO', `${session.where}: logical block length ${cap.blockSizeBytes} is not a power of two in 512..1 MiB`);
  }
  if ((cap.lastLba + 1) * cap.blockSizeBytes > Number.MAX_SAFE_INTEGER) throw new RemoteError('EOVERFLOW', `${session.where}: LUN size exceeds 2^53 bytes`);
  return cap;
}

/** Optional facts: a target that lacks the command (or returns junk) gets the default. */
async function optional<T>(f: () => Promise<T>): Promise<T | null> {
  try {
    return await f();
  } catch (err) {
    if (err instanceof IscsiProtocolError) return null;
    if (err instanceof RemoteError && (err.code === 'ENOTSUP' || err.code === 'EINVAL')) return null;
    throw err;
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
