// The pure parts of the rbd ownership lease (remote/rbd-lock.ts; docs/rbd.md "Failover between
// hosts"): the lease record, client addresses and whom a takeover blocklists, and the holder's
// decision between renewing, asking the monitors and fencing itself. No I/O and no clock here, so
// partitions, OSD outages, hanging CLI calls and clock steps are unit-tested deterministically.
//
// The timing rule (why a holder that stops by `deadline` can never overlap a taker):
// - A taker (acquire → leaseMoves) concludes "dead" only after reading the same lease value at
//   the start of a window W and again in a read *issued* at or after W + lease + 1 s, with the lock
//   object's placement group in the same interval at both ends (same up/acting set, no OSD of it
//   restarted): no outage of that object inside the window.
// - The value it saw at W was written by the holder after the holder's `okMs` (the start of its
//   last successful lease write), so W ≥ okMs and the taker concludes no earlier than
//   okMs + lease + 1 s, then still needs 1-3 s to blocklist and lock.
// - The holder fences itself at okMs + lease − margin: margin + 1 s before the earliest takeover,
//   which covers a late timer, the time the data path takes to fail the legs, and rate differences
//   of the two clocks. margin = lease/6 (half a renewal period: two renewals at lease/3 and 2·lease/3
//   may still succeed), at least 1 s, at most lease/3.
// - Unless the monitors showed the lock object unservable at `strandedMs` (no OSD up for it, or its
//   PG not active): nobody could read or write the lease then, so a taker's window can only start
//   after the object came back (its interval check restarts a window that spans the outage), i.e.
//   after strandedMs. The deadline is then strandedMs + lease − margin, by the same argument; each
//   check is redone every half renewal period while the lease is overdue, and once the monitors stop
//   saying "stranded" the deadline runs from the last time they said it. A PG state comes from the
//   manager's report, which may be PG_STATS_LAG_MS old: that evidence counts from its start minus
//   the lag. "The monitors did not answer" is no evidence: a cut-off host cannot tell an outage
//   from a takeover, so it fences.
// - An observation arriving after the deadline never revives the lease (a renewal that hung past
//   it, a timer that ran late): the holder has stopped, and stays stopped until a restart.

export const LEASE_KEY = 'onestack.lease';
/** How stale a PG state in the manager's `pg dump` may be (mgr_stats_period 5 s + transit). */
export const PG_STATS_LAG_MS = 6_000;
/** A renewal that failed at once (not a hang) is retried after this, not a whole period. */
const RETRY_MS = 1_000;
/** A stranded check needs at least this much time left before the deadline to be worth starting. */
const CHECK_MIN_MS = 1_000;
/** The monitors' answer is waited for at most this long (and never past the deadline). */
export const CHECK_TIMEOUT_MS = 5_000;

/** The lease record kept in the `onestack.lease` xattr. */
export interface LeaseRecord {
  readonly host: string;
  readonly seq: number;
  readonly leaseMs: number;
  /** The writer's wall clock, for humans only (the rule uses no foreign clock). */
  readonly renewedMs: number;
  readonly pid: number;
  /** The writer's librbd client addresses (`IP:PORT/NONCE`), which a takeover blocklists; absent on the gateway path and from older versions. */
  readonly addrs?: readonly string[];
}

/** The xattr value: JSON; the fields of the first version (host, seq, leaseMs, renewedMs, pid) keep their meaning, `addrs` is new. */
export function formatLease(r: LeaseRecord): string {
  return JSON.stringify({ host: r.host, seq: r.seq, leaseMs: r.leaseMs, renewedMs: r.renewedMs, pid: r.pid, ...(r.addrs !== undefined && r.addrs.length > 0 ? { addrs: r.addrs } : {}) });
}

/** What a taker reads from a lease value of any version (null: none or not ours). */
export function parseLease(text: string | null): { host?: string; leaseMs?: number; renewedMs?: number; addrs: string[] } | null {
  if (text === null || text === '') return null;
  let v: unknown;
  try { v = JSON.parse(text); } catch { return null; }
  if (typeof v !== 'object' || v === null) return null;
  const o = v as Record<string, unknown>;
  const num = (x: unknown): number | undefined => (typeof x === 'number' && Number.isFinite(x) ? x : undefined);
  return {
    ...(typeof o.host === 'string' ? { host: o.host } : {}),
    ...(num(o.leaseMs) !== undefined ? { leaseMs: num(o.leaseMs) } : {}),
    ...(num(o.renewedMs) !== undefined ? { renewedMs: num(o.renewedMs) } : {}),
    addrs: Array.isArray(o.addrs) ? normalizeAddrs(o.addrs.filter((a): a is string => typeof a === 'string').join(',')) : [],
  };
}

