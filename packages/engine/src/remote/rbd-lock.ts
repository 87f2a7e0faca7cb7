// Ownership of rbd:// elements between hosts (issue 12 item 2; docs/rbd.md "Failover between
// hosts"). Before assembly the daemon takes an advisory cls lock named `onestack` on the image's
// header object (cookie = this host's id from DATA/host-id) and keeps a lease in an xattr of that
// object (`onestack.lease`, a counter renewed every leaseMs/3). Neither `rbd lock add` (it takes
// `rbd_lock`, the lock of librbd's exclusive-lock feature: the gateway's writes would hang) nor
// `rbd image-meta` (it needs that exclusive lock: each renewal would pull it from the gateway, and
// hang while a dead gateway still holds it) are used. A holder whose lease does not move for a whole lease is dead: its clients are
// blocklisted (`ceph osd blocklist add`), its locks removed and ours taken. A holder that loses
// the lock or cannot renew for a lease fences itself (rbd-fence.ts).
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { EngineError } from '../api-types.js';
import type { ElementConfig, RbdTarget } from '../config/types.js';

export type LockLog = (level: 'info' | 'warn' | 'error', msg: string) => void;
export type LockLostFn = (element: string, reason: string) => void;

const LOCK_NAME = 'onestack';
const LEASE_KEY = 'onestack.lease';
export const LEASE_MS_DEFAULT = 15_000;
const LEASE_MS_MIN = 2_000;
const LEASE_MS_MAX = 300_000;
const CLI_TIMEOUT_MS = 30_000;
const OUTPUT_BYTES_MAX = 1 << 20;
/** How long a fenced client stays blocklisted: long past any restart of its gateway. */
const BLOCKLIST_S = 3600;
/** Setting it to `force` takes a volume over without waiting for the holder's lease. */
export const TAKEOVER_ENV = 'ONESTACK_RBD_TAKEOVER';
export const LEASE_ENV = 'ONESTACK_RBD_LEASE_MS';

interface Held {
  readonly target: RbdTarget;
  readonly element: string;
  readonly header: string;
  readonly host: string;
  readonly leaseMs: number;
  seq: number;
  /** When the last successful renewal started (a renewal that fails for leaseMs after it loses the volume). */
  lastOkMs: number;
  lost: string | null;
  timer: NodeJS.Timeout | null;
  busy: boolean;
  /** A stranded-check (headerStranded) runs: at most one at a time. */
  checking?: boolean;
  /** The last overdue renewal found no OSD up for the lock object (logged once per episode). */
  stranded?: boolean;
  log?: LockLog;
}

const held = new Map<string, Held[]>();
const lossHandlers = new Map<string, LockLostFn>();
const taking = new Map<string, Promise<void>>();

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

interface CliResult { code: number; stdout: string; stderr: string }

/** One ceph CLI call (rbd, rados, ceph) with the element's conf, user and keyring; never throws. */
function cli(tool: 'rbd' | 'rados' | 'ceph', target: RbdTarget, args: readonly string[]): Promise<CliResult> {
  const auth = ['--conf', target.conf, '--id', target.id, ...(target.keyring !== undefined ? ['--keyring', target.keyring] : []), '--client_mount_timeout', '10'];
  return new Promise((resolve) => {
    execFile(tool, [...auth, ...args], { timeout: CLI_TIMEOUT_MS, maxBuffer: OUTPUT_BYTES_MAX, killSignal: 'SIGKILL' }, (err, stdout, stderr) => {
      const code = err === null ? 0 : typeof (err as NodeJS.ErrnoException).code === 'number' ? Number((err as NodeJS.ErrnoException).code) : 1;
      resolve({ code, stdout, stderr: err !== null && stderr.trim() === '' ? err.message : stderr });
    });
  });
}

function failed(what: string, r: CliResult): Error {
  return new Error(`${what}: ${(r.stderr.trim().split('\n').pop() ?? '').slice(0, 300) || `exit status ${r.code}`}`);
}

const spec = (t: RbdTarget): string => `${t.pool}/${t.image}`;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function headerObject(t: RbdTarget): Promise<string> {
  const r = await cli('rbd', t, ['info', '--format', 'json', spec(t)]);
  if (r.code !== 0) throw failed(`rbd info ${spec(t)}`, r);
  const id = (JSON.parse(r.stdout) as { id?: string }).id;
  if (id === undefined) throw new Error(`rbd info ${spec(t)}: no image id (format 1 images are not supported)`);
  return `rbd_header.${id}`;
}

