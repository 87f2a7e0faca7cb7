// Online reshape, the end (docs/reshape.md): once the copy reached C0, the new rows past it are
// zeroed (so their parity, zero, is valid and new bytes read as zeroes), then FINISH: the volume
// is paused, both journals are checkpointed, the full journal area's header gets a checkpoint
// above both on every element, the superblocks get the new geometry with no reshape record and
// size C1 (event counter + 1), and the topology becomes one volume again. The NBD export's size
// follows (RESIZE clients at once, others on their next handshake).
// Also here: linear + elements, which moves no data and takes the new size at once.
import type { Layout } from '../config/types.js';
import { EngineError } from '../api-types.js';
import { markClean } from '../meta/assemble.js';
import { startReshapeSuperblocks, withReshapeRecord, writeReshapeRecord } from '../meta/reshape-meta.js';
import { dataChunksPerRow, geometryCapacity } from '../meta/reshape-plan.js';
import { layoutCapacityBytes } from '../meta/layout.js';
import { DATA_OFFSET_BYTES, type AssembledElement, type AssembledVolume, type ReshapeRecord } from '../meta/types.js';
import type { VolumeEntry } from '../state/registry.js';
import { isMirror } from './keeper.js';
import { geometriesOf, holdAt, type ReshapeHost, type ReshapeJob } from './reshape.js';

/** Zeroing goes to the elements in pieces of this size (bounded requests, remote elements included). */
const ZERO_PIECE_BYTES = 64 * 1024 * 1024;

const isParity = (layout: Layout): boolean => layout === 'raid5' || layout === 'raid6';

async function zeroElements(host: ReshapeHost, members: readonly string[], fromBytes: number, toBytes: number): Promise<void> {
  const raw = host.dataPath.raw;
  for (const name of members) {
    const element = host.registry.element(name).index;
    for (let at = fromBytes; at < toBytes; at += ZERO_PIECE_BYTES) await raw.zero(element, DATA_OFFSET_BYTES + at, Math.min(ZERO_PIECE_BYTES, toBytes - at));
    if (toBytes > fromBytes) await raw.flush(element);
  }
}

/** The new rows past the last one the copy wrote, on every element: zero data, zero parity. */
async function zeroTail(host: ReshapeHost, entry: VolumeEntry): Promise<void> {
  const { to, record } = geometriesOf(entry);
  const c = to.chunkBytes;
  const rowBytes = dataChunksPerRow(to.layout, to.count) * c;
  const firstRow = Math.ceil(record.fromSizeBytes / rowBytes);
  const rows = geometryCapacity(to) / rowBytes;
  await zeroElements(host, entry.assembled.config.elements, firstRow * c, rows * c);
}

/** Zeroes the tail and switches to the new geometry (one control operation). */
export async function finishReshape(host: ReshapeHost, job: ReshapeJob): Promise<void> {
  const entry = job.entry;
  await host.exclusive(async () => {
    await zeroTail(host, entry);
    await switchFinal(host, entry);
  });
}

