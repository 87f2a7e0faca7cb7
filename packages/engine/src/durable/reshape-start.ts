// Online reshape, the start (Engine.reshapeVolume, `onestack volume reshape`; docs/reshape.md):
// what must hold first, the new elements' checks, and the switch into the reshaping state:
//   1. a raid1/raid10 drops its write-intent bitmap (its area becomes the backup area) under a fence
//      with nothing in flight, so nothing is dirty;
//   2. the volume is paused; a raid5/6 journal is checkpointed, and the journal headers of the
//      two halves (old view: low, new view: high) get that checkpoint on every element, so no
//      view ever replays a record of the journal as it was;
//   3. every superblock gets the NEW geometry, the new members and the reshape record at
//      position 0 (volume size still C0);
//   4. the topology gets the two views (registry.ts), the volume resumes, the job starts.
// Linear appends its new elements at once (no data moves): reshape-finish.ts appendLinear.
// The jobs of the engine (status, refusals while one runs, resume, retries): reshape-jobs.ts.
import { randomUUID } from 'node:crypto';
import { EngineError } from '../api-types.js';
import type { ElementConfig, Layout } from '../config/types.js';
import { MAX_ELEMENTS_PER_VOLUME } from '../config/validate.js';
import { encodeJournalHeader, arrayIdBytes, JOURNAL_BLOCK_BYTES } from '../datapath/journal-format.js';
import { JOURNAL_AREAS } from '../datapath/journal-area.js';
import { markClean } from '../meta/assemble.js';
import { startReshapeSuperblocks } from '../meta/reshape-meta.js';
import { geometryCapacity, reshapeFeatureRefusal, reshapeRefusal, type ReshapeGeometry } from '../meta/reshape-plan.js';
import { SuperblockError } from '../meta/superblock.js';
import { DATA_OFFSET_BYTES, type AssembledElement, type AssembledVolume } from '../meta/types.js';
import type { VolumeEntry } from '../state/registry.js';
import { inspect } from './members.js';
import type { ReshapeHost } from './reshape.js';
import { appendLinear } from './reshape-finish.js';

export interface ReshapeSpec {
  /** Unused elements that join, in role order after the present ones. */
  readonly add: readonly string[];
  /** The new layout (default: the same; a raid1 becomes raid5). */
  readonly layout?: Layout;
  /** Copy rate limit (default: config rebuild.maxMiBPerSec), kept across restarts. */
  readonly maxMiBPerSec?: number;
  /** Starts a paused job again at once (no add, no layout; reshape-jobs.ts). */
  readonly resume?: boolean;
}

const isParity = (layout: Layout): boolean => layout === 'raid5' || layout === 'raid6';

function refuse(name: string, message: string, hint?: string): EngineError {
  return new EngineError('conflict', `volume ${name}: ${message}`, `volume ${name}`, hint);
}

function unsupported(name: string, message: string): EngineError {
  return new EngineError('invalid', `volume ${name}: ${message}`, `volume ${name}`);
}

/** A new member: unused, spare, no foreign data; its usable data bytes (rounded down to a chunk). */
async function checkNewElement(host: ReshapeHost, vol: AssembledVolume, name: string): Promise<{ config: ElementConfig; dataBytes: number; blockSizeBytes: number }> {
  const volume = vol.config.name;
  const entry = host.registry.element(name);
  const owner = host.registry.ownerOf(name);
  if (owner !== undefined) {
    throw refuse(volume, owner.assembled.config.name === volume ? `element ${name} is already a member` : `element ${name} is used by volume ${owner.assembled.config.name}`, 'use an unused element (onestack element list)');
  }
  const state = host.dataPath.elementState(entry.index);
  if (state !== 'spare') throw refuse(volume, `element ${name} is ${state}, not an unused element`, 'add a new element (onestack element add URI)');
  const probe = await inspect(entry.config);
  if (probe.sb instanceof SuperblockError && probe.sb.kind === 'bad-magic') {
    throw refuse(volume, `element ${name} holds data that is not a onestack superblock; refusing to overwrite it`, 'zero its first 4 KiB if its data is disposable');
  }
  if (!(probe.sb instanceof SuperblockError) && !('kind' in probe.sb) && probe.sb.arrayUuid !== vol.arrayUuid && probe.sb.volumeName !== volume) {
    throw refuse(volume, `element ${name} belongs to volume "${probe.sb.volumeName}" (array ${probe.sb.arrayUuid})`, 'delete that volume first, or use another element');
  }
  const chunk = vol.config.chunkKiB * 1024;
  const dataBytes = Math.floor(Math.max(0, probe.sizeBytes - DATA_OFFSET_BYTES) / chunk) * chunk;
  if (dataBytes === 0) throw unsupported(volume, `element ${name} is smaller than one ${vol.config.chunkKiB} KiB chunk after the 4 MiB header`);
  return { config: entry.config, dataBytes, blockSizeBytes: probe.blockSizeBytes };
}