interface Locker { name: string; cookie: string; addr: string }

async function lockers(t: RbdTarget, header: string): Promise<Locker[]> {
  const r = await cli('rados', t, ['-p', t.pool, 'lock', 'info', header, LOCK_NAME, '--format', 'json']);
  if (r.code !== 0) throw failed(`rados lock info ${header}`, r);
  return ((JSON.parse(r.stdout) as { lockers?: Locker[] }).lockers ?? []).slice(0, 16);
}

async function readLease(t: RbdTarget, header: string): Promise<string | null> {
  const r = await cli('rados', t, ['-p', t.pool, 'getxattr', header, LEASE_KEY]);
  if (r.code === 0) return r.stdout.trim();
  if (/No data available/.test(r.stderr)) return null;
  throw failed(`rados getxattr ${header} ${LEASE_KEY}`, r);
}

async function writeLease(h: Held): Promise<void> {
  const value = JSON.stringify({ host: h.host, seq: h.seq, leaseMs: h.leaseMs, renewedMs: Date.now(), pid: process.pid });
  const r = await cli('rados', h.target, ['-p', h.target.pool, 'setxattr', h.header, LEASE_KEY, value]);
  if (r.code !== 0) throw failed(`rados setxattr ${h.header} ${LEASE_KEY}`, r);
}

/** Watches a foreign holder's lease for a whole lease (its own length, if longer): true when it moved. */
async function leaseMoves(t: RbdTarget, header: string, ownLeaseMs: number): Promise<{ moved: boolean; lease: string | null }> {
  const first = await readLease(t, header);
  let theirs = ownLeaseMs;
  try { theirs = Math.max(ownLeaseMs, Number((JSON.parse(first ?? '{}') as { leaseMs?: number }).leaseMs) || 0); } catch { /* not ours: ours */ }
  const deadline = Date.now() + Math.min(LEASE_MS_MAX, theirs) + 1000;
  while (Date.now() < deadline) {
    await sleep(500);
    if ((await readLease(t, header)) !== first) return { moved: true, lease: first };
  }
  return { moved: false, lease: first };
}

/** Blocklists every client that has the image open and removes librbd's locks and the dead holder's. */
async function fence(t: RbdTarget, header: string, holder: Locker, log: LockLog): Promise<string[]> {
  const st = await cli('rbd', t, ['status', '--format', 'json', spec(t)]);
  if (st.code !== 0) throw failed(`rbd status ${spec(t)}`, st);
  const watchers = ((JSON.parse(st.stdout) as { watchers?: { address: string; client: number }[] }).watchers ?? []).slice(0, 64);
  const fenced: string[] = [];
  for (const w of watchers) {
    const r = await cli('ceph', t, ['osd', 'blocklist', 'add', w.address, String(BLOCKLIST_S)]);
    if (r.code !== 0) throw failed(`ceph osd blocklist add ${w.address}`, r);
    fenced.push(`client.${w.client} at ${w.address}`);
  }
  const ls = await cli('rbd', t, ['lock', 'ls', '--format', 'json', spec(t)]);
  if (ls.code !== 0) throw failed(`rbd lock ls ${spec(t)}`, ls);
  for (const l of (JSON.parse(ls.stdout || '[]') as { id: string; locker: string }[]).slice(0, 16)) {
    const r = await cli('rbd', t, ['lock', 'rm', spec(t), l.id, l.locker]);
    if (r.code !== 0) log('warn', `rbd ${spec(t)}: could not remove the lock ${JSON.stringify(l.id)} of ${l.locker}: ${failed('rbd lock rm', r).message}`);
  }
  const br = await cli('rados', t, ['-p', t.pool, 'lock', 'break', header, LOCK_NAME, holder.name, '--lock-cookie', holder.cookie]);
  if (br.code !== 0) throw failed(`rados lock break ${header}`, br);
  return fenced;
}

async function lockGet(t: RbdTarget, header: string, host: string): Promise<boolean> {
  const r = await cli('rados', t, ['-p', t.pool, 'lock', 'get', header, LOCK_NAME, '--lock-cookie', host, '--lock-tag', LOCK_NAME,
    '--lock-type', 'exclusive', '--lock-description', `onestack volume owner ${host}`]);
  if (r.code === 0) return true;
  if (/busy|exists/i.test(r.stderr)) return false;
  throw failed(`rados lock get ${header}`, r);
}