/** One address as Ceph prints it, or as rados_getaddrs gives it: `v2:1.2.3.4:0/123`, `1.2.3.4:0/123`, `[v2:…,v1:…]`, `v2:[::1]:0/123`. */
const ADDR = /(?:\b(?:v1|v2|any):)?((?:\[[0-9A-Fa-f:.]+\]|\d{1,3}(?:\.\d{1,3}){3}):\d{1,5}\/\d{1,20})/g;
const ADDRS_MAX = 8;

/**
 * The addresses in any of those spellings as `IP:PORT/NONCE`, deduplicated: the type prefix is
 * dropped because blocklist entries match any type since Nautilus, and `rbd status` prints none.
 */
export function normalizeAddrs(text: string): string[] {
  const out: string[] = [];
  for (const m of text.matchAll(ADDR)) if (!out.includes(m[1]!)) out.push(m[1]!);
  return out.slice(0, ADDRS_MAX);
}

export interface Watcher { readonly address: string; readonly client: number }

/**
 * Whom a takeover blocklists. A lease naming the holder's librbd client addresses: exactly those
 * (labelled with the watcher that has one, if any). Without addresses (the gateway path, an older
 * holder): every watcher of the image, as before. Addresses none of which watches while others do
 * (the holder reopened its image after its last lease write): those and every watcher, since the
 * holder's current client cannot be told from the others.
 */
export function fenceTargets(leaseAddrs: readonly string[], watchers: readonly Watcher[]): { addr: string; label: string }[] {
  const label = (w: Watcher): { addr: string; label: string } => ({ addr: normalizeAddrs(w.address)[0] ?? w.address, label: `client.${w.client} at ${w.address}` });
  const all = watchers.map(label);
  if (leaseAddrs.length === 0) return all;
  const named = leaseAddrs.map((a) => all.find((w) => w.addr === a) ?? { addr: a, label: `${a} (named by its lease, not watching)` });
  const anyWatching = named.some((n) => all.some((w) => w.addr === n.addr));
  if (anyWatching || all.length === 0) return named;
  return [...named, ...all.filter((w) => !named.some((n) => n.addr === w.addr))];
}

/** The holder's view of its lease; times are this host's clock (rbd-lock.ts: monotonic, never behind the wall clock). */
export interface LeaseState {
  readonly leaseMs: number;
  /** The start of the last lease write that succeeded. */
  readonly okMs: number;
  /** The latest instant the lock object is known to have been unservable, or null. */
  readonly strandedMs: number | null;
  /** Whether the latest answer of the monitors said unservable (for logs). */
  readonly strandedNow: boolean;
  readonly nextRenewMs: number;
  readonly renewing: boolean;
  readonly checking: boolean;
  /** The start of the last stranded check, or null. */
  readonly lastCheckMs: number | null;
  readonly lastError: string | null;
  /** Why this host stopped serving, or null while it serves. */
  readonly fenced: string | null;
}

export type LeaseObservation =
  | { readonly kind: 'renewed'; readonly writeStartMs: number }
  | { readonly kind: 'renewFailed'; readonly why: string }
  | { readonly kind: 'lockGone'; readonly why: string }
  /** The monitors answered (unservableAtMs: the instant the object was unservable, or null) or not (`why`). */
  | { readonly kind: 'checked'; readonly startedMs: number; readonly unservableAtMs: number | null; readonly why?: string }
  /** Renew now (the client addresses changed). */
  | { readonly kind: 'kick' };

export type LeaseAction = { readonly kind: 'renew' | 'check'; readonly timeoutMs: number } | { readonly kind: 'fence'; readonly reason: string };

export const renewPeriodMs = (leaseMs: number): number => Math.max(500, Math.floor(leaseMs / 3));
export const marginMs = (leaseMs: number): number => Math.min(Math.max(1_000, Math.floor(leaseMs / 6)), Math.floor(leaseMs / 3));

/** A lease just written at writeStartMs. */
export function newLeaseState(leaseMs: number, writeStartMs: number): LeaseState {
  return { leaseMs, okMs: writeStartMs, strandedMs: null, strandedNow: false, nextRenewMs: writeStartMs + renewPeriodMs(leaseMs),
    renewing: false, checking: false, lastCheckMs: null, lastError: null, fenced: null };
}

/** The instant this host must have stopped serving by, unless a renewal succeeds first. */
export function deadlineOf(s: LeaseState): number {
  return Math.max(s.okMs, s.strandedMs ?? -Infinity) + s.leaseMs - marginMs(s.leaseMs);
}

