// The checkpoints of one volume: loads them at attach, creates and deletes them, answers block
// status from their bitmaps, and installs the write gate's tracker (write-gate.ts) that marks
// every data-changing request in each of them before it is submitted (none installed while the
// volume has no checkpoint, so a volume without one pays nothing).
// A checkpoint that cannot be trusted (file unreadable, wrong, or its index lost) is recorded as
// broken in the index before any write can go untracked, reported in status, and never offered.
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { EngineError, type BlockExtent, type CheckpointStatus } from '../api-types.js';
import type { WriteGate } from '../datapath/write-gate.js';
import type { LogFn } from '../engine-types.js';
import { CheckpointBits, type OpenBitsFile } from './bits.js';
import { bitsPath, CATALOG_FILE, CHECKPOINTS_MAX, newId, readCatalog, writeCatalog, type Catalog, type CatalogEntry } from './catalog.js';
import { dirtyExtents } from './extents.js';
import { NAME_HINT, NAME_RE, regionBytesFor, regionCountFor } from './format.js';

export interface VolumeCheckpointsOptions {
  readonly dir: string;
  readonly volume: string;
  readonly arrayUuid: string;
  readonly sizeBytes: number;
  readonly gate: WriteGate;
  readonly log: LogFn;
  readonly openFile: OpenBitsFile;
}

const BITS_SUFFIX = '.bits';

export class VolumeCheckpoints {
  private catalog: Catalog;
  private readonly loaded = new Map<string, CheckpointBits>();
  /** The loaded bitmaps as a list: the tracker walks it on every write. */
  private marking: CheckpointBits[] = [];

  private constructor(private readonly o: VolumeCheckpointsOptions) {
    this.catalog = { arrayUuid: o.arrayUuid, volumeSizeBytes: o.sizeBytes, nextDefault: 1, entries: [] };
  }

  /** Loads the volume's checkpoints; throws only when a broken one could not be recorded as such. */
  static async open(o: VolumeCheckpointsOptions): Promise<VolumeCheckpoints> {
    const v = new VolumeCheckpoints(o);
    const found = await v.readIndex();
    if (found === null) return v;
    v.catalog = found.catalog;
    let changed = found.changed;
    const entries: CatalogEntry[] = [];
    for (const e of v.catalog.entries) {
      const why = e.broken === undefined ? await v.load(e) : undefined;
      if (why !== undefined) {
        o.log('error', `volume ${o.volume}: checkpoint ${e.name} is unusable (${why}): it is not offered; delete it and take a full backup`);
        changed = true;
      }
      entries.push(why === undefined ? e : { ...e, broken: why });
    }
    v.catalog = { ...v.catalog, entries };
    // Recorded before any write can pass untracked: a later start must not offer it either.
    if (changed) await writeCatalog(o.dir, v.catalog);
    await v.removeStrays();
    v.install();
    return v;
  }

  /** Usable checkpoints (what the NBD export offers), or every one with `all` (broken ones carry `unusable`). */
  list(all = false): CheckpointStatus[] {
    const out: CheckpointStatus[] = [];
    for (const e of this.catalog.entries) {
      const bits = this.loaded.get(e.name);
      if (bits === undefined && !all) continue;
      const dirtyRegions = bits?.dirtyRegions ?? 0;
      out.push({
        name: e.name, createdMs: e.createdMs, regionBytes: e.regionBytes, dirtyRegions,
        dirtyBytes: Math.min(dirtyRegions * e.regionBytes, this.o.sizeBytes), ...(bits === undefined ? { unusable: e.broken ?? 'not loaded' } : {}),
      });
    }
    return out;
  }

  /** Starts a checkpoint: writes already in flight are marked in it, and it is durable when this resolves. */
  async create(wanted?: string): Promise<CheckpointStatus> {
    const name = this.pickName(wanted);
    const size = this.o.sizeBytes;
    const regionBytes = regionBytesFor(size);
    const header = { id: newId(), name, regionBytes, regionCount: regionCountFor(size, regionBytes), volumeSizeBytes: size, createdMs: Date.now() };
    await fs.mkdir(path.dirname(this.o.dir), { recursive: true, mode: 0o700 });
    await fs.mkdir(this.o.dir, { recursive: true, mode: 0o700 });
    const file = bitsPath(this.o.dir, name);
    let bits: CheckpointBits;
    try {
      const handle = await this.o.openFile(file, true);
      bits = await CheckpointBits.create(handle, header, `${this.o.volume}/${name}`).catch(async (err: unknown) => {
        await handle.close().catch(() => undefined);
        throw err;
      });
    } catch (err) {
      await fs.rm(file, { force: true }).catch(() => undefined);
      throw this.ioError(`cannot create checkpoint ${name}`, err);
    }
    // Synchronous from here to install(): a write is either in flight now or passes the tracker.
    const inFlight = this.o.gate.inFlightRanges().map((r) => bits.mark(r.start, r.end - r.start)?.catch(() => undefined));
    this.loaded.set(name, bits);
    this.install();
    try {
      await Promise.all(inFlight);
      await bits.flushed();
      const entry: CatalogEntry = { name, id: header.id, createdMs: header.createdMs, regionBytes };
      const nextDefault = wanted === undefined ? Number(name.slice('ckpt-'.length)) + 1 : this.catalog.nextDefault;
      const catalog = { ...this.catalog, nextDefault, entries: [...this.catalog.entries, entry] };
      await writeCatalog(this.o.dir, catalog);
      this.catalog = catalog;
    } catch (err) {
      await this.unload(name);
      await fs.rm(file, { force: true }).catch(() => undefined);
      throw this.ioError(`cannot create checkpoint ${name}`, err);
    }
    this.o.log('info', `volume ${this.o.volume}: checkpoint ${name} started (${regionBytes / 1024} KiB regions)`);
    return this.list().find((c) => c.name === name)!;
  }

