// Allocation of a remote element: a control-plane connection of its own (never one of the data
// path's), opened on first use — NBD with base:allocation selected, iSCSI a session asking GET
// LBA STATUS (remote/connect.ts connectStatusProbe). It must never get in the data path's way:
// it is held between queries only when the server advertises CAN_MULTI_CONN (else closed after
// each query, as a server may take one client at a time), closed after a quiet spell, on
// topology change and on engine close, and a server that does not accept it promptly (qemu-nbd
// without --shared keeps it waiting while the data path is connected) is not asked again. Every
// wait is bounded by the element's timeoutMs (at most PROBE_TIMEOUT_MAX_MS); a remote that
// cannot tell holes, a failed connect or a failed query answer "data", and a failure is not
// retried for PROBE_RETRY_MS, so a dead server costs one timeout, not one per query.
import { AllocationFlag } from '@onestack/nbd';
import { connectStatusProbe, type StatusProbeClient } from '../remote/connect.js';
import type { RemoteSpec } from '../remote/spec.js';
import { allData } from './probe-local.js';
import type { AllocRun, ElementRuns } from './map-allocation.js';

/** A held probe connection idle this long is closed. */
export const PROBE_IDLE_MS = 5_000;
/** After a failed connect or query, answer "data" this long before trying again. */
export const PROBE_RETRY_MS = 30_000;
/** The probe's own deadline (connect plus handshake, each query): the element's timeoutMs, at most this. */
export const PROBE_TIMEOUT_MAX_MS = 5_000;
/** blockStatus calls per runs() at most (each may cover less than asked). */
const QUERIES_MAX = 64;

export class RemoteProbe {
  private client: Promise<StatusProbeClient | null> | null = null;
  private retryAtMs = 0;
  private idle: NodeJS.Timeout | null = null;
  private busy = 0;
  private closed = false;
  /** Why this element is not asked any more (kept while the element is the same registry entry). */
  private givenUp: string | null = null;
  private readonly spec: RemoteSpec | undefined;

  constructor(
    spec: RemoteSpec | undefined,
    private readonly warn: (msg: string) => void,
  ) {
    this.spec = spec === undefined ? undefined : { ...spec, timeoutMs: Math.min(spec.timeoutMs, PROBE_TIMEOUT_MAX_MS) };
  }

  async runs(startBytes: number, lengthBytes: number, runsMax: number): Promise<ElementRuns> {
    const spec = this.spec;
    if (spec === undefined || this.givenUp !== null || this.closed || Date.now() < this.retryAtMs) return allData(startBytes, lengthBytes);
    this.busy++;
    this.stopIdle();
    let hold = false;
    try {
      const client = await this.connected();
      if (client === null) return allData(startBytes, lengthBytes);
      hold = client.info.canMultiConn;
      return await withDeadline(query(client, startBytes, lengthBytes, runsMax), spec.timeoutMs, `block status of ${spec.where}`);
    } catch (err) {
      this.warn(`block status failed (${(err as Error).message}): answering data; retrying in ${PROBE_RETRY_MS / 1000} s`);
      this.retryAtMs = Date.now() + PROBE_RETRY_MS;
      hold = false;
      return allData(startBytes, lengthBytes);
    } finally {
      this.busy--;
      this.startIdle(hold ? PROBE_IDLE_MS : 0);
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    this.stopIdle();
    await this.drop();
  }

  private connected(): Promise<StatusProbeClient | null> {
    this.client ??= this.open();
    return this.client;
  }

  private async open(): Promise<StatusProbeClient | null> {
    const spec = this.spec;
    if (spec === undefined) return null;
    let client: StatusProbeClient;
    try {
      client = await connectStatusProbe(spec);
    } catch (err) {
      this.client = null;
      if ((err as { code?: unknown }).code === 'ETIMEDOUT') {
        this.giveUp(`the server did not take a block-status connection within ${spec.timeoutMs} ms (it may serve one client at a time, like qemu-nbd without --shared)`);
      } else {
        this.warn(`no block-status connection (${(err as Error).message}): answering data; retrying in ${PROBE_RETRY_MS / 1000} s`);
        this.retryAtMs = Date.now() + PROBE_RETRY_MS;
      }
      return null;
    }
    if (this.closed || client.unsupported !== null) {
      if (!this.closed && client.unsupported !== null) this.giveUp(client.unsupported);
      this.client = null;
      await client.close().catch(() => undefined);
      return null;
    }
    return client;
  }

  private giveUp(reason: string): void {
    this.givenUp = reason;
    this.warn(`${reason}: answering data for this element`);
  }

  private async drop(): Promise<void> {
    const pending = this.client;
    this.client = null;
    const client = await pending?.catch(() => null);
    await client?.close().catch(() => undefined);
  }

  private startIdle(delayMs: number): void {
    if (this.busy > 0 || this.client === null) return;
    if (this.closed || delayMs === 0) {
      void this.drop();
      return;
    }
    this.idle = setTimeout(() => {
      this.idle = null;
      if (this.busy === 0) void this.drop();
    }, delayMs).unref();
  }

  private stopIdle(): void {
    if (this.idle !== null) clearTimeout(this.idle);
    this.idle = null;
  }
}

/** Asks until [startBytes, +lengthBytes) is covered, runsMax runs are known or QUERIES_MAX calls were made. */
async function query(client: StatusProbeClient, startBytes: number, lengthBytes: number, runsMax: number): Promise<ElementRuns> {
  const runs: AllocRun[] = [];
  const deviceEnd = client.info.sizeBytes;
  const end = startBytes + lengthBytes;
  // The server wants its minimum block size: ask an aligned range, then cut the runs to ours.
  const block = Math.max(1, client.info.blockSizeBytes);
  let at = Math.floor(startBytes / block) * block;
  const askEnd = Math.min(deviceEnd, Math.ceil(end / block) * block);
  for (let calls = 0; at < askEnd && runs.length < runsMax && calls < QUERIES_MAX; calls++) {
    const extents = await client.blockStatus(at, askEnd - at);
    if (extents.length === 0) throw new Error('the server answered no extent');
    for (const x of extents) {
      if (!(Number.isSafeInteger(x.lengthBytes) && x.lengthBytes > 0) || at + x.lengthBytes > askEnd) throw new Error(`the server answered an extent of ${x.lengthBytes} bytes at ${at}`);
      const a = Math.max(at, startBytes);
      const b = Math.min(at + x.lengthBytes, end);
      // Only "reads as zeroes" makes a hole for us: an unallocated range of a backing chain may not.
      if (b > a) runs.push({ lengthBytes: b - a, zero: (x.flags & AllocationFlag.ZERO) !== 0 });
      at += x.lengthBytes;
    }
  }
  // Past the device's end (a shrunk remote) is not a hole: data, like any read that fails.
  if (at >= deviceEnd && deviceEnd < end) runs.push({ lengthBytes: end - Math.max(deviceEnd, startBytes), zero: false });
  return { startBytes, runs };
}

function withDeadline<T>(work: Promise<T>, timeoutMs: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no answer within ${timeoutMs} ms`)), timeoutMs);
  });
  return Promise.race([work, deadline]).finally(() => clearTimeout(timer));
}