function overdueReason(s: LeaseState, now: number): string {
  const s1 = (ms: number): string => (ms / 1000).toFixed(1);
  const base = `its lease was not renewed for ${s1(now - s.okMs)} s (${s.lastError ?? 'no answer'})`;
  return s.strandedMs === null
    ? `${base} and the monitors did not show its lock object unservable: another host may take the volume over`
    : `${base}; the monitors last showed its lock object unservable ${s1(now - s.strandedMs)} s ago and the lease still is not renewed: another host may take the volume over`;
}

/** Applies what a CLI call found. Past the deadline nothing revives the lease: it is fenced. */
export function observe(s: LeaseState, now: number, o: LeaseObservation): LeaseState {
  if (s.fenced !== null) return s;
  if (now >= deadlineOf(s)) return { ...s, fenced: overdueReason(s, now) };
  switch (o.kind) {
    case 'renewed': {
      const okMs = Math.max(s.okMs, o.writeStartMs);
      const strandedMs = s.strandedMs !== null && s.strandedMs > okMs ? s.strandedMs : null; // older evidence no longer matters
      return { ...s, okMs, renewing: false, strandedMs, strandedNow: strandedMs !== null && s.strandedNow, lastError: null, nextRenewMs: okMs + renewPeriodMs(s.leaseMs) };
    }
    case 'renewFailed':
      return { ...s, renewing: false, lastError: o.why, nextRenewMs: now + Math.min(RETRY_MS, renewPeriodMs(s.leaseMs)) };
    case 'lockGone':
      return { ...s, renewing: false, fenced: o.why };
    case 'checked': {
      const strandedMs = o.unservableAtMs === null ? s.strandedMs : Math.max(s.strandedMs ?? -Infinity, o.unservableAtMs);
      return { ...s, checking: false, lastCheckMs: o.startedMs, strandedMs, strandedNow: o.unservableAtMs !== null };
    }
    case 'kick':
      return { ...s, nextRenewMs: Math.min(s.nextRenewMs, now) };
  }
}

/**
 * What to do at `now`: fence at the deadline (whatever is in flight: a hanging CLI call cannot
 * delay it); renew when due, bounded by the deadline; while a renewal is overdue, ask the monitors
 * every half period whether the lock object is unservable, bounded to end before the deadline.
 */
export function decide(s: LeaseState, now: number): { state: LeaseState; actions: LeaseAction[] } {
  if (s.fenced !== null) return { state: s, actions: [] };
  const deadline = deadlineOf(s);
  if (now >= deadline) {
    const fenced = { ...s, fenced: overdueReason(s, now) };
    return { state: fenced, actions: [{ kind: 'fence', reason: fenced.fenced }] };
  }
  const actions: LeaseAction[] = [];
  let next = s;
  if (!s.renewing && now >= s.nextRenewMs) {
    next = { ...next, renewing: true };
    actions.push({ kind: 'renew', timeoutMs: deadline - now });
  }
  const period = renewPeriodMs(s.leaseMs);
  // A renewal missed (failed, or still hanging a little after it was due): ask the monitors.
  const overdue = now - s.okMs >= period + Math.min(period / 2, RETRY_MS);
  const checkDue = s.lastCheckMs === null || now - s.lastCheckMs >= period / 2;
  if (overdue && !s.checking && checkDue && deadline - now >= CHECK_MIN_MS) {
    next = { ...next, checking: true };
    actions.push({ kind: 'check', timeoutMs: Math.min(CHECK_TIMEOUT_MS, deadline - now - CHECK_MIN_MS / 2) });
  }
  return { state: next, actions };
}

/** When decide() must run again at the latest (the driver also ticks): the deadline or the next renewal. */
export function wakeAt(s: LeaseState): number {
  return s.renewing ? deadlineOf(s) : Math.min(deadlineOf(s), s.nextRenewMs);
}

/**
 * The holder's clock: the larger of the time passed on the monotonic clock and on a clock that
 * also counts suspended time (CLOCK_BOOTTIME, read from /proc/uptime by rbd-lock.ts). The
 * monotonic clock alone stands still while the machine is suspended, and a takeover may happen
 * meanwhile; neither reads the wall clock, so NTP steps do not matter. Both never go back, so
 * their elapsed times are compared from the start (no accumulated rounding of /proc/uptime's
 * 10 ms). A taker measures its wait with the monotonic clock only (never longer than real time).
 */
export function holderClock(mono: () => number, boot: () => number): () => number {
  const mono0 = mono();
  const boot0 = boot();
  let last = mono0;
  return () => {
    const booted = boot() - boot0; // NaN where that clock cannot be read: the monotonic one alone
    last = Math.max(last, mono0 + Math.max(mono() - mono0, Number.isFinite(booted) ? booted : 0));
    return last;
  };
}
