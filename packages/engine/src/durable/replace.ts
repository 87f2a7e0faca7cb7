// Replacing a mirror or raid5/6 leg: the new element (an unused element, e.g. a configured spare) takes the
// old one's role, gets a superblock that says "needs rebuild, holds nothing" (so a crash mid-copy
// restarts the rebuild), joins the data path as rebuilding and is copied in full. The old element
// is failed and leaves the volume. Also: bringing back a leg whose remote answers again.
// Every function here runs inside the engine's exclusive() (one control operation at a time).
import { randomUUID } from 'node:crypto';
import { EngineError } from '../api-types.js';
import type { ElementConfig } from '../config/types.js';
import { elementIntegrityArea, markClean, markNeedsRebuild } from '../meta/assemble.js';
import { localSizeBytes } from '../meta/device.js';
import { readSuperblockFile, type ReadSuperblock } from '../meta/element-io.js';
import { probeRemote } from '../meta/remote-io.js';
import { decodeSuperblock, SuperblockError, type Superblock } from '../meta/superblock.js';
import { DATA_OFFSET_BYTES, type AssembledElement, type AssembledVolume } from '../meta/types.js';
import type { VolumeEntry } from '../state/registry.js';
import type { KeeperHost } from './host.js';
import { canRebuild, isMirror, isParity, type Keep, type MirrorKeeper } from './keeper.js';

function isSuperblock(sb: ReadSuperblock): sb is Superblock {
  return !(sb instanceof SuperblockError) && !('kind' in sb);
}

/** Reads an element's superblock, size and block size (local file or remote, fresh connection). */
async function inspect(config: ElementConfig): Promise<{ sb: ReadSuperblock; sizeBytes: number; blockSizeBytes: number }> {
  if (config.location.kind !== 'local') {
    const { info, sb } = await probeRemote(config);
    if (info.readOnly) throw new EngineError('invalid', `element ${config.name}: ${config.uri} is read-only`, config.uri);
    return { sb, sizeBytes: info.sizeBytes, blockSizeBytes: info.blockSizeBytes };
  }
  return { sb: await readSuperblockFile(config.location.path), sizeBytes: await localSizeBytes(config.location.path), blockSizeBytes: 1 };
}

function refuse(message: string, where: string, hint?: string): never {
  throw new EngineError('conflict', message, where, hint);
}

/** Checks a replacement and reads what the new leg needs; throws EngineError naming the problem. */
async function checkReplacement(host: KeeperHost, entry: VolumeEntry, oldName: string, newName: string): Promise<{ role: number; old: AssembledElement; probe: Awaited<ReturnType<typeof inspect>> }> {
  const vol = entry.assembled;
  const name = vol.config.name;
  if (!isMirror(vol.config.layout) && !isParity(vol.config.layout)) throw new EngineError('invalid', `volume ${name} is ${vol.config.layout}: replacing an element is supported for raid1, raid10, raid5 and raid6`, `volume ${name}`);
  const role = vol.config.elements.indexOf(oldName);
  if (role < 0) throw new EngineError('not-found', `element ${oldName} is not part of volume ${name}`, `element ${oldName}`, `its elements: ${vol.config.elements.join(', ')}`);
  const fresh = host.registry.element(newName);
  const owner = host.registry.ownerOf(newName);
  if (owner !== undefined) refuse(`element ${newName} is already used by volume ${owner.assembled.config.name}`, `element ${newName}`, 'use a spare or unused element');
  const freshState = host.dataPath.elementState(fresh.index);
  if (freshState !== 'spare') refuse(`element ${newName} is ${freshState}, not a usable spare`, `element ${newName}`);
  if (!canRebuild(vol, role, (n) => host.dataPath.elementState(host.registry.element(n).index))) {
    const hint = isParity(vol.config.layout) ? 'bring back enough of its other elements first' : 'bring back a leg of its mirror first';
    refuse(`volume ${name} has no active copy of ${oldName}'s data to rebuild from`, `volume ${name}`, hint);
  }
  const old = vol.elements.find((e) => e.role === role)!;
  let probe;
  try {
    probe = await inspect(fresh.config);
  } catch (err) {
    if (err instanceof EngineError && err.code !== 'io') throw err;
    throw new EngineError('io', `element ${newName}: cannot read it: ${(err as Error).message}`, fresh.config.uri);
  }
  // With integrity the leg's checksum area comes after its data (meta/layout.ts).
  const area = elementIntegrityArea(vol, old);
  const needBytes = area !== undefined ? area.offsetBytes + area.sizeBytes - DATA_OFFSET_BYTES : old.dataSizeBytes;
  if (probe.sizeBytes - DATA_OFFSET_BYTES < needBytes) {
    throw new EngineError('invalid', `element ${newName} holds ${Math.max(0, probe.sizeBytes - DATA_OFFSET_BYTES)} data bytes; the leg needs ${needBytes}${area !== undefined ? ' (checksums included)' : ''}`, `element ${newName}`, 'use a larger element');
  }
  if (probe.sb instanceof SuperblockError && probe.sb.kind === 'bad-magic') {
    refuse(`element ${newName} holds data that is not a onestack superblock; refusing to overwrite it`, `element ${newName}`, 'zero its first 4 KiB if its data is disposable');
  }
  if (isSuperblock(probe.sb) && probe.sb.volumeName !== name && probe.sb.arrayUuid !== vol.arrayUuid) {
    refuse(`element ${newName} belongs to volume "${probe.sb.volumeName}" (array ${probe.sb.arrayUuid})`, `element ${newName}`, 'delete that volume first, or use another element');
  }
  return { role, old, probe };
}

