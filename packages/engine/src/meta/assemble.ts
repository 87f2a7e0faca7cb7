// Assembly: identify a volume's elements by their superblocks, create a new array on blank
// elements, or reassemble an existing one (marking lagging legs stale). Refuses, touching
// nothing, whenever an element belongs to something else.
import { randomUUID } from 'node:crypto';
import * as fs from 'node:fs/promises';
import { EngineError } from '../api-types.js';
import type { ElementConfig, VolumeConfig } from '../config/types.js';
import { integrityLayoutProblem, layoutCountProblem } from '../config/validate.js';
import type { IntegrityArea } from '../integrity/types.js';
import { localSizeBytes } from './device.js';
import { createSparseFile, readSuperblockFile, writeSuperblockOf, type ReadSuperblock } from './element-io.js';
import { probeRemote } from './remote-io.js';
import { integrityAreaFor, integrityDataBytes, isRedundant, layoutCapacityBytes, layoutSurvives } from './layout.js';
import { encodeSuperblock, SuperblockError, type Superblock } from './superblock.js';
import { agreedSizeBytes } from './grow.js';
import { reconcileReshape } from './reshape-assemble.js';
import { BITMAP_MAX_BYTES, BITMAP_OFFSET_BYTES, DATA_OFFSET_BYTES, type AssembledElement, type AssembledVolume, type ElementState } from './types.js';
import { historyAtAssembly, historyFor, historyVerdict } from './history.js';

export const MIN_ELEMENT_DATA_BYTES = 1024 * 1024;

interface Probe {
  readonly config: ElementConfig;
  readonly role: number;
  readonly path: string;
  readonly sizeBytes: number;
  readonly sb: ReadSuperblock;
  /** Smallest I/O unit the element takes (iSCSI logical block, NBD minimum block size); 1 for local. */
  readonly blockSizeBytes: number;
  /** Set when a remote element could not be reached: it joins a redundant array as failed. */
  readonly unreachable?: string;
}

export interface AssembleOptions {
  /** Allow creating missing files (createSizeBytes) and a new array on all-blank elements. */
  readonly create: boolean;
}

function isSuperblock(sb: ReadSuperblock): sb is Superblock {
  return !(sb instanceof SuperblockError) && !('kind' in sb);
}

function resolveElements(volume: VolumeConfig, elements: ReadonlyMap<string, ElementConfig>): ElementConfig[] {
  const problem = layoutCountProblem(volume.layout, volume.elements.length) ?? (volume.integrity === true ? integrityLayoutProblem(volume.layout) : undefined);
  if (problem !== undefined) throw new EngineError('invalid', `volume ${volume.name}: ${problem}`, `volume ${volume.name}`);
  return volume.elements.map((name) => {
    const config = elements.get(name);
    if (config === undefined) throw new EngineError('not-found', `volume ${volume.name}: element ${name} is not defined`, `element ${name}`, 'add the element first');
    return config;
  });
}

async function probeRemoteElement(config: ElementConfig, role: number): Promise<Probe> {
  try {
    const { info, sb } = await probeRemote(config);
    if (info.sizeBytes < DATA_OFFSET_BYTES + MIN_ELEMENT_DATA_BYTES) {
      throw new EngineError('invalid', `element ${config.name}: ${config.uri} is ${info.sizeBytes} bytes; at least ${DATA_OFFSET_BYTES + MIN_ELEMENT_DATA_BYTES} needed (4 MiB header + 1 MiB data)`, config.uri);
    }
    if (info.readOnly) throw new EngineError('invalid', `element ${config.name}: ${config.uri} is read-only`, config.uri, 'export it writable');
    return { config, role, path: config.uri, sizeBytes: info.sizeBytes, sb, blockSizeBytes: info.blockSizeBytes };
  } catch (err) {
    if (err instanceof EngineError && err.code !== 'io') throw err;
    return { config, role, path: config.uri, sizeBytes: 0, sb: { kind: 'blank' }, blockSizeBytes: 1, unreachable: (err as Error).message };
  }
}