/** What must hold before a reshape: supported, optimal, nothing else running on it. */
function checkVolume(host: ReshapeHost, entry: VolumeEntry, running: boolean): void {
  const vol = entry.assembled;
  const name = vol.config.name;
  if (running || vol.reshape !== undefined) throw refuse(name, 'a reshape runs already', 'follow it with onestack status');
  const feature = reshapeFeatureRefusal({ integrity: vol.config.integrity === true, checkpoints: host.ckpts.list(name, true).length > 0, writeBehind: vol.config.writeBehind !== undefined });
  if (feature !== null) throw unsupported(name, feature);
  if (!entry.runtime && vol.config.sizeBytes !== undefined) throw refuse(name, `the config file fixes its size (sizeBytes: ${vol.config.sizeBytes})`, 'remove sizeBytes from the config file and restart, then reshape');
  for (const e of vol.elements) {
    const live = host.dataPath.elementState(host.registry.element(e.config.name).index);
    if (e.state !== 'active' || live !== 'active') throw refuse(name, `element ${e.config.name} is ${live === 'active' ? e.state : live}; a reshape needs the volume optimal (every element active)`, 'wait for the rebuild, or replace the element');
  }
  const keep = host.keeper.keep(name);
  if (keep !== undefined && (keep.run !== null || keep.pending.size > 0)) throw refuse(name, 'a resync or rebuild runs', 'reshape when it is done');
  if (host.scrubs.isRunning(name)) throw refuse(name, 'a scrub runs', 'wait for it, or cancel it (onestack volume scrub NAME --cancel)');
}

/** Checks everything, then switches the volume into the reshaping state (or appends linear elements at once). */
export async function startReshape(host: ReshapeHost, entry: VolumeEntry, spec: ReshapeSpec, running: boolean): Promise<'copy' | 'done'> {
  checkVolume(host, entry, running);
  const vol = entry.assembled;
  const name = vol.config.name;
  if (spec.add.length === 0 && (spec.layout === undefined ? vol.config.layout !== 'raid1' : spec.layout === vol.config.layout)) throw unsupported(name, 'name at least one element to add (or another layout)');
  if (new Set(spec.add).size !== spec.add.length) throw unsupported(name, 'an element is named twice');
  if (vol.elements.length + spec.add.length > MAX_ELEMENTS_PER_VOLUME) throw unsupported(name, `a volume has at most ${MAX_ELEMENTS_PER_VOLUME} elements`);
  const fresh: Awaited<ReturnType<typeof checkNewElement>>[] = [];
  for (const e of spec.add) fresh.push(await checkNewElement(host, vol, e));
  const chunkBytes = vol.config.chunkKiB * 1024;
  const dataSizeBytes = Math.min(...vol.elements.map((e) => e.dataSizeBytes));
  const layout = spec.layout ?? (vol.config.layout === 'raid1' ? 'raid5' : vol.config.layout);
  const from: ReshapeGeometry = { layout: vol.config.layout, count: vol.elements.length, chunkBytes, dataSizeBytes, sizeBytes: vol.sizeBytes };
  const to: ReshapeGeometry = { layout, count: from.count + fresh.length, chunkBytes, dataSizeBytes: Math.min(dataSizeBytes, ...fresh.map((f) => f.dataBytes)) };
  const refusal = reshapeRefusal(from, to);
  if (refusal !== null) throw unsupported(name, refusal);
  const joined = (f: (typeof fresh)[number], i: number, size: number): AssembledElement => ({
    config: f.config, role: from.count + i, state: 'active', dataSizeBytes: size, elementUuid: randomUUID(), blockSizeBytes: f.blockSizeBytes,
    path: f.config.location.kind === 'local' ? f.config.location.path : f.config.uri,
  });
  if (from.layout === 'linear') {
    await appendLinear(host, entry, fresh.map((f, i) => joined(f, i, f.dataBytes)));
    return 'done';
  }
  const toSizeBytes = geometryCapacity({ ...to, dataSizeBytes });
  const next: AssembledVolume = {
    ...vol, config: withoutSize({ ...vol.config, layout, elements: [...vol.config.elements, ...spec.add] }),
    elements: [...vol.elements, ...fresh.map((f, i) => joined(f, i, dataSizeBytes))],
    reshape: { fromLayout: from.layout, fromCount: from.count, fromChunkBytes: chunkBytes, fromSizeBytes: vol.sizeBytes, toSizeBytes, positionBytes: 0, startedMs: Date.now() },
  };
  await switchToReshape(host, entry, next);
  host.log('info', `volume ${name}: reshape ${from.layout}×${from.count} → ${layout}×${to.count} started (${vol.sizeBytes} → ${toSizeBytes} bytes)`);
  return 'copy';
}

