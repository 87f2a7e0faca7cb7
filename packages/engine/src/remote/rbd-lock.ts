// Ownership of rbd:// elements between hosts (issue 12 item 2; docs/rbd.md "Failover between
// hosts"). Before assembly the daemon takes an advisory cls lock named `onestack` on the image's
// header object (cookie = this host's id from DATA/host-id) and keeps a lease in an xattr of that
// object (`onestack.lease`, renewed every leaseMs/3). Neither `rbd lock add` (it takes `rbd_lock`,
// the lock of librbd's exclusive-lock feature: the gateway's writes would hang) nor `rbd
// image-meta` (it needs that exclusive lock: each renewal would pull it from the gateway, and hang
// while a dead gateway still holds it) are used. A holder whose lease does not move for a whole
// lease is dead: its clients are blocklisted, its locks removed and ours taken. A holder that
// loses the lock, or cannot renew its lease in time without proof of an outage of the lock object,
// fences itself (rbd-fence.ts). The timing rule and its argument: rbd-lease.ts.
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { EngineError } from '../api-types.js';
import type { ElementConfig, RbdTarget } from '../config/types.js';
import {
  LEASE_KEY, type LeaseObservation, type LeaseState, decide, deadlineOf, formatLease, holderClock, newLeaseState, normalizeAddrs, observe, parseLease, renewPeriodMs, wakeAt,
} from './rbd-lease.js';
import {
  BLOCKLIST_S, cli, failed, fence, fenceEarlierRun, headerInterval, headerObject, headerUnservableAt, LOCK_NAME, lockers, lockGet, readLease, spec, writeLease,
} from './rbd-lock-cli.js';

export type LockLog = (level: 'info' | 'warn' | 'error', msg: string) => void;
export type LockLostFn = (element: string, reason: string) => void;

export const LEASE_MS_DEFAULT = 15_000;
const LEASE_MS_MIN = 2_000;
const LEASE_MS_MAX = 300_000;
/** The keeper looks at its lease this often besides its exact deadline timer (a late timer, a suspended machine). */
const TICK_MS = 500;
/** A taker's watch restarts at most this often when the lock object's placement group changes under it. */
const WATCH_ROUNDS_MAX = 3;
/** Setting it to `force` takes a volume over without waiting for the holder's lease. */
export const TAKEOVER_ENV = 'ONESTACK_RBD_TAKEOVER';
export const LEASE_ENV = 'ONESTACK_RBD_LEASE_MS';

interface Held {
  readonly runDir: string;
  readonly target: RbdTarget;
  readonly element: string;
  readonly header: string;
  readonly host: string;
  readonly leaseMs: number;
  seq: number;
  lease: LeaseState;
  lost: string | null;
  /** Releasing: no renewal starts any more. */
  stopping: boolean;
  tick: NodeJS.Timeout | null;
  wake: NodeJS.Timeout | null;
  /** Kills the CLI calls in flight when the lease is lost. */
  readonly abort: AbortController;
  renewal: Promise<void> | null;
  /** The client addresses the last successful lease write carried (compared to send new ones at once). */
  writtenAddrs: string;
  /** What the log said about the current overdue episode. */
  warned: 'stranded' | 'servable' | null;
  readonly log: LockLog;
}

const held = new Map<string, Held[]>();
const lossHandlers = new Map<string, LockLostFn>();
const taking = new Map<string, Promise<void>>();
const clientAddrs = new Map<string, string[]>();
const addrKey = (dataDir: string, element: string): string => `${dataDir}\0${element}`;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const s1 = (ms: number): string => (ms / 1000).toFixed(1);

/** CLOCK_BOOTTIME in ms (counts suspended time), NaN where /proc/uptime cannot be read. */
function bootMs(): number {
  try {
    return Number(fs.readFileSync('/proc/uptime', 'latin1').split(' ')[0]) * 1000;
  } catch {
    return NaN;
  }
}

const realClock = (): (() => number) => holderClock(() => performance.now(), bootMs);
let clock = realClock();

/** Tests only: the holder's clock (undefined: the real one again). */
export function setRbdLockClock(fn?: () => number): void {
  clock = fn ?? realClock();
}

/** Whether the environment asks to take volumes over without waiting for their holder's lease. */
export function forcedTakeover(): boolean {
  return process.env[TAKEOVER_ENV] === 'force';
}