async function probeElement(config: ElementConfig, role: number, create: boolean): Promise<Probe> {
  if (config.location.kind !== 'local') return probeRemoteElement(config, role);
  const file = config.location.path;
  const exists = await fs.stat(file).then(() => true, (err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return false;
    throw new EngineError('io', `element ${config.name}: cannot stat ${file}: ${err.message}`, file);
  });
  if (!exists) {
    if (!create || config.createSizeBytes === undefined) {
      throw new EngineError('not-found', `element ${config.name}: file not found: ${file}`, file,
        'create the file or device, or give the element createSizeBytes so onestack creates a sparse file');
    }
    await createSparseFile(file, DATA_OFFSET_BYTES + config.createSizeBytes).catch((err: Error) => {
      throw new EngineError('io', `element ${config.name}: cannot create ${file}: ${err.message}`, file);
    });
  }
  let sizeBytes: number;
  let sb: ReadSuperblock;
  try {
    sizeBytes = await localSizeBytes(file);
    sb = await readSuperblockFile(file);
  } catch (err) {
    throw new EngineError('io', `element ${config.name}: cannot open ${file}: ${(err as Error).message}`, file, 'it must be a regular file or a block device you may read and write');
  }
  if (sizeBytes < DATA_OFFSET_BYTES + MIN_ELEMENT_DATA_BYTES) {
    throw new EngineError('invalid', `element ${config.name}: ${file} is ${sizeBytes} bytes; at least ${DATA_OFFSET_BYTES + MIN_ELEMENT_DATA_BYTES} needed (4 MiB header + 1 MiB data)`, file);
  }
  return { config, role, path: file, sizeBytes, sb, blockSizeBytes: 1 };
}

/** Refuses elements that hold another volume's superblock or non-onestack data. */
function refuseForeign(volume: VolumeConfig, probes: readonly Probe[]): void {
  for (const p of probes) {
    if (p.sb instanceof SuperblockError && p.sb.kind === 'bad-magic') {
      throw new EngineError('conflict', `element ${p.config.name}: ${p.path} holds data that is not a onestack superblock; refusing to overwrite it`, p.path,
        `if its data is disposable, zero its first 4 KiB: dd if=/dev/zero of=${p.path} bs=4096 count=1 conv=notrunc`);
    }
    if (isSuperblock(p.sb) && p.sb.volumeName !== volume.name) {
      throw new EngineError('conflict', `element ${p.config.name} belongs to volume "${p.sb.volumeName}" (array ${p.sb.arrayUuid}); refusing to use it for volume "${volume.name}"`, p.path,
        `delete volume "${p.sb.volumeName}" first, or use another element`);
    }
  }
}

function chunkRound(bytes: number, chunkBytes: number): number {
  return Math.floor(bytes / chunkBytes) * chunkBytes;
}

/**
 * Superblock flags. `eventCount` overrides the volume's for a leg marked needsRebuild: it then
 * says up to which event the leg holds everything (0 = nothing), which decides between a partial
 * resync from the write-intent bitmap and a full rebuild (docs/durability.md).
 */
export interface SuperblockFlags { readonly clean: boolean; readonly needsRebuild: boolean; readonly eventCount?: number; readonly faulty?: boolean }

/** Mirrors keep a write-intent bitmap in this area of the header (its own header has the geometry: durable/bitmap-codec.ts). */
function bitmapFields(vol: Omit<AssembledVolume, 'elements'>): { bitmapOffsetBytes: number; bitmapSizeBytes: number } {
  const mirror = vol.config.layout === 'raid1' || vol.config.layout === 'raid10';
  return mirror ? { bitmapOffsetBytes: BITMAP_OFFSET_BYTES, bitmapSizeBytes: BITMAP_MAX_BYTES } : { bitmapOffsetBytes: 0, bitmapSizeBytes: 0 };
}

