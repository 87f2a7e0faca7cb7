// Growing a volume into room its elements already have (Engine.growVolume, `onestack volume
// grow`): no data moves. Linear grows its last element, raid1/raid10 every leg, raid0/raid5/
// raid6 append rows (every element grows by the same whole chunks; the new rows are zeroed, so
// their parity is zero and valid).
//
// Crash safety, in this order (meta/grow.ts):
//  1. every element's superblock gets its new data size, the volume size unchanged. A crash
//     here: the old size; a larger data area is harmless (mappings depend only on the layout,
//     and linear only grows its last element).
//  2. the new element bytes are zeroed and flushed (clients cannot see them yet).
//  3. writes are fenced and flushed; a mirror's write-intent bitmap is closed.
//  4. every superblock gets the new volume size, the event counter unchanged. Assembly takes the
//     smallest size among the up-to-date superblocks, so until the last one is written a crash
//     leaves the old size.
//  5. the data path gets the new size (setTopology; the NBD export's size follows), a mirror
//     gets a new bitmap sized for it, the fence lifts.
import { NbdError } from '@onestack/nbd';
import { EngineError } from './api-types.js';
import { localSizeBytes } from './meta/device.js';
import { withRemote } from './meta/remote-io.js';
import { rewriteActive } from './meta/assemble.js';
import { capacityWithin, planGrowth, type ElementGrowth } from './meta/grow.js';
import { DATA_OFFSET_BYTES, type AssembledVolume } from './meta/types.js';
import type { VolumeEntry } from './state/registry.js';
import type { VolumeOpsHost } from './volume-ops.js';

export interface GrowVolumeSpec {
  /** The new size; must not be smaller than now, a multiple of 4 KiB (and of the volume's block size). */
  readonly sizeBytes: number;
}

export interface GrowResult {
  readonly name: string;
  readonly previousBytes: number;
  readonly sizeBytes: number;
}

/** Zeroing goes to the data path in pieces of this size (bounded requests, remote legs included). */
const ZERO_PIECE_BYTES = 64 * 1024 * 1024;

/** A grow beyond what the elements hold (NBD_CMD_RESIZE answers ENOSPC). */
export class NoRoomError extends EngineError {}

/** NBD_CMD_RESIZE's answer to a failed grow: ENOSPC when there is no room, EINVAL when refused, EIO otherwise (the message stays in the log). */
export function growNbdError(err: unknown): NbdError {
  const message = err instanceof Error ? err.message : String(err);
  if (err instanceof NoRoomError) return new NbdError('ENOSPC', message);
  if (err instanceof EngineError && (err.code === 'invalid' || err.code === 'conflict' || err.code === 'not-found')) return new NbdError('EINVAL', message);
  return new NbdError('EIO', message);
}

function refuse(name: string, message: string, hint?: string): EngineError {
  return new EngineError('conflict', `volume ${name}: ${message}`, `volume ${name}`, hint);
}

/** What must hold before a grow starts: every element active, nothing copied or scrubbed, no checksums or checkpoints to resize. */
function checkGrowable(host: VolumeOpsHost, entry: VolumeEntry): void {
  const vol = entry.assembled;
  const name = vol.config.name;
  if (vol.config.integrity === true) {
    throw refuse(name, 'growing an integrity volume is not supported yet: its checksum area sits right after the data area (docs/integrity.md) and would have to move');
  }
  if (host.ckpts.list(name, true).length > 0) throw refuse(name, 'it has checkpoints, which cover the current size only', 'delete them first (onestack volume checkpoint-delete)');
  if (!entry.runtime && vol.config.sizeBytes !== undefined) {
    throw refuse(name, `the config file fixes its size (sizeBytes: ${vol.config.sizeBytes})`, 'remove sizeBytes from the config file and restart, then grow');
  }
  for (const e of vol.elements) {
    const live = host.dataPath.elementState(host.registry.element(e.config.name).index);
    if (e.state !== 'active' || live !== 'active') throw refuse(name, `element ${e.config.name} is ${live === 'active' ? e.state : live}; a grow needs every element active`, 'wait for the rebuild, or replace the element');
  }
  const keep = host.keeper.keep(name);
  if (keep !== undefined && (keep.run !== null || keep.pending.size > 0)) throw refuse(name, 'a resync or rebuild runs', 'grow when it is done');
  if (host.scrubs.isRunning(name)) throw refuse(name, 'a scrub runs', 'wait for it, or cancel it (onestack volume scrub NAME --cancel)');
}