/** The lease length: ONESTACK_RBD_LEASE_MS (bounded), else 15 s. */
export function leaseMs(): number {
  const n = Number(process.env[LEASE_ENV]);
  return Number.isFinite(n) && n > 0 ? Math.min(LEASE_MS_MAX, Math.max(LEASE_MS_MIN, Math.round(n))) : LEASE_MS_DEFAULT;
}

/** This host's id (the lock cookie): kept in DATA/host-id, made once as HOSTNAME-RANDOM. */
export function hostId(dataDir: string): string {
  const file = path.join(dataDir, 'host-id');
  try {
    const id = fs.readFileSync(file, 'utf8').trim();
    if (/^[A-Za-z0-9_.-]{1,80}$/.test(id)) return id;
  } catch { /* first start */ }
  const id = `${os.hostname().replace(/[^A-Za-z0-9_.-]/g, '_').slice(0, 48)}-${randomBytes(4).toString('hex')}`;
  fs.writeFileSync(file, `${id}\n`, { mode: 0o600 });
  return id;
}

/**
 * The librbd path's Ceph client address(es) of an element's open image (rados_getaddrs: `v2:IP:PORT/NONCE`,
 * `IP:PORT/NONCE` or a `[v2:…,v1:…]` vector). They go into the lease at once, so a host taking the volume
 * over blocklists exactly them instead of every client of the image. Call again after each reopen.
 */
export function setRbdClientAddrs(dataDir: string, element: string, addrs: readonly string[]): void {
  const list = normalizeAddrs(addrs.join(','));
  if (String(clientAddrs.get(addrKey(dataDir, element)) ?? []) === String(list)) return;
  clientAddrs.set(addrKey(dataDir, element), list);
  const h = held.get(dataDir)?.find((x) => x.element === element);
  if (h !== undefined) settle(h, { kind: 'kick' });
}

function leaseValue(h: { host: string; seq: number; leaseMs: number; runDir: string; element: string }): string {
  return formatLease({ host: h.host, seq: h.seq, leaseMs: h.leaseMs, renewedMs: Date.now(), pid: process.pid, addrs: clientAddrs.get(addrKey(h.runDir, h.element)) ?? [] });
}

/**
 * Watches a foreign holder's lease (rbd-lease.ts has the rule it pairs with): moved when a read
 * differs from the first; not moved when a read issued a whole lease + 1 s after the first (its
 * own length if longer; monotonic clock) still returns it and the lock object's placement group
 * kept its interval meanwhile. A changed interval (an OSD restart, a remap: the holder may have
 * been riding out that outage) starts the watch again.
 */
async function leaseMoves(t: RbdTarget, header: string, ownLeaseMs: number, log: (msg: string) => void): Promise<{ moved: boolean; lease: string | null }> {
  for (let round = 1; ; round++) {
    const before = await headerInterval(t, header);
    const first = await readLease(t, header);
    const windowMs = Math.min(LEASE_MS_MAX, Math.max(ownLeaseMs, parseLease(first)?.leaseMs ?? 0)) + 1000;
    const fromMs = performance.now();
    for (;;) {
      await sleep(500);
      const issuedMs = performance.now();
      if ((await readLease(t, header)) !== first) return { moved: true, lease: first };
      if (issuedMs - fromMs >= windowMs) break;
    }
    const after = await headerInterval(t, header);
    if (after === before) return { moved: false, lease: first };
    if (round >= WATCH_ROUNDS_MAX) throw new Error(`the lock object's placement group kept changing while its lease was watched (${before} → ${after})`);
    log(`rbd ${spec(t)}: the lock object's placement group changed while its lease was watched (${before} → ${after}: an OSD restarted or it moved); watching again`);
  }
}

function refusal(element: string, t: RbdTarget, holder: string, lease: string | null, ms: number): EngineError {
  const renewedMs = parseLease(lease)?.renewedMs;
  const age = renewedMs === undefined ? '' : `, lease renewed ${s1(Date.now() - renewedMs)} s ago`;
  return new EngineError('conflict',
    `element ${element}: rbd image ${spec(t)} is held by host ${holder} (its lease moved within ${ms / 1000} s${age}); refusing to serve its volume so two hosts never write it`,
    `rbd://${spec(t)}`, `stop onestack on ${holder}; if that host is dead, start again after its lease expired, or force the takeover: ${TAKEOVER_ENV}=force onestack serve …`);
}