/**
 * Where an element of `vol` keeps its checksums: its own area (from its superblock or creation),
 * else — a leg that joined later (replace, spare) — the area after its data, as at creation.
 */
export function elementIntegrityArea(vol: Pick<AssembledVolume, 'config'>, element: Pick<AssembledElement, 'integrity' | 'dataSizeBytes'>): IntegrityArea | undefined {
  if (vol.config.integrity !== true) return undefined;
  return element.integrity ?? integrityAreaFor(element.dataSizeBytes);
}

/** An element's superblock as `vol` says (a reshape in progress included: meta/reshape-meta.ts). */
export function superblockFor(vol: Omit<AssembledVolume, 'elements'>, element: AssembledElement, flags: SuperblockFlags): Uint8Array {
  return encodeSuperblock({
    arrayUuid: vol.arrayUuid, elementUuid: element.elementUuid ?? randomUUID(), volumeName: vol.config.name, layout: vol.config.layout,
    chunkBytes: vol.config.chunkKiB * 1024, role: element.role, count: vol.config.elements.length,
    dataOffsetBytes: vol.dataOffsetBytes, dataSizeBytes: element.dataSizeBytes, volumeSizeBytes: vol.sizeBytes,
    createdMs: vol.createdMs ?? Date.now(), ...bitmapFields(vol), ...integrityField(elementIntegrityArea(vol, element)), clean: flags.clean, needsRebuild: flags.needsRebuild,
    ...(flags.faulty === true || (flags.needsRebuild && element.faulty === true) ? { faulty: true } : {}),
    eventCount: flags.needsRebuild ? flags.eventCount ?? vol.eventCount : vol.eventCount, ...(vol.reshape !== undefined ? { reshape: vol.reshape } : {}),
    ...(vol.history !== undefined ? { historyId: vol.history.id } : {}),
  });
}

function integrityField(area: IntegrityArea | undefined): { integrity?: IntegrityArea } {
  return area !== undefined ? { integrity: area } : {};
}

async function writeAll(vol: AssembledVolume, targets: readonly AssembledElement[], flags: SuperblockFlags): Promise<void> {
  for (const element of targets) {
    try {
      // A leg marked for rebuild keeps what it holds (its own synced event count) unless told otherwise.
      const own = flags.needsRebuild && flags.eventCount === undefined ? { eventCount: element.syncedEvents ?? vol.eventCount } : {};
      await writeSuperblockOf(element.config, superblockFor(vol, element, { ...flags, ...own }));
    } catch (err) {
      throw new EngineError('io', `element ${element.config.name}: cannot write its superblock: ${(err as Error).message}`, element.path ?? element.config.uri);
    }
  }
}