async function switchFinal(host: ReshapeHost, entry: VolumeEntry): Promise<void> {
  const vol = entry.assembled;
  const record = vol.reshape;
  if (record === undefined) return;
  const name = vol.config.name;
  const fromIndex = entry.reshapeFromIndex;
  if (fromIndex === undefined) throw new Error(`volume ${name}: reshaping without an old view`);
  const t0 = Date.now();
  await entry.handle.io.flush();
  const resume = await host.dataPath.pauseVolume(entry.index);
  try {
    // Paused: what clients wrote since the flush goes down too (raw: the pause holds volume requests).
    for (const member of vol.config.elements) await host.dataPath.raw.flush(host.registry.element(member).index);
    if (isParity(vol.config.layout)) {
      const oldParity = isParity(record.fromLayout) || record.fromLayout === 'raid1';
      const seqNew = await host.dataPath.checkpointJournal(entry.index);
      const seqOld = oldParity ? await host.dataPath.checkpointJournal(fromIndex) : 0;
      // Above every record of both halves: the full area's new journal replays none of them.
      await host.dataPath.writeJournalHeader(entry.index, 'full', Math.max(seqNew, seqOld) + 1);
    }
    // First every superblock without the record, at size C1 and the same event counter: a crash
    // in the middle leaves some at position C0 (assembly resumes there: the tail is zeroed and the
    // finish runs again, meta/reshape-assemble.ts) and the others final, with C0 the smaller size.
    const final = { ...withReshapeRecord(vol, null, { finalSizeBytes: record.toSizeBytes }), wasClean: true };
    const failed = await writeReshapeRecord(vol, null, { finalSizeBytes: record.toSizeBytes, afterEach: (n) => (n === 1 ? holdAt('finish-superblocks', (l) => host.log('warn', l)) : Promise.resolve()) });
    if (failed.length > 0) throw new EngineError('io', `cannot write the final superblock of ${failed.map((f) => `${f.element} (${f.message})`).join(', ')}`, `volume ${name}`);
    // Then the event counter + 1, as every open does: the finished geometry is the current one.
    entry.assembled = await markClean(final, false);
    delete entry.reshapeFromIndex;
    await host.applyTopology();
    // A mirror (raid10) gets its write-intent bitmap back, sized anew: the area held the backups.
    // Not while legs wait for a rebuild (they are copied in full anyway, keeper.ts holdForReshape).
    // After a crash mid-reshape (no bitmap meanwhile) the pairs are resynced in full, as md does.
    const rearm = vol.wasClean === false ? { ...entry, assembled: { ...entry.assembled, wasClean: false } } : entry;
    if (isMirror(vol.config.layout) && (host.keeper.keep(name)?.pending.size ?? 0) === 0) await host.keeper.detach(name).then(() => host.keeper.attach(rearm));
    // Checkpoint bitmaps are sized for the volume (a reshape needs none, reshape-start.ts): start afresh.
    await host.ckpts.remove(name);
    await host.attachCheckpoints(entry);
  } finally {
    resume();
  }
  host.persist();
  const took = ((Date.now() - record.startedMs) / 1000).toFixed(1);
  host.log('info', `volume ${name}: reshape ${record.fromLayout}×${record.fromCount} → ${vol.config.layout}×${vol.config.elements.length} done in ${took} s: ${record.toSizeBytes} bytes (switch ${Date.now() - t0} ms)`);
  await kickHeld(host, entry);
}

/**
 * Resyncs and rebuilds held while the volume reshaped (keeper.ts kick) start now; failed legs are
 * seen by the next leg-watch tick. A mirror (raid10) was kept without a bitmap meanwhile (its area
 * held the backups): the keeper attaches anew with one, and the held legs are copied in full.
 */
async function kickHeld(host: ReshapeHost, entry: VolumeEntry): Promise<void> {
  const name = entry.assembled.config.name;
  const keep = host.keeper.keep(name);
  if (keep === undefined || keep.pending.size === 0) return;
  const held = [...keep.pending.values()];
  host.log('info', `volume ${name}: the reshape finished; the held ${held.map((t) => t.name).join(', ')} start now`);
  if (!isMirror(entry.assembled.config.layout) || keep.bitmap !== null) return host.keeper.kick(keep);
  await host.keeper.detach(name);
  await host.keeper.attach(entry);
  const fresh = host.keeper.keep(name);
  if (fresh === undefined) return;
  for (const t of held) await host.keeper.addTarget(fresh, { ...t, full: true });
  host.keeper.kick(fresh);
}

/**
 * Linear + elements: the new ones go after the last (linear maps bytes in role order), so no data
 * moves. Their data areas are zeroed first. Then, with client I/O paused and flushed, it goes
 * through a reshape record like the others, so no crash leaves a membership assembly refuses:
 *   1. startReshapeSuperblocks: new elements, then the old ones, the new membership with a
 *      linear→linear record at position 0 (size C0); a crash here rolls back (reshape-assemble.ts 4b);
 *   2. the state file saves the membership; a crash after it assembles with the record, and the
 *      resumed job only runs step 3 (finishLinear);
 *   3. finalLinear: every superblock without the record at size C1, event counter + 1.
 */
