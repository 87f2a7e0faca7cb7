// A volume as the embedding API shows it: byte-addressed I/O over the data path's VolumeIo.
// The handle stays valid while the volume exists; after delete or engine close every call
// fails with EngineError('closed') instead of touching a slot that may have been reused.
import { EngineError } from './api-types.js';
import type { Layout } from './config/types.js';
import type { VolumeIo } from './datapath/volume-io.js';

export class Volume {
  readonly name: string;
  readonly layout: Layout;
  #sizeBytes: number;
  #io: (() => VolumeIo) | null;

  /** @internal Created by Engine only. */
  constructor(name: string, layout: Layout, sizeBytes: number, io: () => VolumeIo) {
    this.name = name;
    this.layout = layout;
    this.#sizeBytes = sizeBytes;
    this.#io = io;
  }

  /** The size now: it follows a grow (Engine.growVolume). */
  get sizeBytes(): number {
    try {
      if (this.#io !== null) this.#sizeBytes = this.#io().sizeBytes;
    } catch {
      // The data path is closing: the last size known.
    }
    return this.#sizeBytes;
  }

  /** @internal The data path's I/O object (the NBD export uses its zero-copy calls). */
  get io(): VolumeIo {
    if (this.#io === null) throw new EngineError('closed', `volume ${this.name} is closed or deleted`, `volume ${this.name}`);
    return this.#io();
  }

  /** @internal Detaches the handle (volume deleted or engine closed). */
  detach(): void {
    this.#io = null;
  }

  get open(): boolean {
    return this.#io !== null;
  }

  read(offsetBytes: number, lengthBytes: number): Promise<Uint8Array> {
    return this.call(() => this.io.read(offsetBytes, lengthBytes));
  }

  /** Resolves once the data is on every leg the layout promises (and on stable storage with fua). */
  write(offsetBytes: number, data: Uint8Array, opts?: { fua?: boolean }): Promise<void> {
    return this.call(() => this.io.write(offsetBytes, data, opts ?? {}));
  }

  flush(): Promise<void> {
    return this.call(() => this.io.flush());
  }

  trim(offsetBytes: number, lengthBytes: number): Promise<void> {
    return this.call(() => this.io.trim(offsetBytes, lengthBytes));
  }

  writeZeroes(offsetBytes: number, lengthBytes: number, opts?: { noHole?: boolean; fua?: boolean }): Promise<void> {
    return this.call(() => this.io.writeZeroes(offsetBytes, lengthBytes, opts ?? {}));
  }

  cache(offsetBytes: number, lengthBytes: number): Promise<void> {
    return this.call(() => this.io.cache(offsetBytes, lengthBytes));
  }

  private call<T>(work: () => Promise<T>): Promise<T> {
    try {
      return work();
    } catch (err) {
      return Promise.reject(err);
    }
  }
}