async function createArray(volume: VolumeConfig, probes: readonly Probe[], opts: AssembleOptions): Promise<AssembledVolume> {
  const gone = probes.find((p) => p.unreachable !== undefined);
  if (gone !== undefined) throw new EngineError('io', gone.unreachable!, gone.path, 'a new array needs every element reachable');
  const damaged = probes.find((p) => p.sb instanceof SuperblockError);
  if (damaged !== undefined) {
    throw new EngineError('conflict', `element ${damaged.config.name}: unreadable superblock (${(damaged.sb as SuperblockError).message}); refusing to create a new array over it`, damaged.path,
      `if it holds nothing you need, zero its first 4 KiB: dd if=/dev/zero of=${damaged.path} bs=4096 count=1 conv=notrunc`);
  }
  if (!opts.create) throw new EngineError('invalid', `volume ${volume.name}: its elements have no superblocks`, `volume ${volume.name}`, 'create the volume first');
  const chunkBytes = volume.chunkKiB * 1024;
  // With integrity the checksum area comes off the end of each element (meta/layout.ts has the geometry).
  const usable = (rawBytes: number): number => (volume.integrity === true ? integrityDataBytes(rawBytes) : rawBytes - DATA_OFFSET_BYTES);
  const own = probes.map((p) => chunkRound(usable(p.sizeBytes), chunkBytes));
  const tiny = own.findIndex((bytes) => bytes === 0);
  if (tiny >= 0) throw new EngineError('invalid', `element ${probes[tiny]?.config.name}: smaller than one ${volume.chunkKiB} KiB chunk`, probes[tiny]?.path);
  const legBytes = volume.layout === 'linear' ? own : own.map(() => Math.min(...own));
  const capacity = layoutCapacityBytes(volume.layout, legBytes, chunkBytes);
  if (volume.sizeBytes !== undefined && volume.sizeBytes > capacity) {
    throw new EngineError('invalid', `volume ${volume.name}: sizeBytes ${volume.sizeBytes} exceeds what its elements hold (${capacity} bytes as ${volume.layout})`, `volume ${volume.name}`, 'use larger elements or a smaller size');
  }
  const vol: AssembledVolume = {
    config: volume, arrayUuid: randomUUID(), sizeBytes: volume.sizeBytes ?? capacity, dataOffsetBytes: DATA_OFFSET_BYTES, eventCount: 1, createdMs: Date.now(), wasClean: true,
    history: historyFor(undefined, volume.elements, 1),
    elements: probes.map((p, i) => ({ config: p.config, role: p.role, state: 'active' as const, dataSizeBytes: legBytes[i] ?? 0, path: p.path, elementUuid: randomUUID(), blockSizeBytes: p.blockSizeBytes,
      ...integrityField(volume.integrity === true ? integrityAreaFor(legBytes[i] ?? 0) : undefined) })),
  };
  await writeAll(vol, vol.elements, { clean: true, needsRebuild: false });
  return vol;
}

/** The freshest up-to-date superblock: highest event counter among those not marked for rebuild. */
function reference(volume: VolumeConfig, members: readonly Probe[]): Superblock {
  let best: Superblock | undefined;
  for (const p of members) {
    const sb = p.sb as Superblock;
    if (!sb.needsRebuild && (best === undefined || sb.eventCount > best.eventCount)) best = sb;
  }
  if (best === undefined) {
    throw new EngineError('invalid', `volume ${volume.name}: no element is up to date (all need a rebuild)`, `volume ${volume.name}`, 'restore an element that holds the current data');
  }
  return best;
}

function checkMember(volume: VolumeConfig, p: Probe, ref: Superblock): void {
  const sb = p.sb as Superblock;
  const where = p.path;
  if (sb.arrayUuid !== ref.arrayUuid) {
    throw new EngineError('conflict', `element ${p.config.name} belongs to another array of volume "${volume.name}" (${sb.arrayUuid}, not ${ref.arrayUuid})`, where, 'use the elements of one array only');
  }
  // raid1 legs hold the same bytes in any role: members added or removed at run time (durable/members.ts)
  // may name another count and role until the survivors' superblocks are rewritten.
  const anyWidth = volume.layout === 'raid1' && sb.layout === 'raid1';
  const configured = `${volume.layout}, ${anyWidth ? sb.count : volume.elements.length} elements, ${volume.chunkKiB} KiB chunks`;
  const onDisk = `${sb.layout}, ${sb.count} elements, ${sb.chunkBytes / 1024} KiB chunks`;
  if (configured !== onDisk) {
    throw new EngineError('conflict', `volume ${volume.name}: element ${p.config.name} says ${onDisk}; the config says ${configured}`, where,
      'an existing volume cannot change its layout: restore the config, or delete the volume and create it again');
  }
  if (sb.role !== p.role && !anyWidth) {
    throw new EngineError('conflict', `volume ${volume.name}: element ${p.config.name} is role ${sb.role} of the array but listed at position ${p.role}`, where, 'list the elements in their original order');
  }
  const end = Math.max(sb.dataOffsetBytes + sb.dataSizeBytes, sb.integrity !== undefined ? sb.integrity.offsetBytes + sb.integrity.sizeBytes : 0);
  if (sb.dataOffsetBytes !== DATA_OFFSET_BYTES || p.sizeBytes < end) {
    throw new EngineError('invalid', `element ${p.config.name}: ${p.sizeBytes} bytes, smaller than its superblock says (${end})`, where, 'was the file truncated?');
  }
  if (!sameArea(sb.integrity, ref.integrity)) {
    throw new EngineError('conflict', `volume ${volume.name}: element ${p.config.name} keeps checksums ${areaText(sb.integrity)}; the freshest element says ${areaText(ref.integrity)}`, where,
      'its superblock does not match the array: replace the element (it is rebuilt with the right area)');
  }
}

