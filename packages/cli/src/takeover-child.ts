// The new side of a takeover (takeover.ts starts this process with ONESTACK_TAKEOVER_FDS and an
// IPC channel): report ready once the config loads and the passed sockets are usable, wait for
// the old process to close its engine, then (serve.ts opens everything) adopt the connections.
import { fstatSync } from 'node:fs';
import type { NbdServer } from '@onestack/nbd';
import type { Log } from './api/engine-port.js';
import { usageError } from './errors.js';
import type { ActivationFds } from './socket-activation.js';
import { Inbox, sendMessage, type ToNew } from './takeover-channel.js';
import { TAKEOVER_FDS_ENV } from './takeover.js';

// The old process closes its engine within its own bounds (quiesce 5 s + a clean stop).
const ENGINE_CLOSED_MS = 60_000;
const HANDOVER_MS = 60_000;
const FDS_MAX = 64;

export class TakeoverChild {
  readonly #inbox: Inbox<ToNew>;

  private constructor(readonly fds: ActivationFds) {
    this.#inbox = new Inbox<ToNew>(process, 'the previous process');
  }

  /** Present when this process was started by a takeover; removes the variable (our children must not see it). */
  static fromEnv(env: NodeJS.ProcessEnv, hasChannel = process.send !== undefined): TakeoverChild | undefined {
    const text = env[TAKEOVER_FDS_ENV];
    delete env[TAKEOVER_FDS_ENV];
    if (text === undefined) return undefined;
    if (!hasChannel) throw usageError(`${TAKEOVER_FDS_ENV} is set but there is no IPC channel (it is for onestack's own takeover)`, TAKEOVER_FDS_ENV);
    return new TakeoverChild(parseTakeoverFds(text));
  }

  /** Every passed fd must be a socket; listen() checks the rest when it uses them. */
  checkFds(): void {
    for (const fd of [...this.fds.nbd, ...(this.fds.api !== undefined ? [this.fds.api] : [])]) {
      if (!fstatSync(fd).isSocket()) throw new Error(`fd ${fd} passed by the previous process is not a socket`);
    }
  }

  /** Tells the old process we can take over; resolves once its engine is closed. */
  async ready(): Promise<void> {
    await sendMessage(process, { t: 'ready', pid: process.pid });
    const msg = (await this.#inbox.next(ENGINE_CLOSED_MS, 'engine-closed message')).msg;
    if (msg.t !== 'engine-closed') throw new Error(`unexpected ${msg.t} from the previous process`);
  }

  /** Best effort: the old process keeps (or resumes) serving. */
  async failed(err: unknown): Promise<void> {
    await sendMessage(process, { t: 'failed', error: err instanceof Error ? err.message : String(err) }).catch(() => undefined);
    this.dispose();
  }

  /** Everything listens: take the connections until the old process says done. */
  async serving(server: NbdServer, log: Log): Promise<void> {
    await sendMessage(process, { t: 'serving' });
    let moved = 0;
    let held = 0;
    try {
      for (;;) {
        const { msg, handle } = await this.#inbox.next(HANDOVER_MS, 'connections');
        if (msg.t === 'done') break;
        if (msg.t !== 'connection' && msg.t !== 'held') continue;
        let ok = false;
        if (handle !== undefined) {
          if (msg.t === 'connection') ok = server.adopt({ handle, state: msg.state });
          else { server.adoptHeld({ handle, transport: msg.transport, peer: msg.peer }); ok = true; }
        }
        if (ok && msg.t === 'connection') moved++;
        if (ok && msg.t === 'held') held++;
        await sendMessage(process, { t: 'adopted', seq: msg.seq, ok });
      }
      log('info', `takeover: took over ${moved} connection(s) and ${held} waiting accept(s) from the previous process`);
    } catch (err) {
      log('warn', `takeover: ${err instanceof Error ? err.message : String(err)} (serving on)`);
    } finally {
      this.dispose();
    }
  }

  dispose(): void {
    this.#inbox.dispose();
    if (process.connected) process.disconnect();
  }
}

/** "nbd:4,nbd:5,api:6" → the fds by role; usage errors for anything else. */
export function parseTakeoverFds(text: string): ActivationFds {
  const nbd: number[] = [];
  let api: number | undefined;
  const names = new Map<number, string>();
  for (const entry of text.split(',').slice(0, FDS_MAX)) {
    const m = /^(nbd|api):(\d{1,4})$/.exec(entry);
    if (m === null) throw usageError(`${TAKEOVER_FDS_ENV}: bad entry ${JSON.stringify(entry.slice(0, 40))}`, TAKEOVER_FDS_ENV);
    const fd = Number(m[2]);
    names.set(fd, m[1] as string);
    if (m[1] === 'api') api = fd; else nbd.push(fd);
  }
  if (nbd.length === 0) throw usageError(`${TAKEOVER_FDS_ENV} passes no NBD socket`, TAKEOVER_FDS_ENV);
  return { nbd, ...(api !== undefined ? { api } : {}), unused: [], names };
}
