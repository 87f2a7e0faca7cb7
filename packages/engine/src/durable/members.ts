// Changing a raid1's membership while it serves (Engine.addMember / removeMember, `onestack volume
// add-member | remove-member`). A new leg is appended (role n), gets a superblock "needs rebuild,
// holds nothing" first, takes every write as rebuilding and is copied in full by the keeper (as a
// replacement is, replace.ts). A removed leg gets a faulty "holds nothing" superblock first, so it
// can never pass for current; the survivors are renumbered and their superblocks move on.
// raid1 legs hold the same bytes whatever their role, so assembly takes a raid1 member whatever
// role and member count its superblock names (meta/assemble.ts): a crash between the superblock
// writes and the state file leaves a volume that assembles with the members the state names.
// Every function here runs inside the engine's exclusive() (one control operation at a time).
import { randomUUID } from 'node:crypto';
import { EngineError } from '../api-types.js';
import type { ElementConfig, Layout } from '../config/types.js';
import { MAX_ELEMENTS_PER_VOLUME } from '../config/validate.js';
import { elementIntegrityArea, markClean, markNeedsRebuild } from '../meta/assemble.js';
import { localSizeBytes } from '../meta/device.js';
import { readSuperblockFile, type ReadSuperblock } from '../meta/element-io.js';
import { probeRemote } from '../meta/remote-io.js';
import { SuperblockError } from '../meta/superblock.js';
import { DATA_OFFSET_BYTES, type AssembledElement, type AssembledVolume } from '../meta/types.js';
import type { VolumeEntry } from '../state/registry.js';
import type { KeeperHost } from './host.js';
import type { Keep, MirrorKeeper } from './keeper.js';
import type { RecoveryTarget } from './recovery.js';

/** What to use instead, for layouts whose membership cannot change yet (restriping comes later). */
const INSTEAD: Readonly<Record<Exclude<Layout, 'raid1'>, string>> = {
  raid10: 'a raid10 gains mirror pairs by a reshape: `onestack volume reshape NAME --add E1,E2` (two elements per pair); swap one with `onestack element replace OLD NEW`',
  raid5: 'a raid5 gains elements by a reshape: `onestack volume reshape NAME --add ELEMENT` (or --layout raid6); swap one with `onestack element replace OLD NEW`',
  raid6: 'a raid6 gains elements by a reshape: `onestack volume reshape NAME --add ELEMENT`; swap one with `onestack element replace OLD NEW`',
  raid0: 'raid0 has no copies to add; it gains elements by a reshape: `onestack volume reshape NAME --add ELEMENT`',
  linear: 'linear has no copies to add; append an element with `onestack volume reshape NAME --add ELEMENT`',
};

function volumeOf(host: KeeperHost, volume: string, what: 'add' | 'remove'): VolumeEntry {
  const entry = host.registry.volumes.get(volume);
  if (entry === undefined) throw new EngineError('not-found', `no volume named ${volume}`, `volume ${volume}`, 'list volumes with `onestack volume list`');
  const layout = entry.assembled.config.layout;
  if (layout !== 'raid1') {
    throw new EngineError('invalid', `volume ${volume} is ${layout}: only a raid1 can ${what} a member (a mirror leg)`, `volume ${volume}`, INSTEAD[layout]);
  }
  return entry;
}

function refuse(message: string, where: string, hint?: string): never {
  throw new EngineError('conflict', message, where, hint);
}

/** Reads an element's superblock and size (local file or remote, fresh connection). */
export async function inspect(config: ElementConfig): Promise<{ sb: ReadSuperblock; sizeBytes: number; blockSizeBytes: number }> {
  try {
    if (config.location.kind !== 'local') {
      const { info, sb } = await probeRemote(config);
      if (info.readOnly) throw new EngineError('invalid', `element ${config.name}: ${config.uri} is read-only`, config.uri, 'export it writable');
      return { sb, sizeBytes: info.sizeBytes, blockSizeBytes: info.blockSizeBytes };
    }
    return { sb: await readSuperblockFile(config.location.path), sizeBytes: await localSizeBytes(config.location.path), blockSizeBytes: 1 };
  } catch (err) {
    if (err instanceof EngineError && err.code !== 'io') throw err;
    throw new EngineError('io', `element ${config.name}: cannot read it: ${(err as Error).message}`, config.uri);
  }
}