function sameArea(a: IntegrityArea | undefined, b: IntegrityArea | undefined): boolean {
  if (a === undefined || b === undefined) return a === b;
  return a.offsetBytes === b.offsetBytes && a.sizeBytes === b.sizeBytes && a.blockBytes === b.blockBytes && a.algo === b.algo;
}

function areaText(a: IntegrityArea | undefined): string {
  return a === undefined ? 'nowhere (no integrity)' : `at ${a.offsetBytes} (${a.sizeBytes} bytes, ${a.blockBytes}-byte blocks, algorithm ${a.algo})`;
}

/** An existing volume keeps the integrity it was created with: the config must say the same. */
function checkIntegrityConfig(volume: VolumeConfig, ref: Superblock): void {
  const onDisk = ref.integrity !== undefined;
  if (onDisk === (volume.integrity === true)) return;
  throw new EngineError('conflict', `volume ${volume.name} was created ${onDisk ? 'with' : 'without'} integrity; the config says integrity: ${volume.integrity === true}`, `volume ${volume.name}`,
    `integrity is chosen at creation: restore integrity: ${onDisk} in the config, or delete the volume and create it again`);
}

/**
 * State of one element given the reference superblock: active, or stale with a reason and the
 * event count up to which it holds everything (syncedEvents: its own counter; 0 when unknown).
 */
function memberState(layout: VolumeConfig['layout'], p: Probe, ref: Superblock): { state: ElementState; reason?: string; syncedEvents?: number; faulty?: true } {
  if (p.unreachable !== undefined) return { state: 'failed', reason: `unreachable at start-up: ${p.unreachable}` };
  if (p.sb instanceof SuperblockError) return { state: 'stale', reason: `unreadable superblock (${p.sb.kind}); needs rebuild`, syncedEvents: 0 };
  if (!isSuperblock(p.sb)) return { state: 'stale', reason: 'blank superblock (new or replaced element); needs rebuild', syncedEvents: 0 };
  if (p.sb.faulty === true) return { state: 'stale', reason: 'failed by request: stays out until replaced', syncedEvents: p.sb.eventCount, faulty: true };
  if (p.sb.needsRebuild) return { state: 'stale', reason: 'marked for rebuild', syncedEvents: p.sb.eventCount };
  if (p.sb.eventCount < ref.eventCount && isRedundant(layout)) return { state: 'stale', reason: `event counter ${p.sb.eventCount} < ${ref.eventCount}`, syncedEvents: p.sb.eventCount };
  // Same counter, another history (rule 6): it took writes the reference never saw; rebuilt in full from it.
  if (p.sb.eventCount === ref.eventCount && historyVerdict(historyAtAssembly(ref, []), p.sb.eventCount, p.sb.historyId) === 'other' && isRedundant(layout)) {
    return { state: 'stale', reason: `history ${p.sb.historyId} differs from ${ref.historyId} at event counter ${ref.eventCount}; needs a full rebuild`, syncedEvents: 0 };
  }
  return { state: 'active' };
}