function refusal(element: string, t: RbdTarget, holder: string, lease: string | null, ms: number): EngineError {
  let age = '';
  try { age = `, lease renewed ${((Date.now() - Number((JSON.parse(lease ?? '{}') as { renewedMs?: number }).renewedMs)) / 1000).toFixed(1)} s ago`; } catch { /* no lease */ }
  return new EngineError('conflict',
    `element ${element}: rbd image ${spec(t)} is held by host ${holder} (its lease moved within ${ms / 1000} s${age.includes('NaN') ? '' : age}); refusing to serve its volume so two hosts never write it`,
    `rbd://${spec(t)}`, `stop onestack on ${holder}; if that host is dead, start again after its lease expired, or force the takeover: ${TAKEOVER_ENV}=force onestack serve …`);
}

/** Takes the image's lock for this host, fencing a dead holder; refuses (EngineError conflict) while another host's lease moves. */
async function acquire(dataDir: string, element: string, t: RbdTarget, log: LockLog, force: boolean): Promise<Held> {
  const host = hostId(dataDir);
  const ms = leaseMs();
  const header = await headerObject(t);
  const startedMs = Date.now();
  for (let attempt = 0; attempt < 3; attempt++) {
    const current = await lockers(t, header);
    const other = current.find((l) => l.cookie !== host);
    if (current.some((l) => l.cookie === host)) {
      log('info', `rbd ${spec(t)} (element ${element}): this host (${host}) holds the lock from an earlier run; keeping it`);
    } else if (other === undefined) {
      if (!(await lockGet(t, header, host))) continue; // another host was quicker: look again
    } else {
      const seen = force ? { moved: false, lease: await readLease(t, header) } : await leaseMoves(t, header, ms);
      if (seen.moved) throw refusal(element, t, other.cookie, seen.lease, ms);
      const waitedS = ((Date.now() - startedMs) / 1000).toFixed(1);
      const fenced = await fence(t, header, other, log);
      log('warn', `rbd ${spec(t)} (element ${element}): ${force ? `forced takeover (${TAKEOVER_ENV}=force)` : `host ${other.cookie}'s lease did not move for ${waitedS} s`}: `
        + `fenced ${fenced.length === 0 ? 'no open client' : `${fenced.join(', ')} (blocklisted ${BLOCKLIST_S} s)`}, removed its locks; taking the volume over`);
      if (!(await lockGet(t, header, host))) continue;
    }
    const h: Held = { target: t, element, header, host, leaseMs: ms, seq: 0, lastOkMs: Date.now(), lost: null, timer: null, busy: false, log };
    await writeLease(h);
    log('info', `rbd ${spec(t)} (element ${element}): locked by this host (${host}), lease ${ms / 1000} s, taken in ${Date.now() - startedMs} ms`);
    h.lastOkMs = Date.now();
    return h;
  }
  throw new EngineError('conflict', `element ${element}: rbd image ${spec(t)}: the lock changed hands three times while taking it`, `rbd://${spec(t)}`, 'another host is starting the same volume: start one only');
}

function lose(runDir: string, h: Held, reason: string): void {
  if (h.lost !== null) return;
  h.lost = reason;
  if (h.timer !== null) clearInterval(h.timer);
  lossHandlers.get(runDir)?.(h.element, reason);
}

/**
 * Whether the cluster cannot serve the lock's header object to anyone, by the monitors' and
 * manager's maps (no OSD needed): no OSD up for it, or its placement group not active (down,
 * stale, peering after the OSD came back). Then no host can take the lock either, so a lease that
 * cannot be renewed is no sign of a takeover and the volume keeps serving on its other legs (an
 * OSD outage). A monitor that does not answer gives false: this host may be cut off from a
 * cluster another host still reaches.
 */
