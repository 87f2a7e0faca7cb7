// Watches the failed legs of mirror and raid5/6 volumes once a second: a volume with a free spare (config
// volumes[].spares) gets the failed leg replaced by it; a failed REMOTE leg is probed with a raw
// read of its superblock through the data path's own link, and comes back when it answers
// (replace.ts returnLeg), without a restart. Such a leg shows as `stale` in status (retryView),
// while the data path keeps it `failed` (it takes no I/O either way). Probes run every 3 s for
// the first 2 minutes of an outage (a remote restarted within that is back within seconds), then
// double up to once a minute; a leg that fails again soon after it came back (a flapping remote)
// starts from a longer pause.
import type { ElementRetryStatus, ElementStatus } from '../api-types.js';
import { elementIntegrityArea } from '../meta/assemble.js';
import { DATA_OFFSET_BYTES, SUPERBLOCK_BYTES, type AssembledVolume } from '../meta/types.js';
import type { VolumeEntry } from '../state/registry.js';
import type { KeeperHost } from './host.js';
import { canRebuild, type Keep, type MirrorKeeper } from './keeper.js';
import { replaceLeg, returnLeg } from './replace.js';
import { diverged, rejoinDiverged } from './split.js';

const TICK_MS = 1000;
/** Probe pace at the start of an outage; also the first probe's delay (a failure is seen as such before a return). */
export const PROBE_FAST_MS = 3000;
/** How long an outage is probed at the fast pace before backing off. */
export const FAST_WINDOW_MS = 120_000;
/** The slowest pace: once a minute. */
export const PROBE_MAX_MS = 60_000;
/** A leg failing again within this long after coming back counts as flapping (its fast pace doubles, up to the cap). */
const FLAP_WINDOW_MS = 60_000;

/**
 * Pause before the next probe after `misses` failed ones in an outage that began `outageMs` ago:
 * `basePaceMs` during the fast window, then doubling from it for each probe since, capped.
 */
export function probeDelayMs(basePaceMs: number, outageMs: number, previousMs: number): number {
  if (outageMs < FAST_WINDOW_MS) return basePaceMs;
  return Math.min(PROBE_MAX_MS, Math.max(basePaceMs, previousMs) * 2);
}

interface ProbeState {
  /** A failure episode is being watched (false once the leg came back). */
  armed: boolean;
  /** When this outage was first seen. */
  sinceMs: number;
  /** The volume's event counter then: a leg answering with a higher one diverged (split.ts). */
  leftEvents: number;
  nextMs: number;
  delayMs: number;
  /** The fast pace of this leg: PROBE_FAST_MS, doubled per recent flap (capped). */
  basePaceMs: number;
  returnedMs: number;
  busy: boolean;
  /** Failed probes in this episode. */
  misses: number;
  /** Last reason logged, so a remote that stays away is not logged every probe. */
  said: string;
}

/** The leg watch of each keeper, so status can show a leg's retries without the keeper passing them on. */
const watches = new WeakMap<MirrorKeeper, LegWatch>();

/**
 * Status view of an element: a failed remote leg that the watch probes is `stale`, with its
 * retries and a reason saying so; anything else is returned as it is.
 */
export function retryView(keeper: MirrorKeeper, status: ElementStatus, nowMs = Date.now()): ElementStatus {
  const retry = status.state === 'failed' ? watches.get(keeper)?.retryOf(status.name) : undefined;
  if (retry === undefined) return status;
  const next = retry.nextAttemptMs === null ? 'first probe soon' : `next probe in ${Math.max(0, (retry.nextAttemptMs - nowMs) / 1000).toFixed(0)} s`;
  const away = `${Math.max(0, (nowMs - retry.sinceMs) / 1000).toFixed(0)} s`;
  const why = retry.lastError ?? status.reason ?? 'I/O error';
  return { ...status, state: 'stale', reason: `remote away for ${away} (${why}); ${retry.attempts} probe(s) so far, ${next}`, retry };
}

export class LegWatch {
  private timer: NodeJS.Timeout | null = null;
  private readonly probes = new Map<string, ProbeState>();
  private readonly replacing = new Set<string>();
  private readonly said = new Set<string>();

  constructor(
    private readonly host: KeeperHost,
    private readonly keeper: MirrorKeeper,
  ) {
    watches.set(keeper, this);
  }

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
      // No spare taken nor leg returned while a volume reshapes (its rebuild would copy by one geometry while two are live).
      const r = entry.assembled.reshape;
      if (r !== undefined) {
        this.sayOnce(`reshape/${keep.name}/${r.startedMs}/${failed.map((m) => m.name).join()}`, `volume ${keep.name}: ${failed.map((m) => m.name).join(', ')} failed; a hot spare or its return waits for the reshape to finish`);
        continue;
      }
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

