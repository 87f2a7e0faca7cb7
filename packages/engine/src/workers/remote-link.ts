// One remote element as seen by one remote loop: a lazily opened protocol client, shared by all
// requests, with back-off after a failed connect so a dead remote fails requests fast instead of
// making each one wait out its own connect. (The clients reconnect by themselves once connected.)
import { DescFlags, Op } from '@onestack/queue';
import { DataPathError } from '../datapath/errno.js';
import { connectRemote, remoteError, type LogLine, type RemoteDevice } from '../remote/connect.js';
import type { RemoteSpec } from '../remote/spec.js';

const RETRY_MIN_MS = 100;
const RETRY_MAX_MS = 5000;

export interface RemoteSub {
  readonly op: number;
  readonly flags: number;
  readonly offsetBytes: number;
  readonly lengthBytes: number;
  /** READ/WRITE data (a view over the slab); null for the other ops. */
  readonly view: Uint8Array | null;
}

export class RemoteLink {
  private device: RemoteDevice | null = null;
  private connecting: Promise<RemoteDevice> | null = null;
  private lastError: DataPathError | null = null;
  private retryAtMs = 0;
  private retryDelayMs = RETRY_MIN_MS;
  private closed = false;

  constructor(
    readonly spec: RemoteSpec,
    private readonly log: LogLine,
  ) {}

  /** Same remote, same options: the link can be kept across topology changes. */
  sameAs(spec: RemoteSpec): boolean {
    return JSON.stringify(spec) === JSON.stringify(this.spec);
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
    try {
      switch (r.op) {
        case Op.READ:
          return await dev.read(r.offsetBytes, r.view!);
        case Op.WRITE:
          return await dev.write(r.offsetBytes, r.view!, { fua });
        case Op.FLUSH:
          return await dev.flush();
        case Op.TRIM:
          // As on local legs (element-io.ts): a trim must leave mirror legs reading the same, so
          // it zeroes; a remote without WRITE_ZEROES gets zero buffers from the client.
          return await dev.writeZeroes(r.offsetBytes, r.lengthBytes, { fua });
        case Op.WRITE_ZEROES:
          return await dev.writeZeroes(r.offsetBytes, r.lengthBytes, { fua, noHole: (r.flags & DescFlags.NO_HOLE) !== 0 });
        case Op.CACHE:
          return; // nothing to warm on the far side
        default:
          throw new DataPathError('EINVAL', `unknown op ${r.op}`);
      }
    } catch (err) {
      throw err instanceof DataPathError ? err : remoteError(err, this.spec.where);
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    const dev = this.device ?? (await this.connecting?.catch(() => null)) ?? null;
    this.device = null;
    if (dev !== null) await dev.close().catch(() => undefined);
  }
}