/**
 * Data bytes each element may hold now: a local file or device as large as it is now (it may have
 * been enlarged since start-up); an NBD element as large as its export says on a new connection
 * (the data path's client asks again when a request goes past the end it knew); an iSCSI element
 * as large as its LUN was at start-up (the initiator keeps the capacity it read).
 */
async function roomOf(host: VolumeOpsHost, vol: AssembledVolume): Promise<number[]> {
  const room: number[] = [];
  for (const e of [...vol.elements].sort((a, b) => a.role - b.role)) {
    const loc = e.config.location;
    if (loc.kind === 'local') {
      const total = await localSizeBytes(loc.path).catch((err: Error) => {
        throw new EngineError('io', `element ${e.config.name}: cannot read its size: ${err.message}`, loc.path);
      });
      room.push(Math.max(0, total - DATA_OFFSET_BYTES));
    } else if (e.config.location.kind === 'nbd') {
      const total = await withRemote(e.config, async (dev) => dev.info.sizeBytes);
      room.push(Math.max(0, total - DATA_OFFSET_BYTES));
    } else {
      room.push(host.registry.element(e.config.name).dataSizeBytes);
    }
  }
  return room;
}

function roomText(vol: AssembledVolume, room: readonly number[]): string {
  return [...vol.elements].sort((a, b) => a.role - b.role).map((e, i) => `${e.config.name} ${room[i]}`).join(', ');
}

/** Plans the grow and refuses what the elements cannot hold, naming how much they do. */
async function planFor(host: VolumeOpsHost, vol: AssembledVolume, sizeBytes: number): Promise<{ plan: ElementGrowth[]; room: number[] }> {
  const name = vol.config.name;
  const chunkBytes = vol.config.chunkKiB * 1024;
  const current = [...vol.elements].sort((a, b) => a.role - b.role).map((e) => e.dataSizeBytes);
  const room = await roomOf(host, vol);
  const plan = planGrowth(vol.config.layout, chunkBytes, current, vol.sizeBytes, sizeBytes);
  const short = plan.find((g) => g.dataSizeBytes > Math.max(room[g.role] ?? 0, current[g.role] ?? 0));
  if (short !== undefined) {
    const capacity = capacityWithin(vol.config.layout, chunkBytes, current, room);
    const iscsi = vol.elements.some((e) => e.config.location.kind === 'iscsi');
    throw new NoRoomError('invalid', `volume ${name}: ${sizeBytes} bytes is more than its elements hold: at most ${capacity} bytes as ${vol.config.layout} (data bytes after the 4 MiB header: ${roomText(vol, room)})`,
      `volume ${name}`, `enlarge the elements first (truncate -s, lvextend, a larger NBD export${iscsi ? '; a larger iSCSI LUN needs a restart' : ''}), or ask for at most ${capacity}`);
  }
  return { plan, room };
}

async function zeroNew(host: VolumeOpsHost, vol: AssembledVolume, plan: readonly ElementGrowth[]): Promise<void> {
  const raw = host.dataPath.raw;
  for (const g of plan) {
    const element = host.registry.element(vol.config.elements[g.role]!).index;
    for (let at = g.fromBytes; at < g.toBytes; at += ZERO_PIECE_BYTES) {
      await raw.zero(element, DATA_OFFSET_BYTES + at, Math.min(ZERO_PIECE_BYTES, g.toBytes - at));
    }
    if (g.toBytes > g.fromBytes) await raw.flush(element);
  }
}

