// Watches the failed legs of mirror and raid5/6 volumes once a second: a volume with a free spare (config
// volumes[].spares) gets the failed leg replaced by it; a failed REMOTE leg is probed with a raw
// read of its superblock through the data path's own link, and comes back when it answers
// (replace.ts returnLeg), without a restart. Probes back off while a remote stays away, and
// longer for a leg that fails again soon after it came back (a flapping remote).
import { elementIntegrityArea } from '../meta/assemble.js';
import { DATA_OFFSET_BYTES, SUPERBLOCK_BYTES, type AssembledVolume } from '../meta/types.js';
import type { VolumeEntry } from '../state/registry.js';
import type { KeeperHost } from './host.js';
import { canRebuild, type Keep, type MirrorKeeper } from './keeper.js';
import { replaceLeg, returnLeg } from './replace.js';

const TICK_MS = 1000;
/** First probe after a failure: long enough that a failure is seen as such before a return. */
const PROBE_FIRST_MS = 3000;
const PROBE_MAX_MS = 60_000;
/** Probes at the first pace before backing off: a remote restarted within ~30 s is seen within 3 s. */
const PROBES_AT_FIRST_PACE = 10;
/** A leg failing again within this long after coming back counts as flapping (longer back-off). */
const FLAP_WINDOW_MS = 60_000;

interface ProbeState {
  /** A failure episode is being watched (false once the leg came back). */
  armed: boolean;
  nextMs: number;
  delayMs: number;
  returnedMs: number;
  busy: boolean;
  /** Failed probes in this episode. */
  misses: number;
  /** Last reason logged, so a remote that stays away is not logged every probe. */
  said: string;
}

export class LegWatch {
  private timer: NodeJS.Timeout | null = null;
  private readonly probes = new Map<string, ProbeState>();
  private readonly replacing = new Set<string>();
  private readonly said = new Set<string>();

  constructor(
    private readonly host: KeeperHost,
    private readonly keeper: MirrorKeeper,
  ) {}

  start(): void {
    this.timer ??= setInterval(() => this.tick(), TICK_MS).unref();
  }

  stop(): void {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
  }

  /** One look at every mirror volume; the work it starts runs in the background. */
  tick(): void {
    if (this.keeper.isClosed) return;
    for (const keep of this.keeper.volumes()) {
      const entry = this.host.registry.volumes.get(keep.name);
      if (entry === undefined) continue;
      const members = this.keeper.members(keep.name);
      const failed = members.filter((m) => m.state === 'failed');
      if (failed.length === 0) continue;
      // A spare helps only a leg that can be rebuilt (mirror: an active leg of its group; raid5/6: enough active others).
      const rebuildable = failed.find((m) => canRebuild(entry.assembled, m.role, (n) => members.find((x) => x.name === n)?.state ?? 'failed'));
      const spare = rebuildable === undefined ? undefined : this.freeSpare(entry);
      if (spare !== undefined && rebuildable !== undefined && !this.replacing.has(keep.name)) {
        this.replaceWithSpare(keep.name, rebuildable.name, spare);
        continue;
      }
      for (const m of failed) this.maybeProbe(keep, entry, m.name, m.index);
    }
  }

  /** A configured spare of the volume that is unused, idle and large enough for every leg (checksums included). */
  private freeSpare(entry: VolumeEntry): string | undefined {
    const need = legNeedBytes(entry.assembled);
    return (entry.assembled.config.spares ?? []).find((name) => {
      const e = this.host.registry.elements.get(name);
      if (e === undefined || this.host.registry.ownerOf(name) !== undefined || this.host.dataPath.elementState(e.index) !== 'spare') return false;
      // Size unknown (a remote not asked yet): replace.ts checks it and fails the spare if small.
      if (e.dataSizeBytes === 0 || e.dataSizeBytes >= need) return true;
      this.sayOnce(`${entry.assembled.config.name}/${name}`, `volume ${entry.assembled.config.name}: spare ${name} holds ${e.dataSizeBytes} data bytes, a leg needs ${need}${entry.assembled.config.integrity === true ? ' (checksums included)' : ''}: skipped`);
      return false;
    });
  }