  /** Deletes a checkpoint (usable or not): out of the index first, so a crash never brings back a stale one. */
  async delete(name: string): Promise<void> {
    if (!this.catalog.entries.some((e) => e.name === name)) throw this.notFound(name);
    const catalog = { ...this.catalog, entries: this.catalog.entries.filter((e) => e.name !== name) };
    try {
      await writeCatalog(this.o.dir, catalog);
    } catch (err) {
      throw this.ioError(`cannot delete checkpoint ${name}`, err);
    }
    this.catalog = catalog;
    await this.unload(name);
    await fs.rm(bitsPath(this.o.dir, name), { force: true }).catch((err: Error) => this.o.log('warn', `volume ${this.o.volume}: checkpoint ${name}: ${err.message} (removed at the next start)`));
    this.o.log('info', `volume ${this.o.volume}: checkpoint ${name} deleted`);
  }

  /** Dirty (flag 1) and clean runs of [offset, +length) since checkpoint `name`. */
  extents(name: string, offsetBytes: number, lengthBytes: number, extentsMax: number): BlockExtent[] {
    const bits = this.loaded.get(name);
    if (bits === undefined) throw this.notFound(name);
    const size = this.o.sizeBytes;
    if (!(Number.isSafeInteger(offsetBytes) && Number.isSafeInteger(lengthBytes) && offsetBytes >= 0 && lengthBytes > 0 && offsetBytes < size && Number.isSafeInteger(extentsMax) && extentsMax >= 1)) {
      throw new EngineError('invalid', `no dirty extents for [${offsetBytes}, +${lengthBytes}) (at most ${extentsMax}) of ${size} bytes`, `volume ${this.o.volume}`);
    }
    return dirtyExtents(bits, offsetBytes, lengthBytes, extentsMax);
  }

  /** Marks [offset, +length) in every checkpoint, as the tracker does for client writes. */
  mark(offsetBytes: number, lengthBytes: number): Promise<void> | undefined {
    return this.track(offsetBytes, lengthBytes);
  }

  /** Stops marking and closes the files (engine close); with `remove`, deletes them too (volume deleted). */
  async close(remove = false): Promise<void> {
    for (const name of [...this.loaded.keys()]) await this.unload(name);
    if (remove) await fs.rm(this.o.dir, { recursive: true, force: true });
  }

  /** The gate's tracker: marks [offset, +length) in every checkpoint; undefined when all bits are durable already. */
  private readonly track = (offsetBytes: number, lengthBytes: number): Promise<void> | undefined => {
    let one: Promise<void> | undefined;
    let many: Promise<void>[] | undefined;
    for (const bits of this.marking) {
      const p = bits.mark(offsetBytes, lengthBytes);
      if (p === undefined) continue;
      if (one === undefined) one = p;
      else (many ??= [one]).push(p);
    }
    return many === undefined ? one : Promise.all(many).then(() => undefined);
  };

  private install(): void {
    this.marking = [...this.loaded.values()];
    this.o.gate.setTracker(this.marking.length > 0 ? this.track : null);
  }

  private async unload(name: string): Promise<void> {
    const bits = this.loaded.get(name);
    if (bits === undefined) return;
    this.loaded.delete(name);
    this.install();
    await bits.close().catch((err: Error) => this.o.log('warn', `volume ${this.o.volume}: checkpoint ${name}: closing its file: ${err.message}`));
  }

  private pickName(wanted: string | undefined): string {
    const where = `volume ${this.o.volume}`;
    const taken = new Set(this.catalog.entries.map((e) => e.name));
    if (this.catalog.entries.length >= CHECKPOINTS_MAX) {
      throw new EngineError('conflict', `volume ${this.o.volume} has ${CHECKPOINTS_MAX} checkpoints, the most it keeps`, where,
        `delete one first: onestack volume checkpoint-delete ${this.o.volume} ${this.catalog.entries[0]?.name ?? 'NAME'}`);
    }
    if (wanted !== undefined) {
      if (!NAME_RE.test(wanted)) throw new EngineError('invalid', `invalid checkpoint name ${JSON.stringify(wanted.slice(0, 80))}`, where, NAME_HINT);
      if (taken.has(wanted)) throw new EngineError('conflict', `volume ${this.o.volume} already has a checkpoint named ${wanted}`, where, 'pick another name or delete that one');
      return wanted;
    }
    // Bounded: at most CHECKPOINTS_MAX names are taken.
    for (let n = this.catalog.nextDefault; n <= this.catalog.nextDefault + CHECKPOINTS_MAX; n++) if (!taken.has(`ckpt-${n}`)) return `ckpt-${n}`;
    throw new Error('no free default checkpoint name');
  }

