// Checkpoints of every volume (<dataDir>/checkpoints/<volume>/): what the Engine's checkpoint
// methods delegate to. Attached when a volume is opened or created, before it takes writes;
// removed with the volume. Control operations run inside the engine's exclusive section.
import * as path from 'node:path';
import { EngineError, type BlockExtent, type CheckpointStatus } from '../api-types.js';
import type { WriteGate } from '../datapath/write-gate.js';
import type { LogFn } from '../engine-types.js';
import { openBitsFile, type OpenBitsFile } from './bits.js';
import { VolumeCheckpoints } from './volume-checkpoints.js';

export interface CheckpointVolume {
  readonly name: string;
  readonly arrayUuid: string;
  readonly sizeBytes: number;
  readonly gate: WriteGate;
}

export interface CheckpointKeeperOptions {
  readonly dataDir: string;
  readonly log: LogFn;
  /** Opens bits files (tests inject failures here). */
  readonly openFile?: OpenBitsFile;
}

export const CHECKPOINTS_DIR = 'checkpoints';

export class CheckpointKeeper {
  private readonly volumes = new Map<string, VolumeCheckpoints>();

  constructor(private readonly o: CheckpointKeeperOptions) {}

  /** Loads a volume's checkpoints and starts marking its writes in them. */
  async attach(volume: CheckpointVolume): Promise<void> {
    if (this.volumes.has(volume.name)) throw new Error(`checkpoints of volume ${volume.name} attached twice`);
    const set = await VolumeCheckpoints.open({
      dir: path.join(this.o.dataDir, CHECKPOINTS_DIR, volume.name), volume: volume.name, arrayUuid: volume.arrayUuid, sizeBytes: volume.sizeBytes,
      gate: volume.gate, log: this.o.log, openFile: this.o.openFile ?? openBitsFile,
    });
    this.volumes.set(volume.name, set);
  }

  /** The volume was deleted: its checkpoints go with it. */
  async remove(volume: string): Promise<void> {
    const set = this.volumes.get(volume);
    this.volumes.delete(volume);
    await set?.close(true);
  }

  create(volume: string, name?: string): Promise<CheckpointStatus> {
    return this.of(volume).create(name);
  }

  /** Usable checkpoints, oldest first ([] for a volume without any, or unknown); `all` adds unusable ones. */
  list(volume: string, all = false): CheckpointStatus[] {
    return this.volumes.get(volume)?.list(all) ?? [];
  }

  delete(volume: string, name: string): Promise<void> {
    return this.of(volume).delete(name);
  }

  extents(volume: string, name: string, offsetBytes: number, lengthBytes: number, extentsMax: number): BlockExtent[] {
    return this.of(volume).extents(name, offsetBytes, lengthBytes, extentsMax);
  }

  /** Marks a range written by something other than a client write (a scrub repair); undefined when nothing waits. */
  mark(volume: string, offsetBytes: number, lengthBytes: number): Promise<void> | undefined {
    return this.volumes.get(volume)?.mark(offsetBytes, lengthBytes);
  }

  /** Engine close (after the volumes were flushed): closes every file; the bits are durable already. */
  async close(): Promise<void> {
    for (const [name, set] of this.volumes) {
      this.volumes.delete(name);
      await set.close().catch((err: Error) => this.o.log('warn', `volume ${name}: closing its checkpoints: ${err.message}`));
    }
  }

  private of(volume: string): VolumeCheckpoints {
    const set = this.volumes.get(volume);
    if (set === undefined) throw new EngineError('not-found', `no volume named ${volume}`, `volume ${volume}`, 'list volumes with `onestack volume list`');
    return set;
  }
}