/** A run-time volume's sizeBytes only mattered at creation; the superblocks say the size from now on. */
function withoutSize(config: AssembledVolume['config']): AssembledVolume['config'] {
  const { sizeBytes: _created, ...rest } = config;
  return rest;
}

/** Steps 1 to 4 of the header comment. */
async function switchToReshape(host: ReshapeHost, entry: VolumeEntry, next: AssembledVolume): Promise<void> {
  const vol = entry.assembled;
  const name = vol.config.name;
  const io = entry.handle.io;
  // raid1/raid10: the bitmap's area becomes the backup area; with writes fenced and flushed nothing is dirty.
  if (vol.config.layout === 'raid1' || vol.config.layout === 'raid10') {
    const lift = await io.gate.fence(0, Number.MAX_SAFE_INTEGER);
    try {
      await io.flush();
      await host.keeper.detach(name, io);
    } finally {
      lift();
    }
  } else {
    await host.keeper.detach(name, io);
  }
  await io.flush();
  const resume = await host.dataPath.pauseVolume(entry.index);
  let switched = false;
  try {
    // Paused: what clients wrote since the flush above goes down too (raw: the pause holds volume requests).
    for (const member of vol.config.elements) await host.dataPath.raw.flush(host.registry.element(member).index);
    const seq = isParity(vol.config.layout) ? await host.dataPath.checkpointJournal(entry.index) : 1;
    await writeJournalHeaders(host, next, seq);
    // New members first, then the old ones (the crash windows meta/reshape-assemble.ts judges).
    const joined = next.elements.slice(vol.elements.length).map((e) => e.config.name);
    const failed = await startReshapeSuperblocks(next, next.reshape!, joined);
    if (failed.length > 0) throw new EngineError('io', `volume ${name}: cannot write the superblock of ${failed.map((f) => `${f.element} (${f.message})`).join(', ')}; the reshape did not start`, `volume ${name}`);
    entry.assembled = next;
    switched = true;
    await host.applyTopology();
    // The data path keeps a known element's live state (spare): the new members take I/O from now on.
    for (const name of joined) host.dataPath.setElementState(host.registry.element(name).index, 'active');
  } catch (err) {
    // Before the superblocks name the reshape nothing changed on disk that the old volume reads.
    if (switched) await rollBack(host, entry, vol, err);
    else await host.keeper.attach(entry).catch(() => undefined);
    throw err;
  } finally {
    resume();
  }
  await host.keeper.attach(entry);
  host.persist();
}

/**
 * The superblocks name the reshape but the data path refused its views: nothing has moved yet
 * (position 0), so the old members go back to the old geometry (event counter + 1, so their
 * superblocks outrank the reshape's) and the engine serves the volume as before. The new members
 * keep a record of a start that never ran; assembly treats such leftovers as free
 * (meta/reshape-assemble.ts isLeftoverOfStart), so they can be used again.
 */
async function rollBack(host: ReshapeHost, entry: VolumeEntry, vol: AssembledVolume, cause: unknown): Promise<void> {
  entry.assembled = vol;
  try {
    entry.assembled = await markClean(host.keeper.withLive(vol), false);
    await host.applyTopology();
    await host.keeper.attach(entry);
    host.log('error', `volume ${vol.config.name}: the reshape could not start (${(cause as Error).message}); back to ${vol.config.layout} of ${vol.elements.length}`);
  } catch (err) {
    host.log('error', `volume ${vol.config.name}: the reshape could not start, and going back failed too: ${(err as Error).message}; a restart assembles it from its superblocks`);
  }
}

/**
 * Checkpoint `seq` in the journal headers of both halves on every new member: the old view (low)
 * keeps the full journal's header block, so its checkpoint is the one just written; the new view
 * (high) starts inside the old ring, whose records must never replay into the new geometry.
 */
async function writeJournalHeaders(host: ReshapeHost, next: AssembledVolume, seq: number): Promise<void> {
  if (!isParity(next.config.layout)) return;
  const block = new Uint8Array(JOURNAL_BLOCK_BYTES);
  encodeJournalHeader(block, { arrayId: arrayIdBytes(next.arrayUuid), checkpointSeq: seq });
  const raw = host.dataPath.raw;
  const oldRaid1 = next.reshape?.fromLayout === 'raid1';
  for (const [role, member] of next.config.elements.entries()) {
    const element = host.registry.element(member).index;
    await raw.write(element, JOURNAL_AREAS.high.headerOffsetBytes, block, { fua: true });
    // A raid1 never had a journal: its old view (raid5 over roles 0 and 1) starts one at `seq`.
    if (oldRaid1 && role < 2) await raw.write(element, JOURNAL_AREAS.low.headerOffsetBytes, block, { fua: true });
    await raw.flush(element);
  }
}
