// Online reshape, the running job (docs/reshape.md): copies the volume forward step by step from
// its OLD geometry (an internal data-path volume) to the NEW one, recording the position in every
// superblock after each step, then zeroes the new tail and finishes (reshape-finish.ts). Starting
// (checks, first superblocks) is reshape-start.ts. Every step runs as one control operation
// (host.exclusive), so no other control operation sees a half-done step; client I/O goes on
// through the volume's ReshapeRouter, held only inside the step's window.
import { crc32c } from '@onestack/native';
import { EngineError, type ReshapeStatus } from '../api-types.js';
import type { Layout } from '../config/types.js';
import type { ReshapeRouter } from '../datapath/reshape-router.js';
import { withReshapeRecord, writeReshapeRecord } from '../meta/reshape-meta.js';
import { backupExtents, copyGeometry, dataChunksPerRow, geometryCapacity, nextStep, type ReshapeGeometry } from '../meta/reshape-plan.js';
import type { ReshapeRecord } from '../meta/types.js';
import type { VolumeEntry } from '../state/registry.js';
import type { VolumeOpsHost } from '../volume-ops.js';

/** A step copies at most this much (whole new rows); steps that need a backup are one new row. */
export const STEP_BYTES_MAX = 4 * 1024 * 1024;
/** Progress events at most this often (status, GUI). */
const PROGRESS_EVERY_MS = 250;
/** Test seam: a pause between steps, so a kill -9 lands mid-reshape. */
const STEP_DELAY_MS = envMs('ONESTACK_RESHAPE_STEP_DELAY_MS');
/** Test seam: a pause after a backup is named in the superblocks, before the new rows are written (a kill -9 there resumes from the backup). */
const BACKUP_DELAY_MS = envMs('ONESTACK_RESHAPE_BACKUP_DELAY_MS');

function envMs(name: string): number {
  return Math.max(0, Math.min(60_000, Number(process.env[name] ?? 0) || 0));
}

/** Test seam for kill -9 tests of crash windows: ONESTACK_RESHAPE_HOLD_AT names a point, ONESTACK_RESHAPE_HOLD_MS how long to sleep there. */
export type HoldPoint = 'linear-superblocks' | 'linear-state' | 'finish-superblocks';

export async function holdAt(point: HoldPoint, log?: (line: string) => void): Promise<void> {
  if (process.env['ONESTACK_RESHAPE_HOLD_AT'] !== point) return;
  const ms = envMs('ONESTACK_RESHAPE_HOLD_MS');
  log?.(`test seam: holding ${ms} ms at ${point}`);
  if (ms > 0) await sleep(ms);
}

/** An error a retry cannot cure (a backup failing its checksum): the job stays paused until `--resume`. */
export class ReshapeHalt extends Error {}

export interface ReshapeOptions {
  /** Copy rate limit in MiB/s (0 = unthrottled). */
  readonly maxMiBPerSec: number;
}

export interface ReshapeHost extends VolumeOpsHost {
  /** True once the engine closes: the job stops between steps and resumes at the next start. */
  closing(): boolean;
}

const isParity = (layout: Layout): boolean => layout === 'raid5' || layout === 'raid6';

const sleep = (ms: number): Promise<void> => new Promise((done) => setTimeout(done, ms).unref());

/** The geometries of a reshaping volume: the one shown (as it was), the one the copy reads, and the new one. */
export function geometriesOf(entry: VolumeEntry): { shown: { layout: Layout; count: number }; from: ReshapeGeometry; to: ReshapeGeometry; record: ReshapeRecord } {
  const vol = entry.assembled;
  const record = vol.reshape;
  if (record === undefined) throw new Error(`volume ${vol.config.name} is not reshaping`);
  const dataSizeBytes = Math.min(...vol.elements.map((e) => e.dataSizeBytes));
  const from = copyGeometry({ layout: record.fromLayout, count: record.fromCount, chunkBytes: record.fromChunkBytes, dataSizeBytes, sizeBytes: record.fromSizeBytes }, vol.config);
  const to: ReshapeGeometry = { layout: vol.config.layout, count: vol.config.elements.length, chunkBytes: vol.config.chunkKiB * 1024, dataSizeBytes, sizeBytes: record.toSizeBytes };
  return { shown: { layout: record.fromLayout, count: record.fromCount }, from, to, record };
}

export class ReshapeJob {
  state: ReshapeStatus['state'] = 'running';
  error: string | undefined;
  backupSteps = 0;
  /** The error cannot pass by itself (no automatic retry). */
  halted = false;
  private stopped = false;
  private loop: Promise<void> = Promise.resolve();
  private copiedBytes = 0;
  private readonly runStartMs = Date.now();
  private lastEventMs = 0;
  private lastRecord: ReshapeRecord | undefined;
  private finished = false;
  private wake: (() => void) | null = null;

