// The librbd path of rbd:// elements, control-plane side: which path an element takes, and one
// "keeper" channel per image for the engine's life. The keeper holds this process's librbd handle
// open (the data path's channels, on the remote loop threads, join that same handle instead of
// becoming more Ceph clients), tells status the client address and requests in flight, and is
// what a lost ownership lock fences. The I/O itself is remote/rbd-device.ts.
import { rbdFence, rbdUnavailable } from '@onestack/native';
import type { ElementRbdStatus } from '../api-types.js';
import type { ElementConfig, RbdTarget } from '../config/types.js';
import { RbdDevice, rbdRemoteSpec } from './rbd-device.js';
import type { GatewayLog } from './rbd-gateway.js';

/** `ONESTACK_RBD_PATH=gateway` sends every rbd:// element through the gateway (a URI's ?path= wins). */
export const RBD_PATH_ENV = 'ONESTACK_RBD_PATH';
/** A keeper that could not connect is tried again at the next open, no sooner than this. */
const RETRY_MS = 2_000;

export type RbdPathChoice = { readonly path: 'librbd' } | { readonly path: 'gateway'; readonly fallback?: string };

/** Where the URI, the environment and this process's addon send the element. */
export function rbdPathChoice(target: RbdTarget): RbdPathChoice {
  const wanted = target.path ?? (process.env[RBD_PATH_ENV] === 'gateway' ? 'gateway' : process.env[RBD_PATH_ENV] === 'librbd' ? 'librbd' : undefined);
  if (wanted === 'gateway') return { path: 'gateway' };
  const why = rbdUnavailable();
  if (why === null) return { path: 'librbd' };
  if (wanted === 'librbd') throw new Error(`rbd ${target.pool}/${target.image}: path=librbd asked for, but ${why}`);
  return { path: 'gateway', fallback: why };
}

interface Keeper {
  readonly element: string;
  readonly target: RbdTarget;
  readonly timeoutMs: number;
  device: RbdDevice | null;
  opening: Promise<void> | null;
  state: 'starting' | 'up' | 'down' | 'fenced';
  error: string | null;
  retryAtMs: number;
  reconnects: number;
  /** This process's Ceph client address(es), once connected. */
  addrs: string[] | null;
}

const keepers = new Map<string, Keeper>();

const keyOf = (t: RbdTarget): string => `${t.runDir}\0${t.conf}\0${t.pool}/${t.image}`;

async function open(k: Keeper, log: GatewayLog, onAddrs: (addrs: readonly string[]) => void): Promise<void> {
  const label = `rbd ${k.target.pool}/${k.target.image} (element ${k.element})`;
  const startedMs = Date.now();
  try {
    const device = await RbdDevice.connect(rbdRemoteSpec(k.target, `rbd://${k.target.pool}/${k.target.image}`, k.timeoutMs));
    if (k.state === 'fenced') { await device.close(); return; }
    k.device = device;
    k.state = 'up';
    k.error = null;
    k.addrs = device.clientAddrs().split(',').map((a) => a.trim()).filter((a) => a !== '');
    onAddrs(k.addrs);
    log('info', `${label}: librbd connected in ${Date.now() - startedMs} ms (client ${k.addrs.join(', ')})`);
  } catch (err) {
    const error = (err as Error).message;
    if (error !== k.error) log('warn', `${label}: ${error}; the data path retries by itself`);
    k.state = 'down';
    k.error = error;
    k.retryAtMs = Date.now() + RETRY_MS;
  }
}

/**
 * Opens the element's keeper unless it is open. Never throws for a cluster or image that cannot
 * be reached: the connect that follows fails with the same librbd error, and a mirror leg comes
 * up failed (as with the gateway).
 */
export async function ensureRbdNative(config: ElementConfig, target: RbdTarget, log: GatewayLog, onAddrs: (addrs: readonly string[]) => void): Promise<void> {
  const key = keyOf(target);
  let k = keepers.get(key);
  if (k === undefined) {
    k = { element: config.name, target, timeoutMs: config.timeoutMs, device: null, opening: null, state: 'starting', error: null, retryAtMs: 0, reconnects: 0, addrs: null };
    keepers.set(key, k);
  }
  if (k.state === 'up' || k.state === 'fenced') return;
  if (k.opening === null) {
    if (k.state === 'down' && Date.now() < k.retryAtMs) return;
    if (k.state === 'down') k.reconnects++;
    const keeper = k;
    k.opening = open(k, log, onAddrs).finally(() => { keeper.opening = null; });
  }
  await k.opening;
}

/** Whether the element's image is kept open here (the librbd path), and for which element. */
export function rbdNativeElement(target: RbdTarget): string | undefined {
  return keepers.get(keyOf(target))?.element;
}

async function closeKeeper(key: string, k: Keeper): Promise<void> {
  keepers.delete(key);
  await k.opening?.catch(() => undefined);
  const device = k.device;
  k.device = null;
  if (device !== null) await device.close().catch(() => undefined);
}

/** Closes one element's keeper (element removed); with no channel left, librbd closes the image. */
export async function stopRbdNativeOf(target: RbdTarget): Promise<void> {
  const key = keyOf(target);
  const k = keepers.get(key);
  if (k !== undefined) await closeKeeper(key, k);
}

/** Closes every keeper of the engine whose data dir is runDir. */
export async function stopRbdNatives(runDir: string): Promise<void> {
  const mine = [...keepers.entries()].filter(([, k]) => k.target.runDir === runDir);
  await Promise.all(mine.map(([key, k]) => closeKeeper(key, k)));
}

/** The ownership lock is lost: every handle of the image in this process refuses from now on. */
export function fenceRbdNative(target: RbdTarget, why: string, log: GatewayLog): void {
  const handles = rbdFence(target.pool, target.image);
  const k = keepers.get(keyOf(target));
  if (k === undefined && handles === 0) return; // the gateway path
  if (k !== undefined) { k.state = 'fenced'; k.error = why; }
  log('error', `rbd ${target.pool}/${target.image}: ${why}; librbd handle fenced (${handles} open), nothing more is sent`);
}

export function rbdNativeStatus(target: RbdTarget): ElementRbdStatus {
  const k = keepers.get(keyOf(target));
  const base = { path: 'librbd' as const, pool: target.pool, image: target.image, pid: null };
  if (k === undefined) return { ...base, restarts: 0, state: 'stopped' };
  const inFlight = k.device?.imageInFlight ?? 0;
  return {
    ...base, restarts: k.reconnects, state: k.state, ...(k.error !== null ? { error: k.error } : {}),
    ...(k.addrs !== null ? { clientAddrs: k.addrs } : {}), inFlight,
  };
}