/** The checks replace does (unused, spare, large enough, no foreign data), against an active leg as template. */
async function checkNewLeg(host: KeeperHost, vol: AssembledVolume, name: string): Promise<{ template: AssembledElement; probe: Awaited<ReturnType<typeof inspect>> }> {
  const volume = vol.config.name;
  const fresh = host.registry.element(name);
  const owner = host.registry.ownerOf(name);
  if (owner !== undefined) {
    refuse(owner.assembled.config.name === volume ? `element ${name} is already a member of volume ${volume}` : `element ${name} is already used by volume ${owner.assembled.config.name}`,
      `element ${name}`, 'use a spare or unused element (onestack element list)');
  }
  const state = host.dataPath.elementState(fresh.index);
  if (state !== 'spare') refuse(`element ${name} is ${state}, not a usable spare`, `element ${name}`, 'add a new element (onestack element add URI)');
  if (vol.config.elements.length >= MAX_ELEMENTS_PER_VOLUME) refuse(`volume ${volume} has ${vol.config.elements.length} legs, the most a volume may have`, `volume ${volume}`);
  const live = (e: AssembledElement): string => host.dataPath.elementState(host.registry.element(e.config.name).index);
  const template = vol.elements.find((e) => live(e) === 'active');
  if (template === undefined) refuse(`volume ${volume} has no active leg to copy the new one from`, `volume ${volume}`, 'bring back or rebuild a leg first');
  const probe = await inspect(fresh.config);
  const area = elementIntegrityArea(vol, template);
  const needBytes = area !== undefined ? area.offsetBytes + area.sizeBytes - DATA_OFFSET_BYTES : template.dataSizeBytes;
  if (probe.sizeBytes - DATA_OFFSET_BYTES < needBytes) {
    throw new EngineError('invalid', `element ${name} holds ${Math.max(0, probe.sizeBytes - DATA_OFFSET_BYTES)} data bytes; a leg of volume ${volume} needs ${needBytes}${area !== undefined ? ' (checksums included)' : ''}`,
      `element ${name}`, 'use a larger element');
  }
  if (probe.sb instanceof SuperblockError && probe.sb.kind === 'bad-magic') {
    refuse(`element ${name} holds data that is not a onestack superblock; refusing to overwrite it`, `element ${name}`, 'zero its first 4 KiB if its data is disposable');
  }
  if (!(probe.sb instanceof SuperblockError) && !('kind' in probe.sb) && probe.sb.volumeName !== volume && probe.sb.arrayUuid !== vol.arrayUuid) {
    refuse(`element ${name} belongs to volume "${probe.sb.volumeName}" (array ${probe.sb.arrayUuid})`, `element ${name}`, 'delete that volume first, or use another element');
  }
  return { template, probe };
}

/** Adds `name` to raid1 `volume` as a new leg and queues its full rebuild; resolves once it takes writes. */
export async function addMember(host: KeeperHost, keeper: MirrorKeeper, volume: string, name: string): Promise<void> {
  const entry = volumeOf(host, volume, 'add');
  const keep = keeper.keep(volume);
  if (keep === undefined) throw new EngineError('invalid', `volume ${volume} keeps no bitmap`, `volume ${volume}`);
  const vol = entry.assembled;
  const { template, probe } = await checkNewLeg(host, vol, name);
  const fresh = host.registry.element(name);
  const role = vol.config.elements.length;
  const area = elementIntegrityArea(vol, template);
  const leg: AssembledElement = {
    config: fresh.config, role, state: 'stale', reason: 'rebuilding (added)', dataSizeBytes: template.dataSizeBytes,
    path: fresh.config.location.kind === 'local' ? fresh.config.location.path : fresh.config.uri, elementUuid: randomUUID(),
    blockSizeBytes: probe.blockSizeBytes, syncedEvents: 0, ...(area !== undefined ? { integrity: area } : {}),
  };
  const spares = vol.config.spares?.filter((s) => s !== name);
  const config = { ...vol.config, elements: [...vol.config.elements, name], ...(spares !== undefined ? { spares } : {}) };
  const next: AssembledVolume = { ...vol, config, elements: [...vol.elements, leg] };
  if (next.elements.length !== config.elements.length) throw new Error('addMember: members and roles disagree');
  // Written before anything changes: a new leg that says "holds nothing" is never trusted by mistake.
  if (!(await markNeedsRebuild(next, role, 0))) throw new EngineError('io', `element ${name}: cannot write its superblock`, fresh.config.uri);
  entry.assembled = next;
  fresh.dataSizeBytes = Math.max(fresh.dataSizeBytes, probe.sizeBytes - DATA_OFFSET_BYTES);
  try {
    await host.applyTopology();
  } catch (err) {
    entry.assembled = vol;
    await host.applyTopology().catch(() => undefined);
    throw err;
  }
  await keeper.addTarget(keep, { role, element: fresh.index, name, full: true });
  // The other legs record the new width (event counter + 1): a restart assembles every leg.
  entry.assembled = await markClean(keeper.withLive(entry.assembled), false);
  host.persist();
  host.log('warn', `volume ${volume}: element ${name} added as leg ${role + 1} of ${role + 1}; rebuilding`);
  keeper.kick(keep);
  host.changed();
}