  constructor(private readonly host: ReshapeHost, readonly entry: VolumeEntry, private readonly opts: ReshapeOptions,
    private readonly finish: (job: ReshapeJob) => Promise<void>) {}

  get maxMiBPerSec(): number {
    return this.opts.maxMiBPerSec;
  }

  get name(): string {
    return this.entry.assembled.config.name;
  }

  start(): void {
    this.loop = this.run();
  }

  /** Stops between steps (engine closing); the superblocks keep the position for the next start. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.wake?.();
    await this.loop;
  }

  get done(): Promise<void> {
    return this.loop;
  }

  status(): ReshapeStatus | null {
    const vol = this.entry.assembled;
    // Until the switch is complete (topology included) it shows as finishing: then the new size is what clients get.
    if (vol.reshape !== undefined) this.lastRecord = vol.reshape;
    const record = this.lastRecord;
    if (record === undefined || this.finished) return null;
    const seconds = (Date.now() - this.runStartMs) / 1000;
    const total = record.fromSizeBytes;
    return {
      from: { layout: record.fromLayout, count: record.fromCount }, to: { layout: vol.config.layout, count: vol.config.elements.length },
      positionBytes: record.positionBytes, totalBytes: total, sizeBytes: record.toSizeBytes,
      percent: total === 0 ? 100 : (100 * record.positionBytes) / total, state: this.state,
      rateMiBps: seconds > 0 ? this.copiedBytes / 1048576 / seconds : 0, backupSteps: this.backupSteps, startedMs: record.startedMs, maxMiBPerSec: this.opts.maxMiBPerSec,
      ...(this.error !== undefined ? { error: this.error } : {}),
    };
  }

  private async run(): Promise<void> {
    try {
      for (;;) {
        if (this.stopped || this.host.closing()) return;
        const t0 = Date.now();
        const moved = await this.host.exclusive(() => this.step());
        if (moved === 0) break;
        this.copiedBytes += moved;
        this.progressEvent();
        await this.pace(moved, Date.now() - t0);
      }
      if (this.stopped || this.host.closing()) return;
      this.state = 'finishing';
      this.host.changed();
      await this.finish(this);
      this.finished = true;
      this.host.changed();
    } catch (err) {
      if (this.host.closing() && err instanceof EngineError && err.code === 'closed') return;
      this.error = (err as Error).message;
      this.state = 'paused';
      this.halted = err instanceof ReshapeHalt;
      this.host.log('error', `volume ${this.name}: reshape stopped at ${this.entry.assembled.reshape?.positionBytes ?? '?'} bytes: ${this.error}`);
      this.host.changed();
    }
  }

  /** Throttle (maxMiBPerSec) and the test seam's delay between steps. */
  private async pace(bytes: number, tookMs: number): Promise<void> {
    const rate = this.opts.maxMiBPerSec;
    const wantMs = rate > 0 ? (bytes / (rate * 1048576)) * 1000 : 0;
    const waitMs = Math.max(wantMs - tookMs, 0) + STEP_DELAY_MS;
    if (waitMs <= 0) return;
    // stop() wakes it: a slow rate limit must not hold the engine's close.
    await new Promise<void>((done) => {
      const timer = setTimeout(done, Math.min(waitMs, 60_000));
      timer.unref();
      this.wake = () => { clearTimeout(timer); done(); };
    });
    this.wake = null;
  }

  private progressEvent(): void {
    const now = Date.now();
    if (now - this.lastEventMs < PROGRESS_EVERY_MS) return;
    this.lastEventMs = now;
    this.host.changed();
  }

  private router(): ReshapeRouter {
    const router = this.host.dataPath.reshapeRouter(this.entry.index);
    if (router === undefined) throw new Error(`volume ${this.name}: the data path has no reshape router`);
    return router;
  }