  /** Whether a failed leg of `entry` comes back by itself: a remote leg not failed on request. */
  private retriable(entry: VolumeEntry, name: string): boolean {
    const config = this.host.registry.elements.get(name)?.config;
    const member = entry.assembled.elements.find((e) => e.config.name === name);
    return config !== undefined && config.location.kind !== 'local' && member !== undefined && member.faulty !== true && member.reason?.startsWith('failed by request') !== true;
  }

  /** The retries of a failed remote leg this watch probes (undefined: not one, e.g. local or failed on request). */
  retryOf(name: string): ElementRetryStatus | undefined {
    const entry = this.host.registry.ownerOf(name);
    const index = this.host.registry.elements.get(name)?.index;
    if (entry === undefined || index === undefined || this.keeper.keep(entry.assembled.config.name) === undefined) return undefined;
    if (this.host.dataPath.elementState(index) !== 'failed' || !this.retriable(entry, name)) return undefined;
    const p = this.probes.get(name);
    if (p === undefined || !p.armed) return { attempts: 0, delayMs: PROBE_FAST_MS, nextAttemptMs: null, sinceMs: Date.now(), lastError: null };
    return { attempts: p.misses, delayMs: p.delayMs, nextAttemptMs: p.busy ? Date.now() : p.nextMs, sinceMs: p.sinceMs, lastError: p.said === '' ? null : p.said };
  }

  private maybeProbe(keep: Keep, entry: VolumeEntry, name: string, index: number): void {
    // Only remote legs come back by themselves; a leg failed on request stays out.
    if (!this.retriable(entry, name)) return;
    const now = Date.now();
    let p = this.probes.get(name);
    if (p === undefined) {
      p = { armed: false, sinceMs: now, leftEvents: 0, nextMs: 0, delayMs: PROBE_FAST_MS, basePaceMs: PROBE_FAST_MS, returnedMs: 0, busy: false, misses: 0, said: '' };
      this.probes.set(name, p);
    }
    if (!p.armed) {
      const flapping = p.returnedMs > 0 && now - p.returnedMs < FLAP_WINDOW_MS;
      p.basePaceMs = flapping ? Math.min(PROBE_MAX_MS, p.basePaceMs * 2) : PROBE_FAST_MS;
      p.delayMs = p.basePaceMs;
      p.sinceMs = now;
      p.leftEvents = entry.assembled.eventCount;
      p.nextMs = now + p.delayMs;
      p.misses = 0;
      p.said = '';
      p.armed = true;
      if (flapping) this.host.log('warn', `volume ${keep.name}: element ${name} failed again ${((now - p.returnedMs) / 1000).toFixed(0)} s after it came back; probing every ${p.basePaceMs / 1000} s`);
    }
    if (p.busy || now < p.nextMs) return;
    p.busy = true;
    void this.probe(keep, name, index, p).finally(() => {
      p.busy = false;
    });
  }

  private async probe(keep: Keep, name: string, index: number, p: ProbeState): Promise<void> {
    const startMs = Date.now();
    try {
      const bytes = await this.host.dataPath.raw.read(index, 0, SUPERBLOCK_BYTES);
      await this.host.exclusive(async () => {
        const split = diverged(this.host, this.keeper, keep, name, bytes, p.leftEvents);
        if (split !== undefined) await rejoinDiverged(this.host, this.keeper, keep, name, split, p.leftEvents);
        else await returnLeg(this.host, this.keeper, keep, name, bytes);
      });
      if (this.keeper.liveState(name) !== 'failed') {
        p.armed = false;
        p.returnedMs = Date.now();
        this.host.log('info', `volume ${keep.name}: element ${name} back after ${((p.returnedMs - p.sinceMs) / 1000).toFixed(1)} s and ${p.misses} failed probe(s)`);
        p.said = '';
      }
    } catch (err) {
      p.misses++;
      const now = Date.now();
      p.delayMs = probeDelayMs(p.basePaceMs, now - p.sinceMs, p.delayMs);
      // Paced from the probe's start: a probe that waits out the element's timeoutMs does not stretch the pace.
      p.nextMs = Math.max(now, startMs + p.delayMs);
      const why = (err as Error).message;
      if (why !== p.said && !this.keeper.isClosed) this.host.log('info', `volume ${keep.name}: element ${name} still out: ${why} (next probe in ${(p.delayMs / 1000).toFixed(0)} s)`);
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
