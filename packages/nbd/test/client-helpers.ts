// Plumbing for the client tests: real servers (nbdkit, qemu-nbd) started on free loopback ports
// and stopped by PID, readiness polled with a bounded loop, and error assertions.

import type { ChildProcess } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { connect } from 'node:net';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, expect } from 'vitest';
import { type RemoteErrorCode, RemoteError } from '../src/index.js';
import { freePort, hasExited, sleep, spawnTracked, stopChild } from '../../../test/lib/proc.js';

export { freePort, sleep };

/** What a client test file starts: closed after each test (clients first), the temp dir after all. */
export interface ClientScope {
  readonly dir: string;
  readonly peers: Peer[];
  readonly fakes: { close(): Promise<unknown> }[];
  readonly clients: { close(): Promise<unknown> }[];
}

/** Registers the file's hooks: a temp dir (prefix) for the file, and per test its clients, peers and fakes stopped. */
export function useClientScope(prefix: string): ClientScope {
  let dir = '';
  const scope = { peers: [] as Peer[], fakes: [] as { close(): Promise<unknown> }[], clients: [] as { close(): Promise<unknown> }[], get dir(): string { return dir; } };
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), prefix));
  });
  afterEach(async () => {
    await Promise.all(scope.clients.splice(0).map((c) => c.close()));
    await Promise.all(scope.peers.splice(0).map((p) => p.kill()));
    await Promise.all(scope.fakes.splice(0).map((f) => f.close()));
  });
  afterAll(() => {
    rmSync(dir, { recursive: true, force: true });
  });
  return scope;
}

export interface Peer {
  readonly child: ChildProcess;
  readonly port: number;
  stderr(): string;
  stop(): Promise<void>;
  kill(): Promise<void>;
}

/** Resolves once something accepts on the port (or the unix socket), polling every 20 ms. */
export async function waitListening(where: { port?: number; path?: string }, child: ChildProcess, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (hasExited(child)) throw new Error(`peer exited before listening (code ${String(child.exitCode)})`);
    const ok = await new Promise<boolean>((resolve) => {
      const s = where.path !== undefined ? connect({ path: where.path }) : connect({ host: '127.0.0.1', port: where.port ?? 0 });
      s.once('connect', () => { s.destroy(); resolve(true); });
      s.once('error', () => { s.destroy(); resolve(false); });
    });
    if (ok) return;
    await sleep(20);
  }
  throw new Error(`nothing listening on ${where.path ?? where.port} after ${timeoutMs} ms`);
}

function track(child: ChildProcess, port: number): Peer {
  let err = '';
  child.stderr?.on('data', (d: Buffer) => { err = (err + d.toString()).slice(-8000); });
  child.stdout?.resume();
  return {
    child,
    port,
    stderr: () => err,
    stop: async () => { await stopChild(child, 5000); },
    kill: async () => { await stopChild(child, 5000, 'SIGKILL'); },
  };
}

/** nbdkit in the foreground on 127.0.0.1:port (a free one unless given). */
export async function startNbdkit(args: readonly string[], port?: number): Promise<Peer> {
  const p = port ?? (await freePort());
  const peer = track(spawnTracked('nbdkit', ['-f', '-p', String(p), '-i', '127.0.0.1', ...args]), p);
  try {
    await waitListening({ port: p }, peer.child);
  } catch (err) {
    await peer.kill();
    throw new Error(`${(err as Error).message}: ${peer.stderr()}`);
  }
  return peer;
}

/** nbdkit on a unix socket. */
export async function startNbdkitUnix(socketPath: string, args: readonly string[]): Promise<Peer> {
  const peer = track(spawnTracked('nbdkit', ['-f', '-U', socketPath, ...args]), 0);
  await waitListening({ path: socketPath }, peer.child);
  return peer;
}

/** qemu-nbd serving a raw file persistently (-t) as export `name` (on `port`, else a free one). */
export async function startQemuNbd(file: string, name: string, port?: number): Promise<Peer> {
  const p = port ?? (await freePort());
  const peer = track(spawnTracked('qemu-nbd', ['-f', 'raw', '-x', name, '-p', String(p), '-b', '127.0.0.1', '-t', file]), p);
  try {
    await waitListening({ port: p }, peer.child);
  } catch (err) {
    await peer.kill();
    throw new Error(`${(err as Error).message}: ${peer.stderr()}`);
  }
  return peer;
}

/** Awaits a rejection with a RemoteError of one of `codes`; returns it for further checks. */
export async function rejectsWith(promise: Promise<unknown>, codes: readonly RemoteErrorCode[]): Promise<RemoteError> {
  let caught: unknown;
  try {
    await promise;
  } catch (err) {
    caught = err;
  }
  expect(caught, 'expected a rejection').toBeInstanceOf(RemoteError);
  const err = caught as RemoteError;
  expect(codes, err.message).toContain(err.code);
  expect(err.message).not.toMatch(/\n/);
  return err;
}

export function pattern(bytes: Uint8Array, seed: number): Uint8Array {
  for (let i = 0; i < bytes.length; i++) bytes[i] = (i * 131 + seed * 7 + (i >>> 9)) & 0xff;
  return bytes;
}

/** Deterministic pseudo-random numbers (xorshift32), so failures reproduce. */
export function rng(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) / 0x100000000;
  };
}

/** Only what ClientConnection uses of a Socket: writes are recorded, data is emitted by the test. */
export class FakeSocket extends EventEmitter {
  readonly written: Uint8Array[] = [];
  destroyed = false;
  write(bytes: Uint8Array): boolean { this.written.push(bytes.slice()); return true; }
  end(bytes?: Uint8Array): void { if (bytes !== undefined) this.written.push(bytes.slice()); }
  cork(): void {}
  uncork(): void {}
  destroy(): void { this.destroyed = true; }
}