  /** Loads a listed checkpoint's bitmap; returns why it is unusable, or undefined. */
  private async load(e: CatalogEntry): Promise<string | undefined> {
    let handle;
    try {
      handle = await this.o.openFile(bitsPath(this.o.dir, e.name), false);
      const expect = { id: e.id, name: e.name, regionBytes: e.regionBytes, volumeSizeBytes: this.o.sizeBytes, createdMs: e.createdMs };
      const { bits, repairedPages } = await CheckpointBits.load(handle, expect, `${this.o.volume}/${e.name}`);
      if (repairedPages > 0) this.o.log('warn', `volume ${this.o.volume}: checkpoint ${e.name}: ${repairedPages} bitmap page(s) failed their checksum (torn by a crash?): their regions read as dirty`);
      this.loaded.set(e.name, bits);
      return undefined;
    } catch (err) {
      await handle?.close().catch(() => undefined);
      return `its file cannot be used: ${(err as Error).message}`;
    }
  }

  /** The index as found (null: none). A lost index breaks every bits file still there; another volume's is dropped. */
  private async readIndex(): Promise<{ catalog: Catalog; changed: boolean } | null> {
    const { dir, volume, log } = this.o;
    let catalog: Catalog | null;
    try {
      catalog = await readCatalog(dir);
    } catch (err) {
      const aside = `${CATALOG_FILE}.corrupt-${Date.now()}`;
      await fs.rename(path.join(dir, CATALOG_FILE), path.join(dir, aside));
      log('error', `volume ${volume}: checkpoint index unreadable (${(err as Error).message}); kept as ${aside}`);
      const names = (await fs.readdir(dir)).filter((f) => f.endsWith(BITS_SUFFIX)).map((f) => f.slice(0, -BITS_SUFFIX.length)).filter((n) => NAME_RE.test(n));
      const entries = names.slice(0, CHECKPOINTS_MAX).map((name): CatalogEntry => ({ name, id: '', createdMs: 0, regionBytes: regionBytesFor(this.o.sizeBytes), broken: 'the checkpoint index was lost' }));
      return { catalog: { arrayUuid: this.o.arrayUuid, volumeSizeBytes: this.o.sizeBytes, nextDefault: 1, entries }, changed: true };
    }
    if (catalog === null) {
      await this.removeStrays();
      return null;
    }
    if (catalog.arrayUuid !== this.o.arrayUuid) {
      log('info', `volume ${volume}: dropping the checkpoints of an earlier volume of the same name (${catalog.arrayUuid})`);
      await fs.rm(dir, { recursive: true, force: true });
      return null;
    }
    if (catalog.volumeSizeBytes !== this.o.sizeBytes) {
      const broken = `the volume changed size (${catalog.volumeSizeBytes} -> ${this.o.sizeBytes} bytes)`;
      return { catalog: { ...catalog, volumeSizeBytes: this.o.sizeBytes, entries: catalog.entries.map((e) => ({ ...e, broken: e.broken ?? broken })) }, changed: true };
    }
    return { catalog, changed: false };
  }

  /** Bits files the index does not name, and a temp index: leftovers of an interrupted change. */
  private async removeStrays(): Promise<void> {
    let files: string[];
    try {
      files = await fs.readdir(this.o.dir);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw err;
    }
    const listed = new Set(this.catalog.entries.map((e) => `${e.name}${BITS_SUFFIX}`));
    for (const f of files) {
      if (listed.has(f) || !(f.endsWith(BITS_SUFFIX) || f === `${CATALOG_FILE}.tmp`)) continue;
      await fs.rm(path.join(this.o.dir, f), { force: true });
      this.o.log('info', `volume ${this.o.volume}: removed ${f}, left by an interrupted checkpoint change`);
    }
  }

  private notFound(name: string): EngineError {
    const known = this.catalog.entries.some((e) => e.name === name);
    return new EngineError('not-found', known ? `checkpoint ${name} of volume ${this.o.volume} is unusable` : `volume ${this.o.volume} has no checkpoint named ${name}`,
      `volume ${this.o.volume}`, 'list them with `onestack volume checkpoints VOLUME`');
  }

  private ioError(what: string, err: unknown): EngineError {
    if (err instanceof EngineError) return err;
    return new EngineError('io', `volume ${this.o.volume}: ${what}: ${(err as Error)?.message ?? String(err)}`, this.o.dir);
  }
}