async function headerStranded(h: Held): Promise<boolean> {
  const r = await cli('ceph', h.target, ['osd', 'map', h.target.pool, h.header, '--format', 'json', '--connect-timeout', '5']);
  if (r.code !== 0) return false;
  let pgid: string | undefined;
  try {
    const map = JSON.parse(r.stdout) as { up?: unknown[]; up_primary?: number; pgid?: string };
    if ((map.up?.length ?? 0) === 0 || map.up_primary === -1) return true;
    pgid = map.pgid;
  } catch {
    return false;
  }
  const pgs = await cli('ceph', h.target, ['pg', 'dump', 'pgs_brief', '--format', 'json', '--connect-timeout', '5']);
  if (pgs.code !== 0 || pgid === undefined) return false;
  try {
    const dump = JSON.parse(pgs.stdout) as { pg_stats?: { pgid: string; state: string }[] } | { pgid: string; state: string }[];
    const stats = Array.isArray(dump) ? dump : dump.pg_stats ?? [];
    const state = stats.find((x) => x.pgid === pgid)?.state;
    return state !== undefined && !state.split('+').includes('active');
  } catch {
    return false;
  }
}

/**
 * The lease is overdue without a sign that another host took the lock (that sign, a lock held by
 * another host or removed, loses the volume at once in renew()). The cluster cannot serve the lock
 * object (an OSD outage: no host can take it) or does not answer at all: this host serves on and
 * keeps retrying. Availability over fencing here is deliberate for now and a known gap: a host
 * cut off from a cluster that another host still reaches would serve on its local leg while that
 * host takes over (docs/rbd.md "Not yet").
 */
async function overdue(h: Held, why: string): Promise<void> {
  if (h.checking || h.stranded) return;
  h.checking = true;
  try {
    const stranded = await headerStranded(h);
    h.stranded = true;
    h.log?.('warn', `rbd ${spec(h.target)} (element ${h.element}): the lease is not renewed for ${h.leaseMs / 1000} s (${why}); `
      + `${stranded ? 'the cluster cannot serve its lock object to anyone (no OSD up, or its placement group not active)' : 'the cluster does not answer'}; serving on, retrying`);
  } finally {
    h.checking = false;
  }
}

async function renew(runDir: string, h: Held): Promise<void> {
  if (h.lost !== null) return;
  if (h.busy) { // a CLI call hanging (cluster unreachable) must not outlast the lease either
    if (Date.now() - h.lastOkMs >= h.leaseMs) await overdue(h, 'the cluster does not answer');
    return;
  }
  h.busy = true;
  const startedMs = Date.now();
  try {
    const now = await lockers(h.target, h.header);
    if (!now.some((l) => l.cookie === h.host)) {
      lose(runDir, h, now.length === 0 ? 'its lock was removed' : `the lock is now held by host ${now[0]!.cookie}`);
      return;
    }
    h.seq++;
    await writeLease(h);
    h.lastOkMs = startedMs;
    if (h.stranded) h.log?.('info', `rbd ${spec(h.target)} (element ${h.element}): lease renewed again`);
    h.stranded = false;
  } catch (err) {
    if (Date.now() - h.lastOkMs >= h.leaseMs) await overdue(h, (err as Error).message);
  } finally {
    h.busy = false;
  }
}

function rbdTargetOf(e: ElementConfig): RbdTarget | undefined {
  return e.location.kind === 'nbd' ? e.location.rbd : undefined;
}

/**
 * Takes the lock of every rbd:// element of the config (before assembly: nothing is written
 * before) and starts renewing the leases. Throws the refusal of a foreign live holder; locks
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
    h.timer = setInterval(() => void renew(dataDir, h), Math.max(500, Math.floor(h.leaseMs / 3)));
    h.timer.unref();
  }
}

/** Calls fn when a lock of this data dir is lost (at once for one lost already); returns the unsubscribe. */
export function onRbdLockLost(dataDir: string, fn: LockLostFn): () => void {
  lossHandlers.set(dataDir, fn);
  for (const h of held.get(dataDir) ?? []) if (h.lost !== null) fn(h.element, h.lost);
  return () => { if (lossHandlers.get(dataDir) === fn) lossHandlers.delete(dataDir); };
}

/** The lock state of an element, for status: null when it is not an rbd element of this data dir. */
export function rbdLockOf(dataDir: string, element: string): { host: string; leaseMs: number; lost?: string } | null {
  const h = held.get(dataDir)?.find((x) => x.element === element);
  return h === undefined ? null : { host: h.host, leaseMs: h.leaseMs, ...(h.lost !== null ? { lost: h.lost } : {}) };
}

async function releaseOne(h: Held, log: LockLog): Promise<void> {
  if (h.timer !== null) clearInterval(h.timer);
  while (h.busy) await sleep(50); // a renewal in flight must not write the lease back after we removed it
  if (h.lost !== null) return;
  h.lost = 'released';
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
