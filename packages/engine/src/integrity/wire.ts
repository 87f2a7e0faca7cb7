// Builds a volume's VolumeIntegrity from the data path's topology (datapath.ts calls it whenever
// the topology is applied, so replaced or re-ordered legs are followed), from what the control
// plane hands over once per volume: its checksum store, counters and log.
import { isDeviceError } from '../datapath/errno.js';
import type { RawIo } from '../datapath/raw-io.js';
import { failElementState } from '../datapath/topology.js';
import type { TopologyElement, TopologyVolume } from '../datapath/topology.js';
import type { WriteGate } from '../datapath/write-gate.js';
import type { StripeEngine } from '../datapath/stripe-engine.js';
import { VolumeIntegrity, type IntegrityCount } from './checksum-io.js';
import { ParityIntegrity } from './parity-io.js';
import type { ChecksumStore } from './types.js';
import type { Crc32cBlocks } from '@onestack/native';

/** What the control plane gives the data path for a volume with integrity. */
export interface IntegrityOptions {
  readonly store: ChecksumStore;
  readonly count: IntegrityCount;
  readonly log: (line: string) => void;
  /** Tests: the checksum kernel (to count calls). */
  readonly crc32cBlocks?: Crc32cBlocks;
  /** Ranges still waiting for a resync after an unclean stop (checksum-io.ts IntegrityDeps.unsettled). */
  readonly unsettled?: (offsetBytes: number, lengthBytes: number) => boolean;
}

/** The volume's integrity over its current legs (raid1/raid10; raid5/6 take parityIntegrityFor). */
export function integrityFor(vol: TopologyVolume, els: readonly TopologyElement[], opts: IntegrityOptions, dp: { elemState: Int32Array; raw: RawIo; gate: WriteGate }): VolumeIntegrity {
  if (vol.layout !== 'raid1' && vol.layout !== 'raid10') throw new Error(`volume ${vol.name}: mirror integrity on a ${vol.layout} volume`);
  return new VolumeIntegrity({
    ...opts,
    layout: { layout: vol.layout, chunkBytes: vol.chunkBytes, elements: els.map((e) => ({ index: e.index, dataOffsetBytes: e.dataOffsetBytes })) },
    state: (el) => Atomics.load(dp.elemState, el),
    failLeg: (el, err) => isDeviceError(err) && failElementState(dp.elemState, el),
    raw: dp.raw,
    gate: dp.gate,
    volume: vol.name,
    behindElement: vol.writeBehind?.element ?? -1,
  });
}

/** A raid5/6 volume's integrity: over its stripe engine, which follows replaced elements itself. */
export function parityIntegrityFor(vol: TopologyVolume, opts: IntegrityOptions, stripe: StripeEngine, raw: RawIo): ParityIntegrity {
  return new ParityIntegrity({ store: opts.store, count: opts.count, log: opts.log, volume: vol.name, stripe, raw, ...(opts.crc32cBlocks !== undefined ? { crc32cBlocks: opts.crc32cBlocks } : {}) });
}
