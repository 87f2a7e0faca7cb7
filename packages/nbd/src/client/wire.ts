// The socket during connect and option haggling: bytes gathered in a bounded accumulator, decoded
// with the pure codecs, one deadline for the whole handshake, and the in-place STARTTLS upgrade.
// When haggling ends the socket and any early bytes are handed to the transmission phase.

import { type Socket, connect as netConnect } from 'node:net';
import { type ConnectionOptions, type TLSSocket, connect as tlsConnect } from 'node:tls';
import { ByteAccumulator } from '../codec/accumulator.js';
import { NBD_DEFAULT_PORT, OPTION_DATA_MAX_BYTES } from '../constants.js';
import type { Decoded } from '../errors.js';
import { RemoteError, remoteError, socketError } from './errors.js';
import type { NbdClientOptions } from './types.js';

/** Handshake messages are small; the largest is an option reply of at most 64 KiB. */
const WIRE_BUFFER_MAX_BYTES = 4 * OPTION_DATA_MAX_BYTES;

/** Where a connection goes, for messages: host:port/export or unix:PATH/export. */
export function describeTarget(opts: Omit<NbdClientOptions, 'exportName'> & { exportName?: string }): string {
  const at = opts.socketPath !== undefined ? `unix:${opts.socketPath}` : `${opts.host ?? '?'}:${opts.port ?? NBD_DEFAULT_PORT}`;
  return opts.exportName === undefined ? at : `${at}/${opts.exportName}`;
}

export class Wire {
  readonly acc = new ByteAccumulator(WIRE_BUFFER_MAX_BYTES, 256);
  /** Words for messages: what the connection was doing when it failed. */
  phase = 'while connecting';
  private socket: Socket;
  private failure: RemoteError | undefined;
  private wake: (() => void) | undefined;
  private connected = false;
  private timer: NodeJS.Timeout | undefined;
  private unlisten: (() => void) | undefined;

  private readonly onData = (chunk: Buffer): void => {
    if (this.acc.length + chunk.length > this.acc.capacityBytes) {
      this.fail(remoteError('EPROTO', `the server sent more than ${this.acc.capacityBytes} bytes unasked ${this.phase}`, this.where));
      return;
    }
    this.acc.push(chunk);
    this.wake?.();
  };
  private readonly onError = (err: Error): void => {
    this.fail(socketError(err, this.phase, this.where));
  };
  private readonly onClose = (): void => {
    this.fail(remoteError('ECONNRESET', `the server closed the connection ${this.phase}`, this.where));
  };
  private readonly onConnect = (): void => {
    this.connected = true;
    this.wake?.();
  };

  private constructor(socket: Socket, readonly where: string) {
    this.socket = socket;
    this.attach(socket);
  }

  /** Starts a TCP or unix connection; the deadline covers everything until detach(). */
  static open(opts: Omit<NbdClientOptions, 'exportName'>, where: string, signal?: AbortSignal): Wire {
    const socket = opts.socketPath !== undefined
      ? netConnect({ path: opts.socketPath })
      : netConnect({ host: opts.host ?? '127.0.0.1', port: opts.port ?? NBD_DEFAULT_PORT, noDelay: true });
    const wire = new Wire(socket, where);
    socket.once('connect', wire.onConnect);
    wire.timer = setTimeout(() => {
      wire.fail(remoteError('ETIMEDOUT', `timed out after ${opts.timeoutMs} ms ${wire.phase}`, where));
    }, opts.timeoutMs);
    if (signal !== undefined) {
      const onAbort = (): void => {
        wire.fail(remoteError('ESHUTDOWN', 'the client was closed while connecting', where));
      };
      if (signal.aborted) onAbort();
      signal.addEventListener('abort', onAbort, { once: true });
      wire.unlisten = () => signal.removeEventListener('abort', onAbort);
    }
    return wire;
  }

  async waitConnected(): Promise<void> {
    await this.until(() => this.connected);
    this.phase = 'during the handshake';
  }

