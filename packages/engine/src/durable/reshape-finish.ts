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
import { withReshapeRecord, writeReshapeRecord } from '../meta/reshape-meta.js';
import { dataChunksPerRow, geometryCapacity } from '../meta/reshape-plan.js';
import { layoutCapacityBytes } from '../meta/layout.js';
import { DATA_OFFSET_BYTES, type AssembledElement, type AssembledVolume } from '../meta/types.js';
import type { VolumeEntry } from '../state/registry.js';
import { geometriesOf, type ReshapeHost, type ReshapeJob } from './reshape.js';

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
    const failed = await writeReshapeRecord(vol, null, { finalSizeBytes: record.toSizeBytes });
    if (failed.length > 0) throw new EngineError('io', `cannot write the final superblock of ${failed.map((f) => `${f.element} (${f.message})`).join(', ')}`, `volume ${name}`);
    // Then the event counter + 1, as every open does: the finished geometry is the current one.
    entry.assembled = await markClean(final, false);
    delete entry.reshapeFromIndex;
    await host.applyTopology();
    // Checkpoint bitmaps are sized for the volume (a reshape needs none, reshape-start.ts): start afresh.
    await host.ckpts.remove(name);
    await host.attachCheckpoints(entry);
  } finally {
    resume();
  }
  host.persist();
  const took = ((Date.now() - record.startedMs) / 1000).toFixed(1);
  host.log('info', `volume ${name}: reshape ${record.fromLayout}×${record.fromCount} → ${vol.config.layout}×${vol.config.elements.length} done in ${took} s: ${record.toSizeBytes} bytes (switch ${Date.now() - t0} ms)`);
}

/**
 * Linear + elements: the new ones go after the last (linear maps bytes in role order), so no data
 * moves. Their data areas are zeroed first; then, with writes fenced and flushed, every superblock
 * (new ones included) gets the new membership and size with the event counter + 1, and the data
 * path the new size. A crash before the last superblock is written leaves members with the old
 * count and the same data: the state file names the membership assembly takes.
 */
export async function appendLinear(host: ReshapeHost, entry: VolumeEntry, joined: readonly AssembledElement[]): Promise<void> {
  const vol = entry.assembled;
  const name = vol.config.name;
  for (const e of joined) await zeroElements(host, [e.config.name], 0, e.dataSizeBytes);
  const elements = [...vol.elements, ...joined];
  const sizeBytes = layoutCapacityBytes('linear', elements.map((e) => e.dataSizeBytes), vol.config.chunkKiB * 1024);
  const { sizeBytes: _created, ...config } = vol.config;
  const next: AssembledVolume = { ...vol, config: { ...config, elements: elements.map((e) => e.config.name) }, elements, sizeBytes };
  const io = entry.handle.io;
  const lift = await io.gate.fence(0, Number.MAX_SAFE_INTEGER);
  try {
    await io.flush();
    entry.assembled = await markClean(next, false);
    await host.applyTopology();
    // The data path keeps a known element's live state (spare): the new members take I/O from now on.
    for (const e of joined) host.dataPath.setElementState(host.registry.element(e.config.name).index, 'active');
    await host.ckpts.remove(name);
    await host.attachCheckpoints(entry);
  } finally {
    lift();
  }
  host.persist();
  host.log('info', `volume ${name}: linear, appended ${joined.map((e) => e.config.name).join(', ')}: ${vol.sizeBytes} → ${sizeBytes} bytes`);
}
