// Zero-copy receive for plaintext connections: the kernel reads WRITE payloads straight into the
// backend's write buffers (the engine's shared slab slots) instead of into Node's 64 KiB chunks
// that the connection would then copy. Node offers this as a socket's `onread` option (a buffer
// chosen before every read), but only when a Socket is constructed, so the accepted socket's
// handle moves into a new Socket that has it. TLS connections keep the copying path: their bytes
// are decrypted in user space anyway.
import { Socket } from 'node:net';

export interface DirectReadSink {
  /** Where the next read goes: a view into the current write buffer, or a fresh staging buffer. */
  nextBuffer(): Uint8Array;
  /** `n` bytes arrived at the start of `buffer` (the one nextBuffer returned). False pauses reading. */
  onRead(n: number, buffer: Uint8Array): boolean;
}

interface HandleOwner {
  _handle?: unknown;
}

/**
 * Moves an accepted, paused socket's handle into a new Socket reading through `sink`. Returns
 * null (the caller keeps the original socket and its 'data' events) when the handle cannot be
 * moved, e.g. a Node whose internals differ.
 */
export function directReadSocket(raw: Socket, sink: DirectReadSink): Socket | null {
  const owner = raw as unknown as HandleOwner;
  const handle = owner._handle;
  if (handle === null || handle === undefined || !raw.isPaused()) return null;
  let moved: Socket;
  try {
    owner._handle = null; // the old object must not close or read the handle it no longer owns
    moved = new Socket({
      handle,
      readable: true,
      writable: true,
      onread: { buffer: () => sink.nextBuffer(), callback: (n: number, buf: Uint8Array) => sink.onRead(n, buf) },
    } as ConstructorParameters<typeof Socket>[0] & { handle: unknown });
  } catch {
    owner._handle = handle;
    return null;
  }
  // The server counts the original object as a connection until it is destroyed.
  moved.once('close', () => raw.destroy());
  return moved;
}