  /** Logs `line` once per key (a too-small spare is seen every tick); bounded by the spares configured. */
  private sayOnce(key: string, line: string): void {
    if (this.said.has(key)) return;
    if (this.said.size >= 1024) this.said.clear();
    this.said.add(key);
    this.host.log('warn', line);
  }

  private replaceWithSpare(volume: string, failed: string, spare: string): void {
    this.replacing.add(volume);
    this.host.exclusive(async () => {
      if (this.keeper.isClosed || this.keeper.liveState(failed) !== 'failed') return;
      await replaceLeg(this.host, this.keeper, volume, failed, spare, 'automatic: hot spare');
    }).catch((err: Error) => {
      if (this.keeper.isClosed) return;
      this.host.log('error', `volume ${volume}: could not rebuild ${failed} onto spare ${spare}: ${err.message}`);
      // The spare is unusable for now: fail it so the next tick does not try it again at once.
      const e = this.host.registry.elements.get(spare);
      if (e !== undefined && this.host.registry.ownerOf(spare) === undefined) {
        e.idleState = 'failed';
        e.reason = `spare unusable: ${err.message}`;
        this.host.dataPath.setElementState(e.index, 'failed');
      }
    }).finally(() => this.replacing.delete(volume));
  }

  private maybeProbe(keep: Keep, entry: VolumeEntry, name: string, index: number): void {
    const config = this.host.registry.elements.get(name)?.config;
    const member = entry.assembled.elements.find((e) => e.config.name === name);
    // Only remote legs come back by themselves; a leg failed on request stays out.
    if (config === undefined || config.location.kind === 'local' || member?.faulty === true || member?.reason?.startsWith('failed by request') === true) return;
    const now = Date.now();
    let p = this.probes.get(name);
    if (p === undefined) {
      p = { armed: false, nextMs: 0, delayMs: PROBE_FIRST_MS, returnedMs: 0, busy: false, misses: 0, said: '' };
      this.probes.set(name, p);
    }
    if (!p.armed) {
      const flapping = p.returnedMs > 0 && now - p.returnedMs < FLAP_WINDOW_MS;
      p.delayMs = flapping ? Math.min(PROBE_MAX_MS, p.delayMs * 2) : PROBE_FIRST_MS;
      p.nextMs = now + p.delayMs;
      p.misses = 0;
      p.armed = true;
    }
    if (p.busy || now < p.nextMs) return;
    p.busy = true;
    void this.probe(keep, name, index, p).finally(() => {
      p.busy = false;
    });
  }

  private async probe(keep: Keep, name: string, index: number, p: ProbeState): Promise<void> {
    try {
      const bytes = await this.host.dataPath.raw.read(index, 0, SUPERBLOCK_BYTES);
      await this.host.exclusive(() => returnLeg(this.host, this.keeper, keep, name, bytes));
      if (this.keeper.liveState(name) !== 'failed') {
        p.armed = false;
        p.returnedMs = Date.now();
        p.said = '';
      }
    } catch (err) {
      if (++p.misses > PROBES_AT_FIRST_PACE) p.delayMs = Math.min(PROBE_MAX_MS, p.delayMs * 2);
      p.nextMs = Date.now() + p.delayMs;
      const why = (err as Error).message;
      if (why !== p.said && !this.keeper.isClosed) this.host.log('info', `volume ${keep.name}: element ${name} still out: ${why}`);
      p.said = why;
    }
  }
}

/**
 * Bytes after the header a spare must hold to take any leg of `vol`: the largest leg's data and,
 * on an integrity volume, its checksum area after it (meta/layout.ts; replace.ts refuses less).
 */
export function legNeedBytes(vol: Pick<AssembledVolume, 'config' | 'elements'>): number {
  let need = 0;
  for (const e of vol.elements) {
    const area = elementIntegrityArea(vol, e);
    need = Math.max(need, area !== undefined ? area.offsetBytes + area.sizeBytes - DATA_OFFSET_BYTES : e.dataSizeBytes);
  }
  return need;
}