/** Takes the image's lock for this host, fencing a dead holder; refuses (EngineError conflict) while another host's lease moves. */
async function acquire(dataDir: string, element: string, t: RbdTarget, log: LockLog, force: boolean): Promise<Held> {
  const host = hostId(dataDir);
  const ms = leaseMs();
  const header = await headerObject(t);
  const startedMs = performance.now();
  for (let attempt = 0; attempt < 3; attempt++) {
    const current = await lockers(t, header);
    const other = current.find((l) => l.cookie !== host);
    if (current.some((l) => l.cookie === host)) {
      const earlier = await fenceEarlierRun(t, parseLease(await readLease(t, header))?.addrs ?? []);
      log('info', `rbd ${spec(t)} (element ${element}): this host (${host}) holds the lock from an earlier run; keeping it`
        + (earlier.length === 0 ? '' : `; fenced that run's librbd client ${earlier.join(', ')} (blocklisted ${BLOCKLIST_S} s)`));
    } else if (other === undefined) {
      if (!(await lockGet(t, header, host))) continue; // another host was quicker: look again
    } else {
      const seen = force ? { moved: false, lease: await readLease(t, header) } : await leaseMoves(t, header, ms, (m) => log('warn', m));
      if (seen.moved) throw refusal(element, t, other.cookie, seen.lease, ms);
      const waitedS = s1(performance.now() - startedMs);
      const fenced = await fence(t, header, other, parseLease(seen.lease)?.addrs ?? [], (m) => log('warn', m));
      log('warn', `rbd ${spec(t)} (element ${element}): ${force ? `forced takeover (${TAKEOVER_ENV}=force)` : `host ${other.cookie}'s lease did not move for ${waitedS} s`}: `
        + `fenced ${fenced.length === 0 ? 'no open client' : `${fenced.join(', ')} (blocklisted ${BLOCKLIST_S} s)`}, removed its locks; taking the volume over`);
      if (!(await lockGet(t, header, host))) continue;
    }
    const writeStartMs = clock();
    const value = leaseValue({ host, seq: 0, leaseMs: ms, runDir: dataDir, element });
    await writeLease(t, header, value);
    log('info', `rbd ${spec(t)} (element ${element}): locked by this host (${host}), lease ${ms / 1000} s, taken in ${Math.round(performance.now() - startedMs)} ms`);
    return { runDir: dataDir, target: t, element, header, host, leaseMs: ms, seq: 0, lease: newLeaseState(ms, writeStartMs), lost: null, stopping: false,
      tick: null, wake: null, abort: new AbortController(), renewal: null, writtenAddrs: String(parseLease(value)?.addrs ?? []), warned: null, log };
  }
  throw new EngineError('conflict', `element ${element}: rbd image ${spec(t)}: the lock changed hands three times while taking it`, `rbd://${spec(t)}`, 'another host is starting the same volume: start one only');
}

function lose(h: Held, reason: string): void {
  if (h.lost !== null) return;
  h.lost = reason;
  if (h.tick !== null) clearInterval(h.tick);
  if (h.wake !== null) clearTimeout(h.wake);
  h.abort.abort(); // a lease write landing now would only delay the next owner
  lossHandlers.get(h.runDir)?.(h.element, reason);
}

/** Runs the lease decision (rbd-lease.ts decide) and starts what it asks for; re-arms the deadline timer. */
function pump(h: Held): void {
  if (h.lost !== null || h.stopping) return;
  const { state, actions } = decide(h.lease, clock());
  h.lease = state;
  for (const a of actions) {
    if (a.kind === 'fence') return lose(h, a.reason);
    if (a.kind === 'renew') h.renewal = renewOnce(h, a.timeoutMs);
    else void checkOnce(h, a.timeoutMs);
  }
  if (h.wake !== null) clearTimeout(h.wake);
  h.wake = setTimeout(() => pump(h), Math.max(0, wakeAt(h.lease) - clock()));
  h.wake.unref();
}