  write(bytes: Uint8Array): void {
    if (this.failure !== undefined) throw this.failure;
    this.socket.write(bytes);
  }

  /** Decodes one message from the stream, waiting for bytes as the decoder asks. */
  async decode<T>(decoder: (bytes: Uint8Array) => Decoded<T>, maxBytes: number): Promise<T> {
    // Bounded: every pass either returns or waits for more bytes (or the deadline's failure).
    for (;;) {
      const have = Math.min(this.acc.length, maxBytes);
      const d = decoder(this.acc.peek(have));
      if (d.kind === 'value') {
        this.acc.consume(d.consumedBytes);
        return d.value;
      }
      if (d.kind === 'error') throw remoteError('EPROTO', `protocol error ${this.phase}: ${d.error.message}`, this.where);
      if (have + d.needBytes > maxBytes) throw new RangeError(`decoder needs more than ${maxBytes} bytes`);
      await this.until(() => this.acc.length >= have + d.needBytes);
    }
  }

  /** NBD_OPT_STARTTLS was acknowledged: wrap the socket in TLS and wait for the TLS handshake. */
  async startTls(options: ConnectionOptions): Promise<TLSSocket> {
    if (this.acc.length !== 0) throw remoteError('EPROTO', 'the server sent data between STARTTLS and the TLS handshake', this.where);
    const plain = this.socket;
    this.detachListeners(plain);
    plain.on('error', () => {}); // the TLS socket reports the same failures
    this.phase = 'during the TLS handshake';
    let secure: TLSSocket;
    try {
      secure = tlsConnect({ ...options, socket: plain });
    } catch (err) {
      throw this.fail(socketError(err, 'while setting up TLS (check the CA, certificate and key)', this.where));
    }
    this.socket = secure;
    this.attach(secure);
    let done = false;
    secure.once('secureConnect', () => {
      done = true;
      this.wake?.();
    });
    await this.until(() => done);
    return secure;
  }

  /** Hands the socket and any early bytes to the transmission phase; the deadline ends here. */
  detach(): { socket: Socket; acc: ByteAccumulator } {
    if (this.failure !== undefined) throw this.failure;
    clearTimeout(this.timer);
    this.unlisten?.();
    this.detachListeners(this.socket);
    return { socket: this.socket, acc: this.acc };
  }

  /** Records the first failure, wakes the waiter, and drops the socket. Returns the failure. */
  fail(err: RemoteError): RemoteError {
    if (this.failure === undefined) {
      this.failure = err;
      clearTimeout(this.timer);
      this.unlisten?.();
      this.socket.destroy();
    }
    this.wake?.();
    return this.failure;
  }

  /** Ends the socket politely (after NBD_OPT_ABORT), then drops it after at most `graceMs`. */
  async end(graceMs: number): Promise<void> {
    clearTimeout(this.timer);
    this.unlisten?.();
    if (this.failure === undefined) {
      this.socket.end();
      let timer: NodeJS.Timeout | undefined;
      await new Promise<void>((resolve) => {
        timer = setTimeout(resolve, graceMs);
        this.socket.once('close', () => resolve());
      });
      clearTimeout(timer);
    }
    this.socket.destroy();
  }

  private async until(ready: () => boolean): Promise<void> {
    // Bounded: wakes come from data, connect, or failure, and the deadline always fails the wire.
    while (!ready()) {
      if (this.failure !== undefined) throw this.failure;
      await new Promise<void>((resolve) => {
        this.wake = resolve;
      });
      this.wake = undefined;
    }
  }

  private attach(socket: Socket): void {
    socket.on('data', this.onData);
    socket.on('error', this.onError);
    socket.on('close', this.onClose);
  }

  private detachListeners(socket: Socket): void {
    socket.off('data', this.onData);
    socket.off('error', this.onError);
    socket.off('close', this.onClose);
    socket.off('connect', this.onConnect);
  }
}
