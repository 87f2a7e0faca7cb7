// Moving live NBD connections between servers, typically to the next daemon process during a
// takeover (packages/cli/src/takeover*.ts). A quiesced plaintext connection is its socket's
// kernel handle plus what the transmission phase negotiated plus the bytes already read but not
// parsed; the receiving server resumes the request loop on it without a new handshake. Handles
// are libuv stream wraps (TCP or Pipe): child_process `send(message, handle)` passes them as
// 'net.Native' (SCM_RIGHTS), and `new Socket({ handle })` adopts one in the receiving process.
import { Socket } from 'node:net';
import type { NbdExport } from '../backend.js';
import type { ConnectionResume } from './connection.js';
import type { Listener, NbdBoundAddress, Transport } from './listener.js';
import { offeredContexts } from './meta-context.js';

/** A libuv stream handle (TCP or Pipe wrap), detached from any Socket. Opaque outside Node. */
export type NbdSocketHandle = object;

/** What the transmission phase of one connection needs to go on elsewhere. JSON-safe (IPC). */
export interface NbdConnectionState {
  /** The export's own name (the boot volume's name when the client asked for ''). */
  readonly exportName: string;
  readonly structuredReplies: boolean;
  readonly extendedHeaders: boolean;
  /** Ids the client knows, by name; every one must exist on the receiving side. */
  readonly metaContexts: readonly { readonly id: number; readonly name: string }[];
  readonly transmissionFlags: number;
  /** The size the client knows; a connection is not resumed on a smaller export (it could address past the end). */
  readonly sizeBytes: number;
  /** Bytes read from the socket but not parsed yet (the start of the next requests), base64. */
  readonly pendingBase64: string;
  readonly transport: Transport;
  readonly peer: string;
}

export interface DetachedConnection {
  readonly handle: NbdSocketHandle;
  readonly state: NbdConnectionState;
}

/** A connection accepted while the server was handing over: nothing sent on it yet (no greeting). */
export interface HeldConnection {
  readonly handle: NbdSocketHandle;
  readonly transport: Transport;
  readonly peer: string;
}

interface HandleOwner {
  _handle?: { readStop?: () => number; reading?: boolean; close?: (cb?: () => void) => void; fd?: number } | null;
}

/**
 * Takes the kernel handle out of `socket` without closing it: reading stops, the Socket object
 * forgets it (destroying it afterwards closes nothing). Null when the socket has no handle.
 */
export function takeHandle(socket: Socket): NbdSocketHandle | null {
  const owner = socket as unknown as HandleOwner;
  const handle = owner._handle;
  if (handle === null || handle === undefined) return null;
  if (handle.reading === true || typeof handle.readStop === 'function') {
    handle.reading = false;
    handle.readStop?.();
  }
  owner._handle = null;
  return handle;
}

/** A paused Socket over a handle from takeHandle() (this process or another): nothing read yet. */
export function socketFromHandle(handle: NbdSocketHandle): Socket {
  // pauseOnCreate is what net.Server's pauseOnConnect uses: the handle does not start reading,
  // so the connection can still move it to the zero-copy reader (direct-read.ts).
  return new Socket({ handle, readable: true, writable: true, pauseOnCreate: true } as ConstructorParameters<typeof Socket>[0] & { handle: unknown; pauseOnCreate: boolean });
}

/** Closes a handle this process no longer needs (the other process holds its own copy of the fd). */
export function closeHandle(handle: NbdSocketHandle): void {
  (handle as NonNullable<HandleOwner['_handle']>).close?.();
}

/** The fd number of a listening net.Server (Linux/Unix), for passing it to a child process. */
export function listenerFd(server: unknown): number | undefined {
  const fd = (server as HandleOwner)._handle?.fd;
  return typeof fd === 'number' && fd >= 0 ? fd : undefined;
}

export function encodePending(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64');
}

export function decodePending(text: string): Uint8Array {
  return new Uint8Array(Buffer.from(text, 'base64'));
}

/** A server that handed over (NbdServer.handOver()): what moves to the next one. */
export interface NbdServerHandover {
  /** The listeners, still open: connections they accept now are held, not served (takeHeld()). */
  readonly listeners: readonly { readonly address: NbdBoundAddress; readonly fd: number | undefined }[];
  /** Quiesced plaintext connections; the others were closed after their replies. */
  readonly connections: readonly DetachedConnection[];
  /** Connections accepted since the handover began (none greeted yet); each call takes them all. */
  takeHeld(): HeldConnection[];
  /**
   * Closes the listeners (a Unix socket path this server created is removed, as at a normal
   * stop). keepBoundUnix leaves those open: the next process serves the same socket, and closing
   * it here would unlink its path; process exit closes the fd without unlinking.
   */
  closeListeners(opts?: { keepBoundUnix?: boolean }): Promise<void>;
}

export function handoverOf(listeners: readonly Listener[], connections: readonly DetachedConnection[], held: HeldConnection[]): NbdServerHandover {
  return {
    listeners: listeners.map((l) => ({ address: l.address, fd: listenerFd(l.server) })),
    connections,
    takeHeld: () => held.splice(0),
    closeListeners: async (o) => {
      const keep = (l: Listener): boolean => o?.keepBoundUnix === true && l.address.transport === 'unix' && l.address.fd === undefined;
      await Promise.all(listeners.filter((l) => !keep(l)).map((l) => l.close()));
    },
  };
}

/** How a moved connection goes on over `exp` (the receiving server's export of its name), or why it cannot. */
export function resumeFor(exp: NbdExport | undefined, state: NbdConnectionState): ConnectionResume | { problem: string } {
  const name = JSON.stringify(state.exportName);
  if (exp === undefined) return { problem: `export ${name} is not here` };
  if (exp.sizeBytes < state.sizeBytes) return { problem: `export ${name} is ${exp.sizeBytes} bytes, smaller than the ${state.sizeBytes} the client knows` };
  const offered = new Set(offeredContexts(exp));
  const missing = state.metaContexts.find((c) => !offered.has(c.name));
  if (missing !== undefined) return { problem: `meta context ${JSON.stringify(missing.name)}, which the client selected, is not offered here` };
  return {
    setup: {
      export: exp, structuredReplies: state.structuredReplies, extendedHeaders: state.extendedHeaders,
      metaContexts: state.metaContexts, transmissionFlags: state.transmissionFlags,
    },
    pending: decodePending(state.pendingBase64),
  };
}