async function reassemble(volume: VolumeConfig, found: readonly Probe[]): Promise<AssembledVolume> {
  const ref = reference(volume, found.filter((p) => isSuperblock(p.sb)));
  // A reshape in progress (or the crash windows of its start): meta/reshape-assemble.ts.
  const reshape = reconcileReshape(volume, found.map((p) => (isSuperblock(p.sb) ? p.sb : undefined)), ref);
  const probes = found.map((p, i) => ({ ...p, sb: reshape.effective[i] ?? p.sb }));
  const members = probes.filter((p) => isSuperblock(p.sb));
  checkIntegrityConfig(volume, ref);
  for (const p of members) checkMember(volume, p, ref);
  // A grow cut short leaves some superblocks at the old size: it wins (meta/grow.ts).
  const sizeBytes = agreedSizeBytes(members.map((p) => p.sb as Superblock), ref);
  if (volume.sizeBytes !== undefined && volume.sizeBytes !== sizeBytes) {
    throw new EngineError('conflict', `volume ${volume.name} is ${sizeBytes} bytes on its elements; the config asks for ${volume.sizeBytes}`, `volume ${volume.name}`, 'set sizeBytes to the size on the elements, or remove it (grow with `onestack volume grow`)');
  }
  const legBytes = Math.min(...members.map((p) => (p.sb as Superblock).dataSizeBytes));
  const elements: AssembledElement[] = probes.map((p) => {
    const { state, reason, syncedEvents, faulty } = memberState(volume.layout, p, ref);
    if (state !== 'active' && !isRedundant(volume.layout)) {
      throw new EngineError('invalid', `volume ${volume.name} (${volume.layout}) cannot be assembled: element ${p.config.name}: ${reason}`, p.path, 'a non-redundant volume needs every element intact');
    }
    const own = isSuperblock(p.sb) ? p.sb : undefined;
    const area = own?.integrity ?? (ref.integrity !== undefined ? integrityAreaFor(legBytes) : undefined);
    const needBytes = area !== undefined ? area.offsetBytes + area.sizeBytes - DATA_OFFSET_BYTES : legBytes;
    if (state === 'stale' && p.sizeBytes - DATA_OFFSET_BYTES < needBytes) {
      throw new EngineError('invalid', `element ${p.config.name}: too small to rejoin volume ${volume.name} (needs ${needBytes} bytes after the header${area !== undefined ? ', checksums included' : ''})`, p.path);
    }
    return { config: p.config, role: p.role, state, dataSizeBytes: own?.dataSizeBytes ?? legBytes, path: p.path,
      elementUuid: own?.elementUuid ?? randomUUID(), blockSizeBytes: p.blockSizeBytes, ...(reason !== undefined ? { reason } : {}),
      ...(syncedEvents !== undefined ? { syncedEvents } : {}), ...(faulty === true ? { faulty } : {}), ...integrityField(area) };
  });
  if (!layoutSurvives(volume.layout, elements.map((e) => e.state))) {
    throw new EngineError('invalid', `volume ${volume.name}: too many stale elements to assemble ${volume.layout}`, `volume ${volume.name}`);
  }
  if (reshape.record !== undefined && reshape.record.fromSizeBytes !== sizeBytes) {
    throw new EngineError('conflict', `volume ${volume.name}: its reshape record says ${reshape.record.fromSizeBytes} bytes, its superblocks ${sizeBytes}`, `volume ${volume.name}`, 'restore the elements as they were');
  }
  const history = historyAtAssembly(ref, volume.elements);
  const vol: AssembledVolume = { config: volume, arrayUuid: ref.arrayUuid, sizeBytes, dataOffsetBytes: DATA_OFFSET_BYTES, eventCount: ref.eventCount, createdMs: ref.createdMs, wasClean: ref.clean, elements,
    ...(reshape.record !== undefined ? { reshape: reshape.record } : {}), ...(history !== undefined ? { history } : {}) };
  // A stale leg is marked so it can never pass for up to date later (e.g. if the good leg vanishes).
  const unmarked = elements.filter((e, i) => e.state === 'stale' && !(isSuperblock(found[i]!.sb) && (found[i]!.sb as Superblock).needsRebuild));
  await writeAll(vol, unmarked, { clean: false, needsRebuild: true });
  return vol;
}