export async function growVolumeOp(host: VolumeOpsHost, name: string, spec: GrowVolumeSpec): Promise<GrowResult> {
  const entry = host.registry.volumes.get(name);
  if (entry === undefined) throw new EngineError('not-found', `no volume named ${name}`, `volume ${name}`, 'list volumes with `onestack volume list`');
  const previousBytes = entry.assembled.sizeBytes;
  const sizeBytes = spec.sizeBytes;
  const align = Math.max(4096, entry.handle.io.alignBytes);
  if (!(Number.isSafeInteger(sizeBytes) && sizeBytes > 0 && sizeBytes % align === 0)) {
    throw new EngineError('invalid', `volume ${name}: size ${sizeBytes} must be a positive multiple of ${align} bytes`, `volume ${name}`);
  }
  if (sizeBytes < previousBytes) {
    throw new EngineError('invalid', `volume ${name}: shrinking is not supported (it is ${previousBytes} bytes, asked for ${sizeBytes})`, `volume ${name}`, 'a grow can only make it larger');
  }
  if (sizeBytes === previousBytes) return { name, previousBytes, sizeBytes };
  checkGrowable(host, entry);
  const { plan, room } = await planFor(host, entry.assembled, sizeBytes);
  // A run-time volume's sizeBytes only mattered at creation; from now on the superblocks say it.
  if (entry.runtime && entry.assembled.config.sizeBytes !== undefined) {
    const { sizeBytes: _created, ...config } = entry.assembled.config;
    entry.assembled = { ...entry.assembled, config };
    host.persist();
  }
  // 1. New data sizes, old volume size.
  const widened: AssembledVolume = { ...entry.assembled, elements: entry.assembled.elements.map((e) => ({ ...e, dataSizeBytes: plan[e.role]?.dataSizeBytes ?? e.dataSizeBytes })) };
  await rewriteActive(widened);
  entry.assembled = widened;
  await host.applyTopology();
  // 2. The new bytes read as zeroes on every element before anyone can see them.
  await zeroNew(host, widened, plan);
  await switchSize(host, entry, sizeBytes);
  // Status shows each element's size as last measured.
  entry.assembled.config.elements.forEach((n, role) => {
    const element = host.registry.element(n);
    element.dataSizeBytes = Math.max(element.dataSizeBytes, room[role] ?? 0);
  });
  host.log('info', `volume ${name}: grown from ${previousBytes} to ${sizeBytes} bytes`);
  host.persist();
  host.changed();
  return { name, previousBytes, sizeBytes };
}

/** Steps 3 to 5: under a fence over the whole volume, the new size goes to the superblocks, then to the data path. */
async function switchSize(host: VolumeOpsHost, entry: VolumeEntry, sizeBytes: number): Promise<void> {
  const name = entry.assembled.config.name;
  const io = entry.handle.io;
  const lift = await io.gate.fence(0, Number.MAX_SAFE_INTEGER);
  const mirror = entry.assembled.config.layout === 'raid1' || entry.assembled.config.layout === 'raid10';
  let detached = false;
  try {
    await io.flush();
    // The bitmap's header names the volume size; with no write in flight and everything flushed
    // onto every (active) leg, nothing is dirty: a new bitmap for the new size replaces it.
    if (mirror) {
      await host.keeper.detach(name, io);
      detached = true;
    }
    const grown: AssembledVolume = { ...entry.assembled, sizeBytes, wasClean: true };
    await rewriteActive(grown);
    entry.assembled = grown;
    await host.applyTopology();
    // Checkpoint bitmaps are sized at attach; there are none (checkGrowable), so start afresh.
    await host.ckpts.remove(name);
    await host.attachCheckpoints(entry);
  } finally {
    try {
      if (detached) await host.keeper.attach(entry);
    } finally {
      lift();
    }
  }
}
