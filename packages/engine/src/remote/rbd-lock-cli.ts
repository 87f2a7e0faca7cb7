// The Ceph CLI calls of the rbd ownership lock (remote/rbd-lock.ts): the lock, the lease xattr,
// what the monitors say about the lock object, and fencing a dead holder. Every call is bounded
// (killed with SIGKILL at its timeout or when its AbortSignal fires) and never throws for a failed
// command: callers turn a CliResult into an Error. The runner is replaceable (setRbdCliRunner) so
// the lease keeper can be tested without a cluster.
import { execFile } from 'node:child_process';
import type { RbdTarget } from '../config/types.js';
import { LEASE_KEY, PG_STATS_LAG_MS, fenceTargets, normalizeAddrs, type Watcher } from './rbd-lease.js';

export interface CliResult { code: number; stdout: string; stderr: string }
export interface CliOptions { readonly timeoutMs?: number; readonly signal?: AbortSignal; readonly maxBytes?: number }
export type CliRunner = (tool: 'rbd' | 'rados' | 'ceph', args: readonly string[], opts: CliOptions) => Promise<CliResult>;

export const LOCK_NAME = 'onestack';
const CLI_TIMEOUT_MS = 30_000;
const OUTPUT_BYTES_MAX = 1 << 20;
/** How long a fenced client stays blocklisted: long past any restart of its gateway. */
export const BLOCKLIST_S = 3600;

const execRunner: CliRunner = (tool, args, opts) => new Promise((resolve) => {
  execFile(tool, args, { timeout: opts.timeoutMs ?? CLI_TIMEOUT_MS, maxBuffer: opts.maxBytes ?? OUTPUT_BYTES_MAX, killSignal: 'SIGKILL', ...(opts.signal !== undefined ? { signal: opts.signal } : {}) },
    (err, stdout, stderr) => {
      const code = err === null ? 0 : typeof (err as NodeJS.ErrnoException).code === 'number' ? Number((err as NodeJS.ErrnoException).code) : 1;
      const killed = err !== null && (err as { killed?: boolean }).killed === true ? `timed out after ${opts.timeoutMs ?? CLI_TIMEOUT_MS} ms (killed)` : '';
      resolve({ code, stdout, stderr: killed !== '' ? killed : err !== null && stderr.trim() === '' ? err.message : stderr });
    });
});

let runner: CliRunner = execRunner;

/** Tests only: replaces the CLI (undefined: the real one again). */
export function setRbdCliRunner(r?: CliRunner): void {
  runner = r ?? execRunner;
}

/** One ceph CLI call (rbd, rados, ceph) with the element's conf, user and keyring; never throws. */
export function cli(tool: 'rbd' | 'rados' | 'ceph', target: RbdTarget, args: readonly string[], opts: CliOptions = {}): Promise<CliResult> {
  const auth = ['--conf', target.conf, '--id', target.id, ...(target.keyring !== undefined ? ['--keyring', target.keyring] : []), '--client_mount_timeout', '10'];
  const timeoutMs = Math.max(1, Math.min(CLI_TIMEOUT_MS, Math.round(opts.timeoutMs ?? CLI_TIMEOUT_MS)));
  return runner(tool, [...auth, ...args], { ...opts, timeoutMs }).catch((err: unknown) => ({ code: 1, stdout: '', stderr: (err as Error).message }));
}

export function failed(what: string, r: CliResult): Error {
  return new Error(`${what}: ${(r.stderr.trim().split('\n').pop() ?? '').slice(0, 300) || `exit status ${r.code}`}`);
}

export const spec = (t: RbdTarget): string => `${t.pool}/${t.image}`;

export async function headerObject(t: RbdTarget): Promise<string> {
  const r = await cli('rbd', t, ['info', '--format', 'json', spec(t)]);
  if (r.code !== 0) throw failed(`rbd info ${spec(t)}`, r);
  const id = (JSON.parse(r.stdout) as { id?: string }).id;
  if (id === undefined) throw new Error(`rbd info ${spec(t)}: no image id (format 1 images are not supported)`);
  return `rbd_header.${id}`;
}

export interface Locker { name: string; cookie: string; addr: string }

export async function lockers(t: RbdTarget, header: string, opts: CliOptions = {}): Promise<Locker[]> {
  const r = await cli('rados', t, ['-p', t.pool, 'lock', 'info', header, LOCK_NAME, '--format', 'json'], opts);
  if (r.code !== 0) throw failed(`rados lock info ${header}`, r);
  return ((JSON.parse(r.stdout) as { lockers?: Locker[] }).lockers ?? []).slice(0, 16);
}