/** Identifies the elements of `volume` by their superblocks; creates the array if all are blank. */
export async function assembleVolume(volume: VolumeConfig, elements: ReadonlyMap<string, ElementConfig>, opts: AssembleOptions): Promise<AssembledVolume> {
  const configs = resolveElements(volume, elements);
  const probes: Probe[] = [];
  for (const [role, config] of configs.entries()) probes.push(await probeElement(config, role, opts.create));
  refuseForeign(volume, probes);
  if (!probes.some((p) => isSuperblock(p.sb))) return createArray(volume, probes, opts);
  const ordered = orderByRole(volume, probes);
  return reassemble(ordered.volume, ordered.probes);
}

/**
 * Elements may be listed in any order: each member goes to the role its superblock names, and
 * elements without one (blank, unreadable, unreachable) fill the free roles in listed order. A
 * clash (two superblocks claiming one role) is left for checkMember to refuse by name.
 */
function orderByRole(volume: VolumeConfig, probes: readonly Probe[]): { volume: VolumeConfig; probes: Probe[] } {
  const n = probes.length;
  const slots: (Probe | undefined)[] = new Array<Probe | undefined>(n);
  const rest: Probe[] = [];
  for (const p of probes) {
    const role = isSuperblock(p.sb) ? p.sb.role : -1;
    if (role >= 0 && role < n && slots[role] === undefined) slots[role] = p;
    else rest.push(p);
  }
  for (let role = 0; role < n; role++) if (slots[role] === undefined) slots[role] = rest.shift();
  const ordered = slots.map((p, role) => ({ ...p!, role }));
  if (rest.length !== 0 || ordered.length !== n) throw new Error('orderByRole: lost an element');
  return { volume: { ...volume, elements: ordered.map((p) => p.config.name) }, probes: ordered };
}

/**
 * Bumps the event counter and rewrites the superblocks of active elements (open: dirty, close:
 * clean). With no active element nothing is written and the counter stays: the legs that failed
 * last keep the volume's count, which is how one of them is recognised when it answers again.
 */
export async function markClean(vol: AssembledVolume, clean: boolean): Promise<AssembledVolume> {
  if (!vol.elements.some((e) => e.state === 'active')) return vol;
  // A new history id when the set of active legs changed since the last one (meta/history.ts).
  const next: AssembledVolume = { ...vol, eventCount: vol.eventCount + 1, history: historyFor(vol.history, vol.elements.filter((e) => e.state === 'active').map((e) => e.config.name), vol.eventCount + 1) };
  await writeAll(next, next.elements.filter((e) => e.state === 'active'), { clean, needsRebuild: false });
  return next;
}

/**
 * Marks one element as needing a rebuild (best effort: a failed element may not be writable).
 * `syncedEvents`: up to which event it holds everything (default: the volume's count now).
 */
export async function markNeedsRebuild(vol: AssembledVolume, role: number, syncedEvents = vol.eventCount, opts: { faulty?: boolean } = {}): Promise<boolean> {
  const element = vol.elements.find((e) => e.role === role);
  if (element === undefined) return false;
  try {
    await writeAll(vol, [element], { clean: false, needsRebuild: true, eventCount: syncedEvents, faulty: opts.faulty === true });
    return true;
  } catch {
    return false;
  }
}

/** Rewrites the active elements' superblocks as `vol` says, event counter unchanged (volume grow: the order is in volume-grow.ts). */
export async function rewriteActive(vol: AssembledVolume): Promise<void> {
  await writeAll(vol, vol.elements.filter((e) => e.state === 'active'), { clean: false, needsRebuild: false });
}
