// The line under an rbd:// element in `onestack status`: which path reaches the image.
import type { ElementStatus } from '@onestack/engine';

/** `rbd via qemu-nbd gateway: rbd/img, up, pid 1234, 1 restart` (with the gateway's last error while it is down). */
export function rbdLine(rbd: NonNullable<ElementStatus['rbd']>): string {
  const via = rbd.path === 'gateway' ? 'qemu-nbd gateway' : 'librbd';
  const pid = rbd.pid !== null ? `, pid ${rbd.pid}` : '';
  const restarts = rbd.restarts > 0 ? `, ${rbd.restarts} restart${rbd.restarts === 1 ? '' : 's'}` : '';
  const error = rbd.state !== 'up' && rbd.error !== undefined ? `: ${rbd.error}` : '';
  const lock = rbd.lock === undefined ? '' : rbd.lock.lost !== undefined ? `; lock LOST: ${rbd.lock.lost}` : `; locked by this host (${rbd.lock.host}, lease ${rbd.lock.leaseMs / 1000} s)`;
  return `        rbd via ${via}: ${rbd.pool}/${rbd.image}, ${rbd.state}${pid}${restarts}${error}${lock}`;
}