export async function readLease(t: RbdTarget, header: string): Promise<string | null> {
  const r = await cli('rados', t, ['-p', t.pool, 'getxattr', header, LEASE_KEY]);
  if (r.code === 0) return r.stdout.trim();
  if (/No data available/.test(r.stderr)) return null;
  throw failed(`rados getxattr ${header} ${LEASE_KEY}`, r);
}

export async function writeLease(t: RbdTarget, header: string, value: string, opts: CliOptions = {}): Promise<void> {
  const r = await cli('rados', t, ['-p', t.pool, 'setxattr', header, LEASE_KEY, value], opts);
  if (r.code !== 0) throw failed(`rados setxattr ${header} ${LEASE_KEY}`, r);
}

export async function lockGet(t: RbdTarget, header: string, host: string): Promise<boolean> {
  const r = await cli('rados', t, ['-p', t.pool, 'lock', 'get', header, LOCK_NAME, '--lock-cookie', host, '--lock-tag', LOCK_NAME,
    '--lock-type', 'exclusive', '--lock-description', `onestack volume owner ${host}`]);
  if (r.code === 0) return true;
  if (/busy|exists/i.test(r.stderr)) return false;
  throw failed(`rados lock get ${header}`, r);
}

interface OsdMap { epoch?: number; pgid?: string; up?: number[]; up_primary?: number; acting?: number[]; acting_primary?: number }

async function osdMap(t: RbdTarget, header: string, opts: CliOptions): Promise<OsdMap> {
  const connectS = String(Math.max(1, Math.min(5, Math.floor((opts.timeoutMs ?? 5000) / 1000))));
  const r = await cli('ceph', t, ['osd', 'map', t.pool, header, '--format', 'json', '--connect-timeout', connectS], opts);
  if (r.code !== 0) throw failed('ceph osd map', r);
  return JSON.parse(r.stdout) as OsdMap;
}

/**
 * Asks the monitors (and the manager) whether the lock object was unservable, within timeoutMs.
 * Returns the instant it is known to have been (startedMs for "no OSD up" from the monitors' map,
 * which is current; startedMs − PG_STATS_LAG_MS for a PG not active in the manager's report, which
 * may be that old; a `stale` PG state is no evidence), or null with why: servable, or no answer.
 */
export async function headerUnservableAt(t: RbdTarget, header: string, startedMs: number, timeoutMs: number, signal?: AbortSignal): Promise<{ atMs: number | null; why: string }> {
  const endMs = performance.now() + timeoutMs;
  try {
    const map = await osdMap(t, header, { timeoutMs, ...(signal !== undefined ? { signal } : {}) });
    if ((map.up?.length ?? 0) === 0 || map.up_primary === -1) return { atMs: startedMs, why: 'no OSD up for the lock object' };
    const left = endMs - performance.now();
    if (map.pgid === undefined || left < 200) return { atMs: null, why: 'an OSD is up for the lock object' };
    const pgs = await cli('ceph', t, ['pg', 'dump', 'pgs_brief', '--format', 'json', '--connect-timeout', String(Math.max(1, Math.min(5, Math.floor(left / 1000))))],
      { timeoutMs: left, maxBytes: 64 << 20, ...(signal !== undefined ? { signal } : {}) });
    if (pgs.code !== 0) return { atMs: null, why: failed('ceph pg dump', pgs).message };
    const dump = JSON.parse(pgs.stdout) as { pg_stats?: { pgid: string; state: string }[] } | { pgid: string; state: string }[];
    const state = (Array.isArray(dump) ? dump : dump.pg_stats ?? []).find((x) => x.pgid === map.pgid)?.state;
    const flags = state?.split('+') ?? [];
    if (state !== undefined && !flags.includes('active') && !flags.includes('stale')) return { atMs: startedMs - PG_STATS_LAG_MS, why: `placement group ${map.pgid} is ${state}` };
    return { atMs: null, why: `placement group ${map.pgid} is ${state ?? 'unknown'}` };
  } catch (err) {
    return { atMs: null, why: (err as Error).message };
  }
}

/**
 * The lock object's placement-group interval as the monitors see it: up and acting sets with the
 * epoch each of their OSDs came up. Equal at both ends of a taker's watch means the PG was not
 * re-peered in between (no OSD of it went down and came back, no remap), so it never stopped
 * serving the lease: a holder could not have been riding out an outage of it meanwhile.
 */
