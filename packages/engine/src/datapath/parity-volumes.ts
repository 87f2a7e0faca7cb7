// The data path's raid5/6 volumes: one stripe engine each (stripe-engine.ts) over the shared
// scratch slots, checks that a topology can be served, and binding (a new volume first replays
// its journal; a failed replay leaves it answering EIO until a later call succeeds).
import { EngineError } from '../api-types.js';
import { arrayIdBytes } from './journal-format.js';
import type { VolumeGeometry } from './map.js';
import { journalArea } from './journal-area.js';
import { parityGeometry, parityMinElements } from './map-parity.js';
import { ParityVolumeIo } from './parity-volume-io.js';
import type { ReadCache } from './read-cache.js';
import type { SharedViews } from './shared-layout.js';
import { StripeEngine } from './stripe-engine.js';
import type { StripeIntegrity } from './stripe-integrity.js';
import { ScratchPool, StripeIo, type StripeVolume } from './stripe-io.js';
import type { Top } from './top.js';
import type { TopologyElement, TopologyVolume } from './topology.js';
import type { VolumeBinding, VolumeIoImpl } from './volume-io.js';
import type { SlotPool } from './waiters.js';

/**
 * Slab slots kept for raid5/6 scratch buffers (and their compute parameter blocks), allocated
 * with the slab whether or not such a volume exists yet: an eighth of the client slots plus the
 * journal's, at least 9 (the journal's, then four per unit for two units) and at most 33.
 */
export function stripeSlotsFor(slots: number): number {
  return Math.min(33, Math.max(9, Math.ceil(slots / 8) + 1));
}

export class ParityVolumes {
  private readonly engines = new Map<number, StripeEngine>();
  private readonly errors = new Map<number, string>();
  private readonly scratch: ScratchPool;

  constructor(
    private readonly v: SharedViews,
    private readonly top: Top,
    private readonly slots: SlotPool,
    private readonly waitersMax: number,
    private readonly readCache?: ReadCache,
  ) {
    this.scratch = new ScratchPool(v, waitersMax);
  }

  engine(index: number): StripeEngine {
    const engine = this.engines.get(index);
    if (engine === undefined) throw new EngineError('not-found', `no raid5/raid6 volume is bound at index ${index}`);
    return engine;
  }

  openError(index: number): string | undefined {
    return this.errors.get(index);
  }

  /** Refuses what the stripe engine cannot serve: width, chunk alignment, scratch room. */
  validate(vol: TopologyVolume, els: readonly TopologyElement[], alignBytes: number): void {
    // raid5 of 2 (a mirror: parity = the one data chunk) serves a raid1 being reshaped; config asks users for 3.
    const min = parityMinElements(vol.layout === 'raid5' ? 1 : 2);
    if (els.length < min || els.length > 64) throw new EngineError('invalid', `volume ${vol.name}: ${vol.layout} needs ${min} to 64 elements (got ${els.length})`, vol.name);
    const align = Math.max(4096, alignBytes);
    if (!(Number.isSafeInteger(vol.chunkBytes) && vol.chunkBytes > 0 && vol.chunkBytes % align === 0)) {
      throw new EngineError('invalid', `volume ${vol.name}: chunk ${vol.chunkBytes} bytes must be a positive multiple of ${align}`, vol.name);
    }
    const sv = stripeVolume(vol, els);
    if (StripeEngine.segmentFor(sv, this.scratch, align) === 0) {
      throw new EngineError('invalid', `volume ${vol.name}: ${els.length} elements need larger data slots for parity work`, vol.name, 'raise queue.slotKiB');
    }
    // A fresh engine drops the old one's state: nothing may be in flight or left unretired in its journal.
    const engine = this.engines.get(vol.index);
    if (engine !== undefined && !engine.fits(sv) && (engine.journal.transactionsInFlight > 0 || engine.journal.checkpointSeq < engine.journal.sequence)) {
      throw new EngineError('conflict', `volume ${vol.name}: its width or journal area changes while its journal holds unretired writes`, vol.name, 'pause the volume and checkpoint its journal first (DataPath.pauseVolume, checkpointJournal)');
    }
  }

  /**
   * The volume's I/O object: the old one rebound, or a new one after its journal replay. A volume
   * whose width or journal area changed (a reshape starts or finishes: docs/reshape.md) gets a
   * fresh stripe engine replayed from its area. PRECONDITION for that: the caller paused the
   * volume (DataPath.pauseVolume) and retired its journal (checkpointJournal), so the old engine
   * has nothing in flight and nothing left to replay; its in-memory state is dropped.
   */
  async bind(vol: TopologyVolume, binding: VolumeBinding, els: readonly TopologyElement[], old: VolumeIoImpl | undefined): Promise<VolumeIoImpl> {
    const sv = stripeVolume(vol, els);
    const align = Math.max(4096, binding.alignBytes);
    const engine = this.engines.get(vol.index);
    if (engine !== undefined && old instanceof ParityVolumeIo && engine.fits(sv)) {
      engine.rebind(sv, align);
      old.rebind(binding);
      return old;
    }
    const fresh = new StripeEngine(new StripeIo(this.top, this.v, sv), this.scratch, this.waitersMax, align);
    this.engines.set(vol.index, fresh);
    this.errors.delete(vol.index);
    // With integrity the replay waits for the checksums (attachIntegrity): what it writes again
    // needs them recomputed before its checkpoint retires the records. I/O waits for it either way.
    if (vol.integrity !== true) await this.replay(vol.index, fresh);
    return new ParityVolumeIo(binding, this.top, this.slots, this.v.slab, fresh, this.readCache);
  }

  /** Hands a bound volume its checksums, then replays its journal if that has not happened yet. */
  async attachIntegrity(index: number, integrity: StripeIntegrity): Promise<void> {
    const engine = this.engine(index);
    engine.integrity = integrity;
    await this.replay(index, engine);
  }

  private async replay(index: number, engine: StripeEngine): Promise<void> {
    try {
      await engine.open();
      this.errors.delete(index);
    } catch (err) {
      this.errors.set(index, (err as Error).message);
    }
  }

  unbind(index: number): void {
    this.engines.delete(index);
    this.errors.delete(index);
  }
}

function stripeVolume(vol: TopologyVolume, els: readonly TopologyElement[]): StripeVolume {
  const geom: VolumeGeometry = { layout: vol.layout, chunkBytes: vol.chunkBytes, sizeBytes: vol.sizeBytes, elements: els.map((e) => ({ dataOffsetBytes: e.dataOffsetBytes, dataSizeBytes: e.dataSizeBytes })) };
  return { index: vol.index, name: vol.name, g: parityGeometry(geom), elements: vol.elements, arrayId: arrayIdBytes(vol.arrayId), journal: journalArea(vol.journal) };
}
