// An rbd:// element's lines under its row (Elements table and volume cards): the path that reaches
// the image (librbd, or the qemu-nbd gateway and why librbd was not used) with its state, gateway
// pid and restarts, client addresses and requests in flight; then the ownership lock between hosts.
// Every figure also sits in a data-* attribute for tests.
import { rbdLockText, rbdText, rbdWarn } from '../format-rbd.js';
import type { ElementStatus } from '../types.js';

export function RbdDetail({ element, prefix }: { element: ElementStatus; prefix: string }) {
  const rbd = element.rbd;
  if (rbd === undefined) return null;
  const lock = rbdLockText(rbd);
  return (
    <>
      <div class={`detail rbd${rbdWarn(rbd) ? ' detail-warn' : ''}${rbd.state === 'fenced' ? ' rbd-fenced' : ''}`} data-testid={`${prefix}rbd-${element.name}`}
        data-path={rbd.path} data-state={rbd.state} data-pid={rbd.pid ?? ''} data-restarts={rbd.restarts} data-fallback={rbd.fallback ?? ''}
        data-client-addrs={(rbd.clientAddrs ?? []).join(' ')} data-in-flight={rbd.inFlight ?? ''}>
        {rbdText(rbd)}
      </div>
      {lock !== null ? (
        <div class={`detail rbd-lock${rbd.lock?.lost !== undefined ? ' detail-warn' : ''}`} data-testid={`${prefix}rbd-lock-${element.name}`}
          data-host={rbd.lock?.host ?? ''} data-lease-ms={rbd.lock?.leaseMs ?? ''} data-lost={rbd.lock?.lost ?? ''}>
          {lock}
        </div>
      ) : null}
    </>
  );
}
