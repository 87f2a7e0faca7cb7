// Live status: the daemon's SSE stream (GET /api/v1/events: a `status` event every second and a
// `change` event on every state change or 250 ms of rebuild progress). EventSource cannot send
// an Authorization header, so the stream is read through fetch. When it cannot be had (too many
// streams, a proxy that buffers, a dropped connection) the page polls GET /api/v1/status and
// tries the stream again a little later.
import { API, authHeaders, call, errorOf, ApiError } from './api.js';
import type { EngineStatus } from './types.js';

export type LiveMode = 'connecting' | 'events' | 'polling' | 'offline' | 'unauthorized';

export interface LiveHandlers {
  status(status: EngineStatus, atMs: number): void;
  mode(mode: LiveMode): void;
}

const POLL_MS = 1000;
/** Polling lasts this long before the stream is tried again. */
const POLL_SPELL_MS = 15_000;
/** The stream ticks every second: this much silence means it is stuck. */
const STREAM_SILENCE_MS = 5000;
const EVENT_CHARS_MAX = 8 * 1024 * 1024;

const sleep = (ms: number, signal: AbortSignal): Promise<void> => new Promise((resolve) => {
  const timer = setTimeout(resolve, ms);
  signal.addEventListener('abort', () => { clearTimeout(timer); resolve(); }, { once: true });
});

/** Runs until the returned function is called. */
export function startLive(handlers: LiveHandlers): () => void {
  const stop = new AbortController();
  void run(handlers, stop.signal);
  return () => stop.abort();
}

async function run(h: LiveHandlers, signal: AbortSignal): Promise<void> {
  h.mode('connecting');
  while (!signal.aborted) {
    const outcome = await stream(h, signal);
    if (outcome === 'unauthorized') return h.mode('unauthorized');
    if (signal.aborted) return;
    if ((await poll(h, signal, POLL_SPELL_MS)) === 'unauthorized') return h.mode('unauthorized');
  }
}

/** Reads the event stream until it ends; every `data:` is a whole status object. */
async function stream(h: LiveHandlers, outer: AbortSignal): Promise<'ended' | 'unauthorized'> {
  const ctl = new AbortController();
  const abort = (): void => ctl.abort();
  outer.addEventListener('abort', abort, { once: true });
  let watchdog = setTimeout(abort, STREAM_SILENCE_MS);
  try {
    const res = await fetch(`${API}/events`, { headers: { ...authHeaders(), accept: 'text/event-stream' }, signal: ctl.signal, cache: 'no-store' });
    if (!res.ok || res.body === null) {
      const err = await errorOf(res);
      return err.status === 401 ? 'unauthorized' : 'ended';
    }
    h.mode('events');
    const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = '';
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return 'ended';
      buffer += value;
      if (buffer.length > EVENT_CHARS_MAX) return 'ended';
      let end: number;
      while ((end = buffer.indexOf('\n\n')) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const data = block.split('\n').filter((l) => l.startsWith('data:')).map((l) => l.slice(5).replace(/^ /, '')).join('\n');
        if (data === '') continue;
        clearTimeout(watchdog);
        watchdog = setTimeout(abort, STREAM_SILENCE_MS);
        h.status(JSON.parse(data) as EngineStatus, Date.now());
      }
    }
  } catch {
    return 'ended';
  } finally {
    clearTimeout(watchdog);
    outer.removeEventListener('abort', abort);
    ctl.abort();
  }
}

async function poll(h: LiveHandlers, signal: AbortSignal, spellMs: number): Promise<'done' | 'unauthorized'> {
  const until = Date.now() + spellMs;
  while (!signal.aborted && Date.now() < until) {
    try {
      h.status(await call<EngineStatus>('GET', '/status'), Date.now());
      h.mode('polling');
    } catch (err) {
      if (err instanceof ApiError && err.status === 401) return 'unauthorized';
      h.mode('offline');
    }
    await sleep(POLL_MS, signal);
  }
  return 'done';
}