export async function headerInterval(t: RbdTarget, header: string): Promise<string> {
  const [map, r] = await Promise.all([osdMap(t, header, { timeoutMs: 15_000 }), cli('ceph', t, ['osd', 'dump', '--format', 'json'], { timeoutMs: 15_000, maxBytes: 64 << 20 })]);
  if (r.code !== 0) throw failed('ceph osd dump', r);
  const osds = (JSON.parse(r.stdout) as { osds?: { osd: number; up: number; up_from: number }[] }).osds ?? [];
  const ids = [...new Set([...(map.up ?? []), ...(map.acting ?? [])])].sort((a, b) => a - b);
  const upFrom = ids.map((id) => { const o = osds.find((x) => x.osd === id); return `${id}:${o?.up === 1 ? o.up_from : 'down'}`; });
  return `pg ${map.pgid} up ${JSON.stringify(map.up)}/${map.up_primary} acting ${JSON.stringify(map.acting)}/${map.acting_primary} up_from ${upFrom.join(',')}`;
}

/** Blocklists the dead holder's clients (rbd-lease.ts fenceTargets), removes librbd's locks and the holder's lock. */
export async function fence(t: RbdTarget, header: string, holder: Locker, leaseAddrs: readonly string[], log: (msg: string) => void): Promise<string[]> {
  const st = await cli('rbd', t, ['status', '--format', 'json', spec(t)]);
  if (st.code !== 0) throw failed(`rbd status ${spec(t)}`, st);
  const watchers = ((JSON.parse(st.stdout) as { watchers?: Watcher[] }).watchers ?? []).slice(0, 64);
  const fenced: string[] = [];
  for (const target of fenceTargets(leaseAddrs, watchers)) {
    const r = await cli('ceph', t, ['osd', 'blocklist', 'add', target.addr, String(BLOCKLIST_S)]);
    if (r.code !== 0) throw failed(`ceph osd blocklist add ${target.addr}`, r);
    fenced.push(target.label);
  }
  const ls = await cli('rbd', t, ['lock', 'ls', '--format', 'json', spec(t)]);
  if (ls.code !== 0) throw failed(`rbd lock ls ${spec(t)}`, ls);
  for (const l of (JSON.parse(ls.stdout || '[]') as { id: string; locker: string }[]).slice(0, 16)) {
    const r = await cli('rbd', t, ['lock', 'rm', spec(t), l.id, l.locker]);
    if (r.code !== 0) log(`rbd ${spec(t)}: could not remove the lock ${JSON.stringify(l.id)} of ${l.locker}: ${failed('rbd lock rm', r).message}`);
  }
  const br = await cli('rados', t, ['-p', t.pool, 'lock', 'break', header, LOCK_NAME, holder.name, '--lock-cookie', holder.cookie]);
  if (br.code !== 0) throw failed(`rados lock break ${header}`, br);
  return fenced;
}

/**
 * This host's own earlier run, killed while its librbd client had the image open: that client's
 * watch lingers until Ceph times it out (~30 s) and librbd's exclusive lock stays with it, so the
 * new run's first write would wait. The data dir's engine.pid proves that run is gone, so its
 * client addresses (named by the lease it wrote) are blocklisted and its librbd locks removed at
 * once. Only addresses that still watch the image, never every watcher: a reader elsewhere is not
 * ours to fence. Returns what was fenced.
 */
export async function fenceEarlierRun(t: RbdTarget, leaseAddrs: readonly string[]): Promise<string[]> {
  if (leaseAddrs.length === 0) return [];
  const st = await cli('rbd', t, ['status', '--format', 'json', spec(t)]);
  if (st.code !== 0) throw failed(`rbd status ${spec(t)}`, st);
  const watchers = ((JSON.parse(st.stdout) as { watchers?: Watcher[] }).watchers ?? []).slice(0, 64);
  const stale = watchers.filter((w) => leaseAddrs.includes(normalizeAddrs(w.address)[0] ?? w.address));
  const fenced: string[] = [];
  for (const w of stale) {
    const addr = normalizeAddrs(w.address)[0] ?? w.address;
    const r = await cli('ceph', t, ['osd', 'blocklist', 'add', addr, String(BLOCKLIST_S)]);
    if (r.code !== 0) throw failed(`ceph osd blocklist add ${addr}`, r);
    fenced.push(`client.${w.client} at ${w.address}`);
  }
  if (fenced.length === 0) return fenced;
  const ls = await cli('rbd', t, ['lock', 'ls', '--format', 'json', spec(t)]);
  if (ls.code !== 0) throw failed(`rbd lock ls ${spec(t)}`, ls);
  for (const l of (JSON.parse(ls.stdout || '[]') as { id: string; locker: string; address?: string }[]).slice(0, 16)) {
    if (l.address !== undefined && !leaseAddrs.includes(normalizeAddrs(l.address)[0] ?? l.address)) continue;
    await cli('rbd', t, ['lock', 'rm', spec(t), l.id, l.locker]);
  }
  return fenced;
}
