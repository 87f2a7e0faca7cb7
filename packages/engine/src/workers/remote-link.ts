// One remote element as seen by one remote loop: a lazily opened protocol client, shared by all
// requests, with back-off after a failed connect so a dead remote fails requests fast instead of
// making each one wait out its own connect. (The clients reconnect by themselves once connected.)
// With a cache tier (cache-tier.ts) reads may be answered locally and writes go through it.
import { DescFlags, Op } from '@onestack/queue';
import { DataPathError } from '../datapath/errno.js';
import { connectRemote, remoteError, type LogLine, type RemoteDevice } from '../remote/connect.js';
import type { RemoteSpec } from '../remote/spec.js';
import { CacheTier, type CacheTierSpec } from './cache-tier.js';

const RETRY_MIN_MS = 100;
const RETRY_MAX_MS = 5000;

export interface RemoteSub {
  readonly op: number;
  readonly flags: number;
  readonly offsetBytes: number;
  readonly lengthBytes: number;
  /** READ/WRITE data (a view over the slab); null for the other ops. */
  readonly view: Uint8Array | null;
  /** Maintenance I/O (scrub, resync, rebuild): its reads must see the remote, never the tier. */
  readonly maintenance?: boolean;
}

/** An element's cache tier as the link needs it: the spec, and where the element's data starts. */
export interface LinkTier {
  readonly spec: CacheTierSpec;
  readonly fromBytes: number;
}

function tierKey(tier: LinkTier | undefined): string {
  return tier === undefined ? '' : `${tier.spec.path}|${tier.spec.sizeBytes}|${tier.spec.blockBytes}|${tier.fromBytes}`;
}

export class RemoteLink {
  private device: RemoteDevice | null = null;
  private connecting: Promise<RemoteDevice> | null = null;
  private lastError: DataPathError | null = null;
  private retryAtMs = 0;
  private retryDelayMs = RETRY_MIN_MS;
  private closed = false;
  private tier: CacheTier | null;
  private readonly tierKey: string;

  constructor(
    readonly spec: RemoteSpec,
    private readonly log: LogLine,
    tier?: LinkTier,
  ) {
    this.tierKey = tierKey(tier);
    this.tier = tier === undefined ? null : new CacheTier(tier.spec, tier.fromBytes, (line) => log(`${spec.where}: ${line}`));
  }

  /** Same remote, same options, same tier: the link (and what its tier holds) can be kept across topology changes. */
  sameAs(spec: RemoteSpec, tier?: LinkTier): boolean {
    return JSON.stringify(spec) === JSON.stringify(this.spec) && tierKey(tier) === this.tierKey;
  }

  /** A kept link reports its tier's counters where the latest topology says. */
  adopt(tier: LinkTier | undefined): this {
    if (tier !== undefined) this.tier?.useCounters(tier.spec.counters);
    return this;
  }

  private open(): Promise<RemoteDevice> {
    if (this.device !== null) return Promise.resolve(this.device);
    if (this.closed) return Promise.reject(new DataPathError('ESHUTDOWN', `${this.spec.where}: closed`));
    if (this.connecting !== null) return this.connecting;
    if (this.lastError !== null && Date.now() < this.retryAtMs) return Promise.reject(this.lastError);
    this.connecting = connectRemote(this.spec, this.log).then(
      (dev) => {
        this.connecting = null;
        this.lastError = null;
        this.retryDelayMs = RETRY_MIN_MS;
        if (this.closed) {
          void dev.close().catch(() => undefined);
          throw new DataPathError('ESHUTDOWN', `${this.spec.where}: closed`);
        }
        this.device = dev;
        return dev;
      },
      (err: unknown) => {
        this.connecting = null;
        this.lastError = remoteError(err, this.spec.where);
        this.retryAtMs = Date.now() + this.retryDelayMs;
        this.retryDelayMs = Math.min(RETRY_MAX_MS, this.retryDelayMs * 2);
        this.log(`connect failed (${this.lastError.message}); next attempt in ${this.retryAtMs - Date.now()} ms or later`);
        throw this.lastError;
      },
    );
    return this.connecting;
  }

  /** Runs one sub on the remote; rejects with a DataPathError. */
  async run(r: RemoteSub): Promise<void> {
    const dev = await this.open();
    const fua = (r.flags & DescFlags.FUA) !== 0;
    const off = r.offsetBytes;
    try {
      switch (r.op) {
        case Op.READ:
          return await this.read(dev, off, r.view!, r.maintenance === true);
        case Op.WRITE:
          return await this.writeThrough(off, r.lengthBytes, r.view!, () => dev.write(off, r.view!, { fua }));
        case Op.FLUSH:
          return await dev.flush(); // the tier is volatile and holds nothing the remote lacks
        case Op.TRIM:
          // As on local legs (element-io.ts): a trim must leave mirror legs reading the same, so
          // it zeroes; a remote without WRITE_ZEROES gets zero buffers from the client.
          return await this.writeThrough(off, r.lengthBytes, null, () => dev.writeZeroes(off, r.lengthBytes, { fua }));
        case Op.WRITE_ZEROES:
          return await this.writeThrough(off, r.lengthBytes, null, () => dev.writeZeroes(off, r.lengthBytes, { fua, noHole: (r.flags & DescFlags.NO_HOLE) !== 0 }));
        case Op.CACHE:
          return; // nothing to warm on the far side
        default:
          throw new DataPathError('EINVAL', `unknown op ${r.op}`);
      }
    } catch (err) {
      throw err instanceof DataPathError ? err : remoteError(err, this.spec.where);
    }
  }

  /**
   * From the tier when it holds every block and the remote is connected (a tier is not a replica:
   * a dead remote fails reads as it would without one); else from the remote, then filled in.
   */
  private async read(dev: RemoteDevice, off: number, view: Uint8Array, maintenance: boolean): Promise<void> {
    const tier = this.tier;
    if (tier === null || maintenance) return dev.read(off, view);
    if (tier.read(off, view, dev.connected)) return;
    const ticket = tier.beginRead();
    await dev.read(off, view);
    tier.fill(ticket, off, view);
  }

  /** Write-through: the tier drops the range before the remote write is sent and takes `data` only once it succeeded. */
  private async writeThrough(off: number, len: number, data: Uint8Array | null, send: () => Promise<void>): Promise<void> {
    const tier = this.tier;
    if (tier === null) return send();
    const stamp = tier.beginWrite(off, len);
    let ok = false;
    try {
      await send();
      ok = true;
    } finally {
      tier.endWrite(stamp, off, len, ok ? data : null);
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    // Synchronously, before the first await: a new link may reopen (truncate) the same file next.
    this.tier?.close();
    this.tier = null;
    const dev = this.device ?? (await this.connecting?.catch(() => null)) ?? null;
    this.device = null;
    if (dev !== null) await dev.close().catch(() => undefined);
  }
}
