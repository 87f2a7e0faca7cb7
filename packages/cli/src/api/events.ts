// GET /api/v1/events: Server-Sent Events. One `change` event per engine 'change' and one
// `status` tick a second, both carrying the status object. Clients are bounded in number, and a
// client that stops reading is dropped rather than buffered without end.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { ApiEngine, Log } from './engine-port.js';
import { HttpError, sendError } from './http.js';

export const SSE_CLIENTS_MAX_DEFAULT = 16;
const TICK_MS = 1000;
const CLIENT_BUFFER_BYTES_MAX = 1024 * 1024;

export class EventHub {
  readonly #engine: ApiEngine;
  readonly #log: Log;
  readonly #clientsMax: number;
  readonly #clients = new Set<ServerResponse>();
  #timer: NodeJS.Timeout | undefined;
  #nextId = 1;
  readonly #onChange = (): void => { this.#broadcast('change'); };

  constructor(engine: ApiEngine, log: Log, clientsMax = SSE_CLIENTS_MAX_DEFAULT) {
    if (!(clientsMax >= 1 && clientsMax <= 1024)) throw new Error(`SSE clientsMax out of range: ${clientsMax}`);
    this.#engine = engine;
    this.#log = log;
    this.#clientsMax = clientsMax;
  }

  get clientCount(): number { return this.#clients.size; }

  attach(req: IncomingMessage, res: ServerResponse): void {
    if (this.#clients.size >= this.#clientsMax) {
      sendError(res, new HttpError(503, 'busy', `too many event streams (at most ${this.#clientsMax})`, 'events',
        'close another GUI tab or event client'), { 'retry-after': '5' });
      return;
    }
    res.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-store',
      connection: 'keep-alive', 'x-accel-buffering': 'no', 'x-content-type-options': 'nosniff',
    });
    res.write('retry: 2000\n\n');
    this.#clients.add(res);
    if (this.#clients.size === 1) this.#start();
    const drop = (): void => { this.#remove(res); };
    res.on('close', drop);
    res.on('error', drop);
    this.#send(res, 'status', this.#statusJson());
  }

  close(): void {
    // Streams never go idle, so server.close() would wait for them: end them and their sockets.
    for (const res of this.#clients) res.end(() => { res.socket?.destroy(); });
    this.#clients.clear();
    this.#stop();
  }

  #start(): void {
    this.#engine.events.on('change', this.#onChange);
    this.#timer = setInterval(() => { this.#broadcast('status'); }, TICK_MS);
  }

  #stop(): void {
    this.#engine.events.off('change', this.#onChange);
    if (this.#timer !== undefined) clearInterval(this.#timer);
    this.#timer = undefined;
  }

  #remove(res: ServerResponse): void {
    if (!this.#clients.delete(res)) return;
    if (this.#clients.size === 0) this.#stop();
  }

  #broadcast(event: 'change' | 'status'): void {
    const data = this.#statusJson();
    if (data === undefined) return;
    for (const res of [...this.#clients]) this.#send(res, event, data);
  }

  #send(res: ServerResponse, event: string, data: string | undefined): void {
    if (data === undefined) return;
    if (res.writableLength > CLIENT_BUFFER_BYTES_MAX) {
      this.#log('warn', 'dropping an event stream client that stopped reading');
      this.#remove(res);
      res.destroy();
      return;
    }
    res.write(`id: ${this.#nextId++}\nevent: ${event}\ndata: ${data}\n\n`);
  }

  #statusJson(): string | undefined {
    try {
      return JSON.stringify(this.#engine.status());
    } catch (err) {
      // The engine is closing: skip this tick, the stream ends with close().
      this.#log('warn', `event stream: status unavailable: ${err instanceof Error ? err.message : String(err)}`);
      return undefined;
    }
  }
}
