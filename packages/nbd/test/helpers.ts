// Shared test plumbing: a server over memory exports on 127.0.0.1, external peers run with
// execFile and a timeout, and a raw socket client with bounded, timed reads.

import { execFile } from 'node:child_process';
import { type Socket, connect } from 'node:net';
import {
  ByteAccumulator, type MemoryExport, type NbdServer, createMemoryExport, createMemoryProvider, createNbdServer,
} from '../src/index.js';

export interface Served {
  server: NbdServer;
  port: number;
  disk: MemoryExport;
  readOnly: MemoryExport;
  /** 32 MiB and 8 MiB exports, so copied-out images have exactly the copied-in size. */
  copy32: MemoryExport;
  copy8: MemoryExport;
  logs: string[];
  uri(name?: string): string;
}

export async function serve(sizeBytes = 64 * 1024 * 1024, options: { handshakeTimeoutMs?: number; inFlightMax?: number; directRead?: boolean } = {}): Promise<Served> {
  const disk = createMemoryExport('disk0', sizeBytes, { description: 'test disk' });
  const readOnly = createMemoryExport('ro', 1024 * 1024, { readOnly: true });
  const copy32 = createMemoryExport('copy32', 32 * 1024 * 1024);
  const copy8 = createMemoryExport('copy8', 8 * 1024 * 1024);
  const logs: string[] = [];
  const server = createNbdServer(createMemoryProvider([disk, readOnly, copy32, copy8]), { ...options, log: (level, msg) => logs.push(`${level} ${msg}`) });
  const { port } = await server.listen('127.0.0.1', 0);
  return { server, port, disk, readOnly, copy32, copy8, logs, uri: (name = 'disk0') => `nbd://127.0.0.1:${port}/${name}` };
}

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs a peer; never rejects, so tests can assert on failures too. */
export function run(file: string, args: readonly string[], timeoutMs = 60_000): Promise<RunResult> {
  // Debian's python holds the libnbd bindings; a pyenv python first on PATH would not.
  const env = { ...process.env, PATH: `/usr/bin:${process.env.PATH ?? ''}` };
  return new Promise((resolve) => {
    execFile(file, args, { timeout: timeoutMs, env, maxBuffer: 64 * 1024 * 1024, encoding: 'utf8' }, (err, stdout, stderr) => {
      const code = err === null ? 0 : typeof err.code === 'number' ? err.code : -1;
      resolve({ code, stdout, stderr });
    });
  });
}

export function nbdsh(uri: string | undefined, script: string, before = ''): Promise<RunResult> {
  const args = before === '' ? [] : ['-c', before];
  if (uri !== undefined) args.push('-c', `h.connect_uri(${JSON.stringify(uri)})`);
  args.push('-c', script);
  return run('/usr/bin/nbdsh', args);
}

/** A raw TCP client for malformed traffic. */
export class RawClient {
  private readonly acc = new ByteAccumulator(64 * 1024 * 1024);
  private waiter: (() => void) | undefined;
  closed = false;
  readonly closedPromise: Promise<void>;

  private constructor(readonly socket: Socket) {
    socket.on('data', (chunk: Buffer) => {
      this.acc.push(chunk);
      this.waiter?.();
    });
    socket.on('error', () => {});
    this.closedPromise = new Promise((resolve) => socket.on('close', () => {
      this.closed = true;
      this.waiter?.();
      resolve();
    }));
  }

  /** A client over an already connected socket (e.g. the TLS socket after STARTTLS). */
  static adopt(socket: Socket): RawClient {
    return new RawClient(socket);
  }

  static open(port: number): Promise<RawClient> {
    return new Promise((resolve, reject) => {
      const socket = connect(port, '127.0.0.1', () => resolve(new RawClient(socket)));
      socket.once('error', reject);
    });
  }

  /** Reads exactly n bytes, or rejects on close/timeout. */
  async read(n: number, timeoutMs = 5000): Promise<Uint8Array> {
    const deadline = Date.now() + timeoutMs;
    while (this.acc.length < n) {
      if (this.closed) throw new Error(`closed after ${this.acc.length} of ${n} bytes`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out waiting for ${n} bytes (have ${this.acc.length})`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.waiter = () => { clearTimeout(timer); resolve(); };
      });
    }
    const out = new Uint8Array(this.acc.peek(n)); // a copy (Buffer#slice would be a view)
    this.acc.consume(n);
    return out;
  }

  write(bytes: Uint8Array): void {
    this.socket.write(bytes);
  }

  /** Resolves true if the server closes within timeoutMs. */
  async waitClosed(timeoutMs = 5000): Promise<boolean> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<boolean>((resolve) => { timer = setTimeout(() => resolve(false), timeoutMs); });
    const result = await Promise.race([this.closedPromise.then(() => true), timeout]);
    clearTimeout(timer);
    return result;
  }

  destroy(): void {
    this.socket.destroy();
  }
}

export function fillPattern(bytes: Uint8Array, seed: number): Uint8Array {
  for (let i = 0; i < bytes.length; i++) bytes[i] = (i * 31 + seed) & 0xff;
  return bytes;
}

export async function waitFor(condition: () => boolean, timeoutMs = 5000): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (condition()) return true;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  return condition();
}

export { createMemoryExport };
