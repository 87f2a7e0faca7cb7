// What a daemon does when it loses the ownership lock of an rbd:// element (remote/rbd-lock.ts):
// the lock was taken or removed, or its lease could not be renewed in time without proof of an
// outage of the lock object (rbd-lease.ts: by then another host may conclude it expired). Another
// host may own the volume now, so this one must write nothing more to it. The gateway is
// killed for good (no write of ours reaches the image) and every leg of the volume is failed in
// the data path, so clients get I/O errors rather than acknowledgements for writes that the new
// owner would never see (the local leg would diverge: split brain).
import type { DataPath } from '../datapath/datapath.js';
import type { Registry } from '../state/registry.js';
import type { LogFn } from '../engine-types.js';
import { fenceRbdElement } from './rbd-access.js';
import { onRbdLockLost } from './rbd-lock.js';

export interface FenceHost {
  readonly registry: Registry;
  readonly dataPath: DataPath;
  readonly log: LogFn;
  readonly changed: () => void;
}

/** Fences the volume of an element whose lock is lost; returns the unsubscribe. */
export function watchRbdLocks(dataDir: string, host: FenceHost): () => void {
  return onRbdLockLost(dataDir, (element, reason) => {
    const entry = host.registry.elements.get(element);
    if (entry !== undefined) fenceRbdElement(entry.config, `ownership lock lost: ${reason}`);
    const owner = host.registry.ownerOf(element);
    if (owner === undefined) {
      host.log('error', `element ${element}: ownership lock lost (${reason}); its gateway is stopped`);
    } else {
      for (const name of owner.assembled.config.elements) {
        const leg = host.registry.elements.get(name);
        if (leg !== undefined) host.dataPath.setElementState(leg.index, 'failed');
      }
      host.log('error', `volume ${owner.assembled.config.name}: stopped serving: element ${element} lost its ownership lock (${reason}); `
        + 'every leg is failed so this host writes nothing more to it (another host may own it now); restart onestack to serve it again: '
        + 'it takes the lock back only if no other host holds it');
    }
    host.changed();
  });
}
