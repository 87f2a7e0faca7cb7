// The line under an rbd:// element in `onestack status`: which path reaches the image (librbd in
// the daemon, or a supervised qemu-nbd gateway and why librbd was not used), its state, and the
// ownership lock between hosts.
import type { ElementStatus } from '@onestack/engine';

type RbdStatus = NonNullable<ElementStatus['rbd']>;

/**
 * `rbd via librbd: rbd/img, up, client 127.0.0.1:0/123, 3 in flight; locked by this host (h, lease 15 s)`,
 * `rbd via qemu-nbd gateway (librbd not loaded: REASON): rbd/img, up, pid 1234, 1 restart`;
 * the error only while it is not up; a fenced image says FENCED and that nothing more is written.
 */
export function rbdLine(rbd: RbdStatus): string {
  const parts = [`${rbd.pool}/${rbd.image}`, stateText(rbd)];
  if (rbd.pid !== null) parts.push(`pid ${rbd.pid}`);
  if (rbd.restarts > 0) parts.push(`${rbd.restarts} restart${rbd.restarts === 1 ? '' : 's'}`);
  const addrs = rbd.clientAddrs ?? [];
  if (addrs.length > 0) parts.push(`client${addrs.length === 1 ? '' : 's'} ${addrs.join(' ')}`);
  if (rbd.inFlight !== undefined) parts.push(`${rbd.inFlight} in flight`);
  const error = rbd.state !== 'up' && rbd.error !== undefined ? `: ${rbd.error}` : '';
  return `        rbd via ${rbdPathText(rbd)}: ${parts.join(', ')}${error}${lockText(rbd)}`;
}

/** `librbd`, `qemu-nbd gateway`, or `qemu-nbd gateway (librbd not loaded: REASON)`. */
export function rbdPathText(rbd: Pick<RbdStatus, 'path' | 'fallback'>): string {
  if (rbd.path === 'librbd') return 'librbd';
  return rbd.fallback === undefined ? 'qemu-nbd gateway' : `qemu-nbd gateway (librbd not loaded: ${rbd.fallback})`;
}

function stateText(rbd: RbdStatus): string {
  return rbd.state === 'fenced' ? 'FENCED (ownership lock lost: nothing more is written to the image)' : rbd.state;
}

function lockText(rbd: RbdStatus): string {
  const lock = rbd.lock;
  if (lock === undefined) return '';
  if (lock.lost !== undefined) return `; lock LOST: ${lock.lost}`;
  return `; locked by this host (${lock.host}, lease ${lock.leaseMs / 1000} s)`;
}
