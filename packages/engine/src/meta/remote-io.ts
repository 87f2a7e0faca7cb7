// Superblock I/O on remote elements for the control plane: a short-lived client connection per
// operation (start-up, create, delete, close, failure records), separate from the data path's.
// Superblocks live in the first 4 MiB, which data requests never touch, so the two connections
// cannot reorder each other's writes; every superblock write is flushed before it counts.
import { EngineError } from '../api-types.js';
import type { ElementConfig } from '../config/types.js';
import { connectRemote, type RemoteDevice, type RemoteDeviceInfo } from '../remote/connect.js';
import { remoteSpecFor } from '../remote/spec.js';
import { decodeSuperblock, SuperblockError } from './superblock.js';
import { SUPERBLOCK_BYTES } from './types.js';
import type { ReadSuperblock } from './element-io.js';

/** Opens the element, runs `fn`, closes. Errors name the element and the (masked) URI. */
export async function withRemote<T>(config: ElementConfig, fn: (dev: RemoteDevice) => Promise<T>): Promise<T> {
  const spec = await remoteSpecFor(config);
  let dev: RemoteDevice;
  try {
    dev = await connectRemote(spec);
  } catch (err) {
    throw new EngineError('io', `element ${config.name}: cannot reach ${config.uri}: ${(err as Error).message}`, config.uri, 'is the remote up, and are the URI and credentials right?');
  }
  try {
    return await fn(dev);
  } finally {
    await dev.close().catch(() => undefined);
  }
}

export interface RemoteProbe {
  readonly info: RemoteDeviceInfo;
  readonly sb: ReadSuperblock;
}

export async function probeRemote(config: ElementConfig): Promise<RemoteProbe> {
  return withRemote(config, async (dev) => {
    const bytes = new Uint8Array(SUPERBLOCK_BYTES);
    await dev.read(0, bytes);
    let sb: ReadSuperblock;
    try {
      sb = decodeSuperblock(bytes);
    } catch (err) {
      if (!(err instanceof SuperblockError)) throw err;
      sb = err;
    }
    return { info: dev.info, sb };
  });
}

export async function writeRemoteSuperblock(config: ElementConfig, bytes: Uint8Array): Promise<void> {
  if (bytes.length !== SUPERBLOCK_BYTES) throw new Error(`superblock write of ${bytes.length} bytes`);
  await withRemote(config, async (dev) => {
    if (dev.info.readOnly) throw new EngineError('io', `element ${config.name}: ${config.uri} is read-only`, config.uri);
    await dev.write(0, bytes, { fua: true });
    await dev.flush();
  });
}