  /** One step (STEP in docs/reshape.md); the bytes it moved, 0 once the copy reached C0. */
  private async step(): Promise<number> {
    if (this.host.closing() || this.entry.assembled.reshape?.fromLayout === 'linear') return 0;
    const { from, to, record } = geometriesOf(this.entry);
    const p = record.positionBytes;
    if (p >= record.fromSizeBytes) return 0;
    const s = nextStep(from, to, p, STEP_BYTES_MAX);
    const router = this.router();
    const release = await router.fence(s.startBytes, s.endBytes);
    try {
      const len = s.endBytes - s.startBytes;
      const resumed = record.backup !== undefined && record.backup.startBytes === p ? record.backup : undefined;
      const data = resumed !== undefined ? await this.fromBackup(router, p, len, resumed) : await router.oldIo.read(p, len);
      if (s.backup !== null && resumed === undefined) {
        await this.backup(data.subarray(0, s.backup.endBytes - s.backup.startBytes), record);
        if (BACKUP_DELAY_MS > 0) await sleep(BACKUP_DELAY_MS);
      }
      // Old-view journal records begun so far retire below a durable checkpoint: a replay after a
      // crash never writes them over the new rows about to land there.
      if (isParity(from.layout)) await this.host.dataPath.checkpointJournal(this.entry.reshapeFromIndex!);
      await router.newIo.write(p, wholeRows(data, p, to));
      await router.newIo.flush();
      await this.save({ ...withoutBackup(record), positionBytes: s.endBytes });
      router.advance(s.endBytes);
      return len;
    } finally {
      release();
    }
  }

  /** Saves [P, B) in the backup areas of the new roles, flushes them, then names it in every superblock. */
  private async backup(bytes: Uint8Array, record: ReshapeRecord): Promise<void> {
    const { to } = geometriesOf(this.entry);
    const raw = this.host.dataPath.raw;
    const extents = backupExtents(to, bytes.length);
    for (const x of extents) await raw.write(this.elementOf(x.role), x.elementOffsetBytes, bytes.subarray(x.bufferOffsetBytes, x.bufferOffsetBytes + x.lengthBytes));
    for (const x of extents) await raw.flush(this.elementOf(x.role));
    await this.save({ ...record, backup: { startBytes: record.positionBytes, lengthBytes: bytes.length, crc: crc32c(bytes) >>> 0 } });
    this.backupSteps++;
  }

  /** A step resumed after a crash: [P, B) from the backup (its checksum checked), [B, E) from the old view. */
  private async fromBackup(router: ReshapeRouter, p: number, len: number, b: NonNullable<ReshapeRecord['backup']>): Promise<Uint8Array> {
    const { to } = geometriesOf(this.entry);
    const out = new Uint8Array(len);
    for (const x of backupExtents(to, b.lengthBytes)) out.set(await this.host.dataPath.raw.read(this.elementOf(x.role), x.elementOffsetBytes, x.lengthBytes), x.bufferOffsetBytes);
    if ((crc32c(out.subarray(0, b.lengthBytes)) >>> 0) !== b.crc) throw new ReshapeHalt(`the backup of [${p}, +${b.lengthBytes}) fails its checksum: refusing to continue (the volume's data there cannot be trusted)`);
    this.host.log('info', `volume ${this.name}: reshape resumes at ${p} from its backup (${b.lengthBytes} bytes)`);
    if (b.lengthBytes < len) out.set(await router.oldIo.read(p + b.lengthBytes, len - b.lengthBytes), b.lengthBytes);
    return out;
  }

  private elementOf(role: number): number {
    const name = this.entry.assembled.config.elements[role];
    if (name === undefined) throw new Error(`reshape: no element in role ${role}`);
    return this.host.registry.element(name).index;
  }

  /** Every superblock gets the record (event counter unchanged), then the registry. */
  private async save(record: ReshapeRecord): Promise<void> {
    // Live states: an element the data path failed since is skipped (the volume goes on degraded).
    const failed = await writeReshapeRecord(this.host.keeper.withLive(this.entry.assembled), record);
    // Assembly takes the largest position among the superblocks, so a write that failed after
    // others succeeded is safe; the step stops here all the same (a failing element needs attention).
    if (failed.length > 0) throw new EngineError('io', `cannot write the reshape position to ${failed.map((f) => `${f.element} (${f.message})`).join(', ')}`, `volume ${this.name}`);
    this.entry.assembled = withReshapeRecord(this.entry.assembled, record);
  }
}

/**
 * The last step ends at C0, maybe inside a new row: it is written as the whole row (zeros after
 * C0), so the stripe engine writes full stripes and the row's parity covers what it holds.
 */
function wholeRows(data: Uint8Array, p: number, to: ReshapeGeometry): Uint8Array {
  const rowBytes = dataChunksPerRow(to.layout, to.count) * to.chunkBytes;
  const want = Math.ceil(data.length / rowBytes) * rowBytes;
  if (want === data.length) return data;
  const out = new Uint8Array(Math.min(want, geometryCapacity(to) - p));
  out.set(data.subarray(0, Math.min(data.length, out.length)));
  return out;
}

function withoutBackup(r: ReshapeRecord): ReshapeRecord {
  const { backup: _gone, ...rest } = r;
  return rest;
}