/** Removes leg `name` from raid1 `volume` (3+ legs, at least 2 active left); it becomes an idle spare (failed if it had failed). */
export async function removeMember(host: KeeperHost, keeper: MirrorKeeper, volume: string, name: string): Promise<void> {
  const entry = volumeOf(host, volume, 'remove');
  const vol = entry.assembled;
  const role = vol.config.elements.indexOf(name);
  if (role < 0) throw new EngineError('not-found', `element ${name} is not a member of volume ${volume}`, `element ${name}`, `its members: ${vol.config.elements.join(', ')}`);
  const n = vol.config.elements.length;
  if (n <= 2) refuse(`volume ${volume} has ${n} legs; a raid1 keeps at least 2`, `volume ${volume}`, 'add a member first, or swap this one with `onestack element replace OLD NEW`');
  const index = host.registry.element(name).index;
  const active = vol.config.elements.filter((m) => m !== name && keeper.liveState(m) === 'active');
  if (keeper.liveState(name) === 'active' && active.length === 0) refuse(`element ${name} is the only active leg of volume ${volume}`, `element ${name}`, 'wait for the rebuild of another leg');
  if (active.length < 2) {
    refuse(`removing element ${name} would leave volume ${volume} with ${active.length} active leg${active.length === 1 ? '' : 's'}; at least 2 must stay`, `element ${name}`,
      'wait for the rebuild of the other legs, or remove a leg that is not active');
  }
  // A leg that failed stays failed once out (never picked as a spare); a healthy one becomes a spare.
  const idle = keeper.liveState(name) === 'failed' ? 'failed' : 'spare';
  // A copy in flight names legs by role: stop it, renumber its targets, start again afterwards.
  const keep = keeper.keep(volume);
  const targets = keep === undefined ? [] : [...(keep.run?.targets ?? []), ...keep.pending.values()];
  await keeper.abortRun(volume, `element ${name} removed`);
  await host.stopScrub(volume); // a scrub compares the legs it started with
  // The leg says "faulty, holds nothing" before it leaves: it can never assemble back as current.
  if (!(await markNeedsRebuild(vol, role, 0, { faulty: true }))) host.log('warn', `volume ${volume}: element ${name}: could not mark its superblock as removed (unreachable?)`);
  host.dataPath.setElementState(index, idle); // no more writes to it
  const renumber = (r: number): number => (r > role ? r - 1 : r);
  entry.assembled = {
    ...vol, config: { ...vol.config, elements: vol.config.elements.filter((m) => m !== name) },
    elements: vol.elements.filter((e) => e.role !== role).map((e) => ({ ...e, role: renumber(e.role) })),
  };
  if (!entry.assembled.elements.every((e) => entry.assembled.config.elements[e.role] === e.config.name)) throw new Error('removeMember: roles out of order');
  await host.applyTopology();
  const element = host.registry.element(name);
  element.idleState = idle;
  if (idle === 'failed') element.reason = `removed from volume ${volume} after it failed`;
  else delete element.reason;
  host.integrityOf?.(volume)?.store.forget(index); // its cached checksum pages go with it
  if (keep !== undefined) requeue(keep, targets, name, renumber);
  // The survivors record the new width and roles (event counter + 1).
  entry.assembled = await markClean(keeper.withLive(entry.assembled), false);
  host.persist();
  host.log('warn', `volume ${volume}: element ${name} removed; ${n - 1} legs left`);
  if (keep !== undefined) keeper.kick(keep);
  host.changed();
}

/** The copy targets that were running or waiting, under their new roles (the finish step of the aborted run kicks them). */
function requeue(keep: Keep, targets: readonly RecoveryTarget[], removed: string, renumber: (r: number) => number): void {
  keep.pending.clear();
  for (const t of targets) if (t.name !== removed) keep.pending.set(renumber(t.role), { ...t, role: renumber(t.role) });
}