/** Applies what a CLI call found, logs a change of episode, and decides again. */
function settle(h: Held, o: LeaseObservation): void {
  if (h.lost !== null) return;
  const before = h.lease;
  h.lease = observe(before, clock(), o);
  if (h.lease.fenced !== null) return lose(h, h.lease.fenced);
  const where = `rbd ${spec(h.target)} (element ${h.element})`;
  if (o.kind === 'renewed' && h.warned !== null) {
    h.log('info', `${where}: lease renewed again`);
    h.warned = null;
  } else if (o.kind === 'checked' && o.unservableAtMs !== null && h.warned !== 'stranded') {
    h.log('warn', `${where}: the lease is not renewed for ${s1(clock() - before.okMs)} s (${before.lastError ?? 'no answer yet'}); the monitors say its lock object cannot be served to anyone (${o.why ?? ''}), `
      + 'so no host can take the lock meanwhile: serving on, retrying');
    h.warned = 'stranded';
  } else if (o.kind === 'checked' && o.unservableAtMs === null && h.warned !== 'servable') {
    h.log('warn', `${where}: the lease is not renewed for ${s1(clock() - before.okMs)} s (${before.lastError ?? 'no answer yet'}) and the monitors do not show its lock object unservable (${o.why ?? ''}); `
      + `stopping serving in ${s1(deadlineOf(h.lease) - clock())} s unless it is renewed`);
    h.warned = 'servable';
  }
  if (o.kind === 'renewed' && h.writtenAddrs !== String(clientAddrs.get(addrKey(h.runDir, h.element)) ?? [])) h.lease = observe(h.lease, clock(), { kind: 'kick' });
  pump(h);
}

async function renewOnce(h: Held, timeoutMs: number): Promise<void> {
  const startedMs = clock();
  const signal = h.abort.signal;
  try {
    const now = await lockers(h.target, h.header, { timeoutMs, signal });
    if (!now.some((l) => l.cookie === h.host)) return settle(h, { kind: 'lockGone', why: now.length === 0 ? 'its lock was removed' : `the lock is now held by host ${now[0]!.cookie}` });
    h.seq++;
    const value = leaseValue(h);
    const writeStartMs = clock();
    await writeLease(h.target, h.header, value, { timeoutMs: timeoutMs - (writeStartMs - startedMs), signal });
    h.writtenAddrs = String(parseLease(value)?.addrs ?? []);
    settle(h, { kind: 'renewed', writeStartMs });
  } catch (err) {
    settle(h, { kind: 'renewFailed', why: (err as Error).message });
  }
}

async function checkOnce(h: Held, timeoutMs: number): Promise<void> {
  const startedMs = clock();
  const r = await headerUnservableAt(h.target, h.header, startedMs, timeoutMs, h.abort.signal);
  settle(h, { kind: 'checked', startedMs, unservableAtMs: r.atMs, why: r.why });
}

function rbdTargetOf(e: ElementConfig): RbdTarget | undefined {
  return e.location.kind === 'nbd' ? e.location.rbd : undefined;
}

/**
 * Takes the lock of every rbd:// element of the config (before assembly: nothing is written
 * before) and starts keeping the leases. Throws the refusal of a foreign live holder; locks
 * taken before that stay registered for releaseRbdLocks. `force` (ONESTACK_RBD_TAKEOVER=force,
 * read at start-up only: never for elements added later) skips waiting for a holder's lease.
 */
export function takeRbdLocks(dataDir: string, elements: readonly ElementConfig[], log: LockLog, force = false): Promise<void> {
  // One at a time per data dir: a start-up probe and an `element add` must not both take one image.
  const next = (taking.get(dataDir) ?? Promise.resolve()).then(() => takeNow(dataDir, elements, log, force));
  taking.set(dataDir, next.catch(() => undefined));
  return next;
}

async function takeNow(dataDir: string, elements: readonly ElementConfig[], log: LockLog, force: boolean): Promise<void> {
  const mine: Held[] = held.get(dataDir) ?? [];
  held.set(dataDir, mine);
  for (const e of elements) {
    const t = rbdTargetOf(e);
    if (t === undefined || mine.some((h) => h.element === e.name)) continue;
    const h = await acquire(dataDir, e.name, t, log, force).catch((err: unknown) => {
      if (err instanceof EngineError) throw err;
      // No such image: nobody can hold it; the gateway fails with its own reason (the leg stays failed).
      if (/^rbd info .*No such file or directory/s.test((err as Error).message)) return null;
      // Unknown owner: another host may serve the volume from the image, so our local leg must not either.
      throw new EngineError('conflict', `element ${e.name}: cannot take the ownership lock of rbd image ${spec(t)} (${(err as Error).message}); refusing to serve its volume, another host may hold it`,
        `rbd://${spec(t)}`, 'start again once the cluster answers');
    });
    if (h === null) continue;
    mine.push(h);
    h.tick = setInterval(() => pump(h), TICK_MS);
    h.tick.unref();
    pump(h);
  }
}