export async function appendLinear(host: ReshapeHost, entry: VolumeEntry, joined: readonly AssembledElement[]): Promise<void> {
  const vol = entry.assembled;
  const name = vol.config.name;
  for (const e of joined) await zeroElements(host, [e.config.name], 0, e.dataSizeBytes);
  const elements = [...vol.elements, ...joined];
  const sizeBytes = layoutCapacityBytes('linear', elements.map((e) => e.dataSizeBytes), vol.config.chunkKiB * 1024);
  const { sizeBytes: _created, ...config } = vol.config;
  const record: ReshapeRecord = { fromLayout: 'linear', fromCount: vol.elements.length, fromChunkBytes: vol.config.chunkKiB * 1024, fromSizeBytes: vol.sizeBytes, toSizeBytes: sizeBytes, positionBytes: 0, startedMs: Date.now() };
  const next: AssembledVolume = { ...vol, config: { ...config, elements: elements.map((e) => e.config.name) }, elements, reshape: record };
  const say = (l: string): void => host.log('warn', l);
  await entry.handle.io.flush();
  const resume = await host.dataPath.pauseVolume(entry.index);
  try {
    for (const member of vol.config.elements) await host.dataPath.raw.flush(host.registry.element(member).index);
    const failed = await startReshapeSuperblocks(next, record, joined.map((e) => e.config.name));
    if (failed.length > 0) {
      await writeReshapeRecord(vol, null).catch(() => undefined); // nothing moved: the old superblocks again, as far as they go
      throw new EngineError('io', `volume ${name}: cannot write the superblock of ${failed.map((f) => `${f.element} (${f.message})`).join(', ')}; nothing was appended`, `volume ${name}`);
    }
    await holdAt('linear-superblocks', say);
    entry.assembled = next;
    try {
      host.persist();
    } catch (err) {
      entry.assembled = vol;
      await writeReshapeRecord(vol, null).catch(() => undefined);
      throw err;
    }
    await holdAt('linear-state', say);
    await finalLinear(host, entry);
  } finally {
    resume();
  }
  host.persist();
  host.log('info', `volume ${name}: linear, appended ${joined.map((e) => e.config.name).join(', ')}: ${vol.sizeBytes} → ${sizeBytes} bytes`);
}

/** A linear append resumed after a crash between its state file and its final superblocks. */
export async function finishLinear(host: ReshapeHost, entry: VolumeEntry): Promise<void> {
  await host.exclusive(async () => {
    if (entry.assembled.reshape === undefined) return;
    await entry.handle.io.flush();
    const resume = await host.dataPath.pauseVolume(entry.index);
    try {
      for (const member of entry.assembled.config.elements) await host.dataPath.raw.flush(host.registry.element(member).index);
      await finalLinear(host, entry);
    } finally {
      resume();
    }
    host.persist();
    host.log('info', `volume ${entry.assembled.config.name}: linear append finished after a restart: ${entry.assembled.sizeBytes} bytes`);
  });
}

/** Step 3 of appendLinear (client I/O paused): final superblocks, then the data path and checkpoints at size C1. */
async function finalLinear(host: ReshapeHost, entry: VolumeEntry): Promise<void> {
  const vol = entry.assembled;
  const record = vol.reshape;
  if (record === undefined) return;
  const failed = await writeReshapeRecord(vol, null, { finalSizeBytes: record.toSizeBytes });
  if (failed.length > 0) throw new EngineError('io', `volume ${vol.config.name}: cannot write the final superblock of ${failed.map((f) => `${f.element} (${f.message})`).join(', ')}`, `volume ${vol.config.name}`);
  entry.assembled = await markClean({ ...withReshapeRecord(vol, null, { finalSizeBytes: record.toSizeBytes }), wasClean: true }, false);
  delete entry.reshapeFromIndex;
  await host.applyTopology();
  // The data path keeps a known element's live state (spare): the new members take I/O from now on.
  for (const member of entry.assembled.config.elements) {
    const index = host.registry.element(member).index;
    if (host.dataPath.elementState(index) === 'spare') host.dataPath.setElementState(index, 'active');
  }
  await host.ckpts.remove(vol.config.name);
  await host.attachCheckpoints(entry);
}