/** Replaces `oldName` by `newName` in a mirror or raid5/6 volume and queues the full rebuild of the new leg. */
export async function replaceLeg(host: KeeperHost, keeper: MirrorKeeper, volume: string, oldName: string, newName: string, why: string): Promise<void> {
  const entry = host.registry.volumes.get(volume);
  if (entry === undefined) throw new EngineError('not-found', `no volume named ${volume}`, `volume ${volume}`);
  const keep = keeper.keep(volume);
  if (keep === undefined) throw new EngineError('invalid', `volume ${volume} keeps no bitmap`, `volume ${volume}`);
  const { role, old, probe } = await checkReplacement(host, entry, oldName, newName);
  const fresh = host.registry.element(newName);
  const leg: AssembledElement = {
    config: fresh.config, role, state: 'stale', reason: `rebuilding (replaces ${oldName})`, dataSizeBytes: old.dataSizeBytes,
    path: fresh.config.location.kind === 'local' ? fresh.config.location.path : fresh.config.uri, elementUuid: randomUUID(),
    blockSizeBytes: probe.blockSizeBytes, syncedEvents: 0,
  };
  const elements = entry.assembled.config.elements.map((n, r) => (r === role ? newName : n));
  const next: AssembledVolume = { ...entry.assembled, config: { ...entry.assembled.config, elements }, elements: entry.assembled.elements.map((e) => (e.role === role ? leg : e)) };
  // Written before anything changes: a new leg that says "holds nothing" is never trusted by mistake.
  if (!(await markNeedsRebuild(next, role, 0))) throw new EngineError('io', `element ${newName}: cannot write its superblock`, fresh.config.uri);
  await keeper.abortRun(volume, `element ${oldName} replaced`);
  const oldIndex = host.registry.element(oldName).index;
  host.dataPath.setElementState(oldIndex, 'failed'); // no more writes to the old leg
  entry.assembled = next;
  const oldEntry = host.registry.element(oldName);
  oldEntry.idleState = 'failed';
  oldEntry.reason = `replaced by ${newName} in volume ${volume}`;
  fresh.dataSizeBytes = Math.max(fresh.dataSizeBytes, probe.sizeBytes - DATA_OFFSET_BYTES);
  await host.applyTopology();
  await keeper.addTarget(keep, { role, element: fresh.index, name: newName, full: true });
  // The old leg's superblock now lags behind: it can never pass for this volume's current data.
  entry.assembled = await markClean(keeper.withLive(entry.assembled), false);
  host.persist();
  host.log('warn', `volume ${volume}: element ${oldName} replaced by ${newName} (${why}); rebuilding`);
  keeper.kick(keep);
  host.changed();
}

/**
 * A failed leg answered again with `bytes` (its superblock): resync it (partial when the bitmap
 * covers its absence), or, when its mirror group has no active leg left, take it back as it is if
 * it holds the volume's latest event count (docs/durability.md). Throws when it must stay failed.
 */
export async function returnLeg(host: KeeperHost, keeper: MirrorKeeper, keep: Keep, name: string, bytes: Uint8Array): Promise<void> {
  const entry = host.registry.volumes.get(keep.name);
  const role = entry?.assembled.config.elements.indexOf(name) ?? -1;
  const index = host.registry.elements.get(name)?.index ?? -1;
  if (entry === undefined || role < 0 || index < 0 || host.dataPath.elementState(index) !== 'failed') return;
  const vol = entry.assembled;
  let sb: ReadSuperblock;
  try {
    sb = decodeSuperblock(bytes);
  } catch (err) {
    sb = err as SuperblockError;
  }
  if (isSuperblock(sb) && (sb.arrayUuid !== vol.arrayUuid || sb.role !== role)) throw new Error(`it holds role ${sb.role} of array ${sb.arrayUuid}, not role ${role} of ${vol.arrayUuid}`);
  const synced = isSuperblock(sb) ? sb.eventCount : 0;
  const setMember = (e: AssembledElement): AssembledElement => (e.role === role ? { ...e, state: 'stale', reason: 'answers again; resync', syncedEvents: synced } : e);
  const groupActive = canRebuild(vol, role, (n) => keeper.liveState(n));
  if (groupActive) {
    const full = !keeper.covers(keep, synced);
    if (!(await markNeedsRebuild(vol, role, full ? 0 : synced))) throw new Error('cannot mark its superblock for resync');
    if (!(await keeper.addTarget(keep, { role, element: index, name, full }))) throw new Error('it refused its bitmap');
    entry.assembled = { ...vol, elements: vol.elements.map(setMember) };
    host.log('warn', `volume ${keep.name}: element ${name} answers again; ${full ? 'full rebuild (the bitmap does not cover its absence)' : `resync of ${keep.bitmap?.dirtyRegions ?? 0} dirty region(s)`}`);
    keeper.kick(keep);
  } else {
    if (!isSuperblock(sb) || sb.needsRebuild || sb.eventCount < vol.eventCount) {
      throw new Error(`it missed writes (event counter ${synced} < ${vol.eventCount}); waiting for a leg that holds them`);
    }
    const catchUp = keep.bitmap === null ? async () => undefined : await keep.bitmap.seedLeg(index);
    host.dataPath.setElementState(index, 'active');
    await catchUp();
    const back = (e: AssembledElement): AssembledElement => {
      if (e.role !== role) return e;
      const { reason: _reason, syncedEvents: _synced, ...rest } = e;
      return { ...rest, state: 'active' };
    };
    entry.assembled = await markClean(keeper.withLive({ ...vol, elements: vol.elements.map(back) }), false);
    host.log('warn', `volume ${keep.name}: element ${name} answers again and holds the latest data (event counter ${synced}): back in service`);
  }
  host.changed();
}
