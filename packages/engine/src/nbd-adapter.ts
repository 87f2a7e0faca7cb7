// Serves a volume over NBD: maps the data path's VolumeIo onto @onestack/nbd's NbdExport.
// Reads and writes go through zero-copy slab views; failures become NbdError with the errno.
import { MetaContext, NbdError, type NbdExport, type NbdExtent, type NbdMetaContexts, type NbdReadResult, type NbdWriteBuffer } from '@onestack/nbd';
import { EngineError, type BlockExtent } from './api-types.js';
import type { Layout } from './config/types.js';
import type { VolumeIo } from './datapath/volume-io.js';

export interface NbdExportMeta {
  readonly name: string;
  readonly description?: string;
  readonly layout: Layout;
  readonly chunkBytes: number;
  /** Elements in the volume (legs, stripe columns, data plus parity), for the full stripe. */
  readonly elementCount: number;
  readonly canMultiConn: boolean;
  /** Block status sources; absent = no meta contexts offered. */
  readonly status?: VolumeStatusSource;
  /** Grows the volume (NBD_CMD_RESIZE); rejects with an NbdError. Absent = RESIZE not offered. */
  readonly grow?: (sizeBytes: number) => Promise<void>;
}

/** What a volume can say about its blocks (engine.allocation, engine.checkpoints / dirtyExtents). */
export interface VolumeStatusSource {
  allocation(offsetBytes: number, lengthBytes: number, extentsMax: number): Promise<readonly BlockExtent[]>;
  checkpointNames(): readonly string[];
  dirtyExtents(checkpoint: string, offsetBytes: number, lengthBytes: number, extentsMax: number): Promise<readonly BlockExtent[]>;
  /** Integrity volumes only (absent = no x-onestack:integrity context): blocks found bad (1) or repaired (2). */
  integrityExtents?(offsetBytes: number, lengthBytes: number, extentsMax: number): Promise<readonly BlockExtent[]>;
}

/** The integrity map's meta context (docs/nbd.md): flag 1 = found bad, not repaired; 2 = repaired. */
export const INTEGRITY_CONTEXT = 'x-onestack:integrity';

const MAXIMUM_BLOCK_BYTES = 32 * 1024 * 1024;
const PREFERRED_BLOCK_BYTES = 4096;

function toNbdError(err: unknown): NbdError {
  // Data-path failures already are NbdErrors; anything else (engine closed, a bug) reads as EIO.
  if (err instanceof NbdError) return err;
  // A checkpoint deleted while a client still had its context selected.
  if (err instanceof EngineError && err.code === 'not-found') return new NbdError('EINVAL', err.message);
  return new NbdError('EIO', err instanceof Error ? err.message : String(err));
}

async function wrap<T>(work: () => Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (err) {
    throw toNbdError(err);
  }
}

/** Elements holding distinct data in one stripe row; 0 for layouts without stripes. */
function dataColumns(layout: Layout, elementCount: number): number {
  switch (layout) {
    case 'raid0': return elementCount;
    case 'raid10': return Math.floor(elementCount / 2); // mirrored pairs
    case 'raid5': return elementCount - 1;
    case 'raid6': return elementCount - 2;
    default: return 0; // linear, raid1: no stripe
  }
}

const isPowerOfTwo = (n: number): boolean => Number.isSafeInteger(n) && n > 0 && (n & (n - 1)) === 0;

/**
 * NBD_INFO_BLOCK_SIZE's preferred size: a power of two from the minimum to the maximum
 * (proto.md). Striped layouts prefer a full stripe (every column busy at once; for raid5/6 the
 * parity is computed from new data alone, no read-modify-write), else one chunk (at least no
 * partial-chunk RMW). Stripes over 3 data columns are not powers of two, so they get the chunk.
 */