/** Calls fn when a lock of this data dir is lost (at once for one lost already); returns the unsubscribe. */
export function onRbdLockLost(dataDir: string, fn: LockLostFn): () => void {
  lossHandlers.set(dataDir, fn);
  for (const h of held.get(dataDir) ?? []) if (h.lost !== null) fn(h.element, h.lost);
  return () => { if (lossHandlers.get(dataDir) === fn) lossHandlers.delete(dataDir); };
}

/** The lock state of an element, for status: null when it is not an rbd element of this data dir. */
/**
 * When this host last proved it still owns the element's image, on the holder's clock: the start
 * of its last successful lease write, or the latest instant the monitors showed the lock object
 * unservable (no host can take it then). `nowMs` is that clock's now, `periodMs` the renewal
 * period. null: the element's lock is not held here.
 */
export function rbdOwnershipProof(dataDir: string, element: string): { provenMs: number; nowMs: number; periodMs: number; lost: string | null } | null {
  const h = held.get(dataDir)?.find((x) => x.element === element);
  if (h === undefined) return null;
  return { provenMs: Math.max(h.lease.okMs, h.lease.strandedMs ?? -Infinity), nowMs: clock(), periodMs: renewPeriodMs(h.leaseMs), lost: h.lost ?? h.lease.fenced };
}

/** Renews the element's lease now rather than at its period (rbd-ack-gate.ts waits for a fresh proof). */
export function renewRbdLeaseNow(dataDir: string, element: string): void {
  const h = held.get(dataDir)?.find((x) => x.element === element);
  if (h !== undefined && h.lost === null && !h.lease.renewing) settle(h, { kind: 'kick' });
}

/** Whether this engine holds any ownership lock (the acknowledgement gate's fast path). */
export function rbdLocksHeld(dataDir: string): boolean {
  return (held.get(dataDir)?.length ?? 0) > 0;
}

export function rbdLockOf(dataDir: string, element: string): { host: string; leaseMs: number; lost?: string } | null {
  const h = held.get(dataDir)?.find((x) => x.element === element);
  return h === undefined ? null : { host: h.host, leaseMs: h.leaseMs, ...(h.lost !== null ? { lost: h.lost } : {}) };
}

async function releaseOne(h: Held, log: LockLog): Promise<void> {
  h.stopping = true;
  if (h.tick !== null) clearInterval(h.tick);
  if (h.wake !== null) clearTimeout(h.wake);
  clientAddrs.delete(addrKey(h.runDir, h.element));
  await h.renewal; // a renewal in flight must not write the lease back after we removed it
  if (h.lost !== null) return;
  h.lost = 'released';
  h.abort.abort(); // a stranded check in flight
  try {
    const rm = await cli('rados', h.target, ['-p', h.target.pool, 'rmxattr', h.header, LEASE_KEY]);
    if (rm.code !== 0) throw failed(`rados rmxattr ${h.header} ${LEASE_KEY}`, rm);
    const mineNow = (await lockers(h.target, h.header)).find((l) => l.cookie === h.host);
    if (mineNow !== undefined) {
      const br = await cli('rados', h.target, ['-p', h.target.pool, 'lock', 'break', h.header, LOCK_NAME, mineNow.name, '--lock-cookie', h.host]);
      if (br.code !== 0) throw failed('rados lock break', br);
    }
    log('info', `rbd ${spec(h.target)} (element ${h.element}): lock released`);
  } catch (err) {
    log('warn', `rbd ${spec(h.target)} (element ${h.element}): could not release the lock (${(err as Error).message}); another host takes over once the lease expired`);
  }
}

/** Clean stop (after the gateways stopped): drops the leases and the locks, so another host takes over at once. */
export async function releaseRbdLocks(dataDir: string, log: LockLog): Promise<void> {
  await taking.get(dataDir);
  const mine = held.get(dataDir) ?? [];
  held.delete(dataDir);
  lossHandlers.delete(dataDir);
  taking.delete(dataDir);
  for (const h of mine) await releaseOne(h, log);
}

/** One element's lock (element removed, after its gateway stopped). */
export async function releaseRbdLockOf(dataDir: string, element: string, log: LockLog): Promise<void> {
  const mine = held.get(dataDir) ?? [];
  const i = mine.findIndex((h) => h.element === element);
  if (i < 0) return;
  const [h] = mine.splice(i, 1);
  await releaseOne(h!, log);
}
