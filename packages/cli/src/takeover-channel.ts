// The IPC channel between an old and a new `onestack serve` during a takeover: the messages,
// and an inbox that turns Node's 'message' events into awaitable, time-bounded receives.
// Handles (listening sockets are inherited as fds instead; see takeover.ts) travel with the
// 'connection' and 'held' messages as libuv stream handles (child_process send's 'net.Native').
import type { EventEmitter } from 'node:events';
import type { NbdConnectionState, NbdSocketHandle } from '@onestack/nbd';

/** Old → new. */
export type ToNew =
  /** The old process has closed its engine (clean superblocks): open it now. */
  | { readonly t: 'engine-closed' }
  /** A quiesced NBD connection (handle attached). */
  | { readonly t: 'connection'; readonly seq: number; readonly state: NbdConnectionState }
  /** A connection accepted during the handover, not greeted yet (handle attached). */
  | { readonly t: 'held'; readonly seq: number; readonly transport: 'tcp' | 'unix'; readonly peer: string }
  /** Nothing more comes; the old process exits. */
  | { readonly t: 'done' };

/** New → old. */
export type ToOld =
  /** Config loaded and the passed sockets checked: the old may stop and close its engine. */
  | { readonly t: 'ready'; readonly pid: number }
  /** The new process gives up (the old keeps or resumes serving). */
  | { readonly t: 'failed'; readonly error: string }
  /** Engine open, NBD and API listening. */
  | { readonly t: 'serving' }
  | { readonly t: 'adopted'; readonly seq: number; readonly ok: boolean };

export interface Received<T> {
  readonly msg: T;
  readonly handle: NbdSocketHandle | undefined;
}

// Far more than one takeover sends (connections are bounded by nbd.maxConnections ≤ 65536 ... plus held).
const INBOX_MAX = 70_000;

/** Messages from `source` (a ChildProcess, or `process` in the child), received in order. */
export class Inbox<T extends { t: string }> {
  readonly #items: Received<T>[] = [];
  #waiter: (() => void) | undefined;
  #ended: string | undefined;
  readonly #onMessage = (msg: unknown, handle: unknown): void => {
    if (typeof msg !== 'object' || msg === null || typeof (msg as { t?: unknown }).t !== 'string') return; // not ours
    if (this.#items.length >= INBOX_MAX) return;
    this.#items.push({ msg: msg as T, handle: (handle ?? undefined) as NbdSocketHandle | undefined });
    this.#wake();
  };
  readonly #onEnd = (why: string) => (): void => { this.#ended ??= why; this.#wake(); };
  readonly #onExit: () => void;
  readonly #onDisconnect: () => void;

  constructor(private readonly source: EventEmitter, peer: string) {
    this.#onExit = this.#onEnd(`${peer} exited`);
    this.#onDisconnect = this.#onEnd(`${peer} closed the channel`);
    source.on('message', this.#onMessage).on('exit', this.#onExit).on('disconnect', this.#onDisconnect);
  }

  /** The next message; rejects when the peer is gone or nothing came within `timeoutMs`. */
  async next(timeoutMs: number, waitingFor: string): Promise<Received<T>> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const item = this.#items.shift();
      if (item !== undefined) return item;
      if (this.#ended !== undefined) throw new Error(`${this.#ended} while waiting for ${waitingFor}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no ${waitingFor} within ${Math.round(timeoutMs / 1000)} s`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.#waiter = () => { clearTimeout(timer); resolve(); };
      });
    }
  }

  dispose(): void {
    this.source.off('message', this.#onMessage).off('exit', this.#onExit).off('disconnect', this.#onDisconnect);
  }

  #wake(): void {
    const w = this.#waiter;
    this.#waiter = undefined;
    w?.();
  }
}

/** Sends one message (with a handle) and resolves once it is written to the channel. */
export function sendMessage(target: { send?: (...args: never[]) => boolean }, msg: ToNew | ToOld, handle?: NbdSocketHandle): Promise<void> {
  const send = target.send as ((m: unknown, h: unknown, o: unknown, cb: (err: Error | null) => void) => boolean) | undefined;
  if (send === undefined) return Promise.reject(new Error('no IPC channel'));
  return new Promise((resolve, reject) => {
    try {
      send.call(target, msg, handle, {}, (err) => (err === null ? resolve() : reject(err)));
    } catch (err) {
      reject(err instanceof Error ? err : new Error(String(err)));
    }
  });
}