export function preferredBytes(layout: Layout, chunkBytes: number, elementCount: number, minimumBytes: number): number {
  const fits = (n: number): boolean => isPowerOfTwo(n) && n >= minimumBytes && n <= MAXIMUM_BLOCK_BYTES;
  const columns = dataColumns(layout, elementCount);
  if (columns > 0) {
    if (fits(chunkBytes * columns)) return chunkBytes * columns;
    if (fits(chunkBytes)) return chunkBytes;
  }
  return Math.max(PREFERRED_BLOCK_BYTES, minimumBytes);
}

/** base:allocation, one qemu:dirty-bitmap:NAME per checkpoint and, with integrity, x-onestack:integrity, as the NBD server wants them. */
export function metaContextsFor(source: VolumeStatusSource): NbdMetaContexts {
  const prefix = MetaContext.DIRTY_BITMAP_PREFIX;
  return {
    names: () => [
      MetaContext.BASE_ALLOCATION,
      ...(source.integrityExtents !== undefined ? [INTEGRITY_CONTEXT] : []),
      ...source.checkpointNames().map((name) => prefix + name),
    ],
    blockStatus: (context: string, offsetBytes: number, lengthBytes: number, extentsMax: number): Promise<readonly NbdExtent[]> => {
      if (context === MetaContext.BASE_ALLOCATION) return wrap(() => source.allocation(offsetBytes, lengthBytes, extentsMax));
      if (context === INTEGRITY_CONTEXT && source.integrityExtents !== undefined) {
        const integrityExtents = source.integrityExtents.bind(source);
        return wrap(() => integrityExtents(offsetBytes, lengthBytes, extentsMax));
      }
      if (context.startsWith(prefix)) return wrap(() => source.dirtyExtents(context.slice(prefix.length), offsetBytes, lengthBytes, extentsMax));
      return Promise.reject(new NbdError('EINVAL', `no meta context ${JSON.stringify(context)}`));
    },
  };
}

export function nbdExportFor(io: VolumeIo, meta: NbdExportMeta): NbdExport {
  const exp: NbdExport = {
    name: meta.name,
    ...(meta.description !== undefined ? { description: meta.description } : {}),
    get sizeBytes(): number {
      return io.sizeBytes;
    },
    readOnly: false,
    canFlush: true,
    canFua: true,
    canTrim: true,
    canWriteZeroes: true,
    canCache: true,
    canMultiConn: meta.canMultiConn,
    // The elements' block size stays the advertised minimum, so clients that honour it (qemu, libnbd
    // in strict mode) keep aligning; smaller or unaligned requests are still served, by RMW.
    blockSize: {
      minimumBytes: io.alignBytes,
      preferredBytes: preferredBytes(meta.layout, meta.chunkBytes, meta.elementCount, io.alignBytes),
      maximumBytes: MAXIMUM_BLOCK_BYTES,
    },
    read: (offsetBytes: number, lengthBytes: number): Promise<NbdReadResult> => wrap(() => io.readSlots(offsetBytes, lengthBytes, 'remote')),
    acquireWriteBuffer: (lengthBytes: number): Promise<NbdWriteBuffer> => wrap(() => io.acquireWriteBuffer(lengthBytes)),
    write: (offsetBytes: number, buffer: NbdWriteBuffer, flags: { fua: boolean }): Promise<void> => wrap(() => io.writeBuffer(offsetBytes, buffer, flags, 'remote')),
    flush: (): Promise<void> => wrap(() => io.flush()),
    trim: (offsetBytes: number, lengthBytes: number, flags: { fua: boolean }): Promise<void> => wrap(() => io.trim(offsetBytes, lengthBytes, flags)),
    writeZeroes: (offsetBytes: number, lengthBytes: number, flags: { fua: boolean; noHole: boolean }): Promise<void> => wrap(() => io.writeZeroes(offsetBytes, lengthBytes, flags)),
    cache: (offsetBytes: number, lengthBytes: number): Promise<void> => wrap(() => io.cache(offsetBytes, lengthBytes)),
    ...(meta.status !== undefined ? { metaContexts: metaContextsFor(meta.status) } : {}),
    ...(meta.grow !== undefined ? { resize: meta.grow } : {}),
  };
  return exp;
}
