// Text for an rbd:// element (docs/rbd.md): which path reaches the image, its state, and the
// ownership lock between hosts. Pure functions, unit-tested without a browser; the wording
// follows the line `onestack status` prints under the element (packages/cli/src/render-rbd.ts).
import type { ElementRbd } from './types.js';

/** `librbd`, `qemu-nbd gateway`, or `qemu-nbd gateway (librbd not loaded: REASON)`. */
export function rbdPathText(rbd: Pick<ElementRbd, 'path' | 'fallback'>): string {
  if (rbd.path === 'librbd') return 'librbd';
  return rbd.fallback === undefined ? 'qemu-nbd gateway' : `qemu-nbd gateway (librbd not loaded: ${rbd.fallback})`;
}

/** True when the state deserves the warning style: fenced, down, or a lost lock. */
export function rbdWarn(rbd: ElementRbd): boolean {
  return rbd.state === 'fenced' || rbd.state === 'down' || rbd.lock?.lost !== undefined;
}

/** `FENCED (ownership lock lost: nothing more is written to the image)` or the plain state. */
export function rbdStateText(rbd: ElementRbd): string {
  return rbd.state === 'fenced' ? 'FENCED (ownership lock lost: nothing more is written to the image)' : rbd.state;
}

/**
 * `rbd via librbd: rbd/img · up · client 127.0.0.1:0/123 · 3 in flight`,
 * `rbd via qemu-nbd gateway: rbd/img · up · pid 1234 · 1 restart`; the error only while it is not up.
 */
export function rbdText(rbd: ElementRbd): string {
  const parts = [`${rbd.pool}/${rbd.image}`, rbdStateText(rbd)];
  if (rbd.pid !== null) parts.push(`pid ${rbd.pid}`);
  if (rbd.path === 'gateway' || rbd.restarts > 0) parts.push(`${rbd.restarts} restart${rbd.restarts === 1 ? '' : 's'}`);
  const addrs = rbd.clientAddrs ?? [];
  if (addrs.length > 0) parts.push(`client${addrs.length === 1 ? '' : 's'} ${addrs.join(' ')}`);
  if (rbd.inFlight !== undefined) parts.push(`${rbd.inFlight} in flight`);
  const error = rbd.state !== 'up' && rbd.error !== undefined ? `: ${rbd.error}` : '';
  return `rbd via ${rbdPathText(rbd)}: ${parts.join(' · ')}${error}`;
}

/** `lock: held by this host (hosta-1) · lease 15 s`, `lock LOST: REASON`, or null without a lock. */
export function rbdLockText(rbd: ElementRbd): string | null {
  const lock = rbd.lock;
  if (lock === undefined) return null;
  if (lock.lost !== undefined) return `lock LOST: ${lock.lost}`;
  return `lock: held by this host (${lock.host}) · lease ${formatLease(lock.leaseMs)}`;
}

/** `15 s`, `2.5 s`, `500 ms`. */
export function formatLease(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const s = ms / 1000;
  return `${Number.isInteger(s) ? s : s.toFixed(1)} s`;
}
