// fetch-based client of the daemon's JSON API, used by every CLI command except `serve`.
// Every request has a timeout; failures become CliErrors that say what to do next.
import type { CheckpointStatus, DiscoverResult, ElementStatus, EngineStatus, RebuildStatus, VolumeStatus } from '@onestack/engine';
import { CliError } from '../errors.js';
import { formatHostPort, type HostPort } from '../args.js';

export const API_PREFIX = '/api/v1';

export interface ClientOptions {
  readonly api: HostPort;
  readonly token?: string;
  /**
   * Bound on every request (`--timeout SEC`). Without it: TIMEOUT_MS_DEFAULT for status and other
   * quick calls, SLOW_TIMEOUT_MS_DEFAULT for the control operations that open elements or assemble volumes.
   */
  readonly timeoutMs?: number;
  /** Where the token was looked for, for the hint when the daemon answers 401. */
  readonly tokenSource?: string;
}

export interface CreateVolumeBody {
  name: string; layout: string; elements: string[]; chunkKiB?: number; sizeBytes?: number; order?: string; integrity?: boolean;
  writeBehind?: { element: string; maxLagMiB?: number; drainOnFlush?: boolean };
}
export interface AddElementBody { uri: string; name?: string; cache?: string; secretFile?: string }
export interface DiscoverBody {
  uri: string; secret?: string; secretFile?: string; tls?: { ca?: string; cert?: string; key?: string };
}

export interface ScrubBody { repair?: boolean; maxMiBPerSec?: number }
export interface ScrubStartedBody { volume: string; kind: 'check' | 'repair'; startedMs: number; progress: RebuildStatus }

interface ErrorBody { error?: unknown; where?: unknown; hint?: unknown }

/** Status, lists and other calls the daemon answers at once. */
export const TIMEOUT_MS_DEFAULT = 10_000;
/**
 * Control operations that open elements or (re)assemble volumes. They can legitimately wait: taking
 * an rbd image's ownership lock from a dead holder waits out its lease (15 s by default) plus fencing,
 * and a gateway's start or a remote's connect has its own deadlines on top.
 */
export const SLOW_TIMEOUT_MS_DEFAULT = 120_000;
/** fetch (undici) gives up waiting for response headers after 300 s whatever the signal says. */
export const TIMEOUT_MS_MAX = 300_000;

type Speed = 'quick' | 'slow';

export class ApiClient {
  readonly #options: ClientOptions;
  readonly #base: string;

  constructor(options: ClientOptions) {
    this.#options = options;
    this.#base = `http://${formatHostPort(options.api)}${API_PREFIX}`;
  }

  status(): Promise<EngineStatus> { return this.#request('GET', '/status') as Promise<EngineStatus>; }
  volumes(): Promise<VolumeStatus[]> { return this.#request('GET', '/volumes') as Promise<VolumeStatus[]>; }
  elements(): Promise<ElementStatus[]> { return this.#request('GET', '/elements') as Promise<ElementStatus[]>; }
  createVolume(body: CreateVolumeBody): Promise<VolumeStatus> {
    return this.#request('POST', '/volumes', body, 'slow') as Promise<VolumeStatus>;
  }
  async deleteVolume(name: string): Promise<void> { await this.#request('DELETE', `/volumes/${encodeURIComponent(name)}`, undefined, 'slow'); }
  growVolume(name: string, sizeBytes: number): Promise<VolumeStatus> {
    return this.#request('POST', `/volumes/${encodeURIComponent(name)}/grow`, { sizeBytes }, 'slow') as Promise<VolumeStatus>;
  }
  reshapeVolume(name: string, body: { add: string[]; layout?: string; maxMiBPerSec?: number; resume?: boolean }): Promise<VolumeStatus> {
    return this.#request('POST', `/volumes/${encodeURIComponent(name)}/reshape`, body, 'slow') as Promise<VolumeStatus>;
  }
  volume(name: string): Promise<VolumeStatus> {
    return this.#request('GET', `/volumes/${encodeURIComponent(name)}`) as Promise<VolumeStatus>;
  }
  startScrub(name: string, body: ScrubBody): Promise<ScrubStartedBody> {
    return this.#request('POST', `/volumes/${encodeURIComponent(name)}/scrub`, body) as Promise<ScrubStartedBody>;
  }
  cancelScrub(name: string): Promise<{ volume: string; cancelled: boolean }> {
    return this.#request('DELETE', `/volumes/${encodeURIComponent(name)}/scrub`) as Promise<{ volume: string; cancelled: boolean }>;
  }
  replaceElement(volume: string, oldElement: string, newElement: string): Promise<VolumeStatus> {
    return this.#request('POST', `/volumes/${encodeURIComponent(volume)}/replace`, { old: oldElement, new: newElement }, 'slow') as Promise<VolumeStatus>;
  }
  addMember(volume: string, element: string): Promise<VolumeStatus> {
    return this.#request('POST', `/volumes/${encodeURIComponent(volume)}/members`, { element }, 'slow') as Promise<VolumeStatus>;
  }
  removeMember(volume: string, element: string): Promise<VolumeStatus> {
    return this.#request('DELETE', `/volumes/${encodeURIComponent(volume)}/members/${encodeURIComponent(element)}`, undefined, 'slow') as Promise<VolumeStatus>;
  }
  createCheckpoint(volume: string, name?: string): Promise<CheckpointStatus> {
    return this.#request('POST', `/volumes/${encodeURIComponent(volume)}/checkpoints`, name === undefined ? {} : { name }) as Promise<CheckpointStatus>;
  }
  checkpoints(volume: string): Promise<CheckpointStatus[]> {
    return this.#request('GET', `/volumes/${encodeURIComponent(volume)}/checkpoints`) as Promise<CheckpointStatus[]>;
  }
  async deleteCheckpoint(volume: string, name: string): Promise<void> {
    await this.#request('DELETE', `/volumes/${encodeURIComponent(volume)}/checkpoints/${encodeURIComponent(name)}`);
  }
  addElement(body: AddElementBody): Promise<ElementStatus> {
    return this.#request('POST', '/elements', body, 'slow') as Promise<ElementStatus>;
  }
  async removeElement(name: string): Promise<void> { await this.#request('DELETE', `/elements/${encodeURIComponent(name)}`, undefined, 'slow'); }
  failElement(name: string): Promise<ElementStatus> {
    return this.#request('POST', `/elements/${encodeURIComponent(name)}/fail`) as Promise<ElementStatus>;
  }

  discover(body: DiscoverBody): Promise<DiscoverResult> {
    return this.#request('POST', '/discover', body) as Promise<DiscoverResult>;
  }

  /** The bound a request of this speed gets (the --timeout option wins). */
  timeoutMsFor(speed: Speed): number {
    const ms = this.#options.timeoutMs ?? (speed === 'slow' ? SLOW_TIMEOUT_MS_DEFAULT : TIMEOUT_MS_DEFAULT);
    return Math.min(Math.max(1, ms), TIMEOUT_MS_MAX);
  }

  async #request(method: string, path: string, body?: unknown, speed: Speed = 'quick'): Promise<unknown> {
    const headers: Record<string, string> = { accept: 'application/json' };
    if (this.#options.token !== undefined) headers['authorization'] = `Bearer ${this.#options.token}`;
    if (body !== undefined) headers['content-type'] = 'application/json';
    const timeoutMs = this.timeoutMsFor(speed);
    // One signal for the whole exchange: a daemon that sends headers and then stalls the body is bounded too.
    const signal = AbortSignal.timeout(timeoutMs);
    let response: Response;
    let text: string;
    try {
      response = await fetch(this.#base + path, { method, headers, body: body === undefined ? null : JSON.stringify(body), signal });
      text = await response.text();
    } catch (err) {
      throw this.#unreachable(err, timeoutMs, method, speed);
    }
    if (response.ok) return text === '' ? undefined : parseJson(text, path);
    throw this.#httpError(method, path, response.status, text);
  }

  #unreachable(err: unknown, timeoutMs: number, method: string, speed: Speed): CliError {
    const where = formatHostPort(this.#options.api);
    const name = err instanceof Error ? err.name : '';
    if (name === 'TimeoutError' || name === 'AbortError') return timeoutError(where, timeoutMs, method, speed);
    const cause = causeCode(err);
    if (cause === 'bad port') {
      // fetch refuses the Fetch standard's "bad ports" (1, 6000, 6665-6669, ...) before connecting.
      return new CliError(2, `fetch refuses to connect to port ${this.#options.api.port}`, 'bad port',
        'serve the API on another port (the default is 9090) and pass that to --api');
    }
    return new CliError(1, `cannot reach the daemon at ${where}`, cause, 'start it with: onestack serve');
  }

  #httpError(method: string, path: string, status: number, text: string): CliError {
    if (status === 401) {
      const source = this.#options.tokenSource ?? 'ONESTACK_TOKEN or <data dir>/api-token';
      const what = this.#options.token === undefined ? 'no API token' : 'the daemon rejected the API token';
      return new CliError(1, what, source, 'pass the daemon\'s --data-dir, or set ONESTACK_TOKEN to the contents of its api-token file');
    }
    let body: ErrorBody = {};
    try { body = JSON.parse(text) as ErrorBody; } catch { /* not JSON: fall back to the status line */ }
    const message = typeof body.error === 'string' ? body.error : `${method} ${path} failed with HTTP ${status}`;
    const where = typeof body.where === 'string' ? body.where : `HTTP ${status}`;
    const hint = typeof body.hint === 'string' ? body.hint : undefined;
    // 400 means the request itself was wrong: a usage error, like a bad flag.
    return new CliError(status === 400 ? 2 : 1, message, where, hint);
  }
}

/**
 * A request that outlived its bound. A change (element add, volume create, ...) is not undone by the
 * client giving up: the daemon goes on with it, so the hint says to look before trying again.
 */
function timeoutError(where: string, timeoutMs: number, method: string, speed: Speed): CliError {
  // Bound on the client side only: a request is never withdrawn once sent.
  const seconds = timeoutMs >= 1000 ? `${Math.round(timeoutMs / 100) / 10} s` : `${timeoutMs} ms`;
  const message = `the daemon at ${where} did not answer within ${seconds}`;
  if (speed === 'quick') {
    return new CliError(1, message, `${method} timeout`, 'is it overloaded or stuck? check its log (stderr of onestack serve); wait longer with --timeout SEC');
  }
  return new CliError(1, `${message}; the daemon keeps working on the request (taking an rbd image's lock from a dead holder waits out its lease first)`,
    `${method} timeout`, 'check the outcome with onestack status before trying again; give it longer with --timeout SEC (at most 300)');
}

function parseJson(text: string, path: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    throw new CliError(1, 'the daemon sent a response that is not JSON', path, 'is something else listening on that port?');
  }
}

/**
 * fetch wraps the socket error: TypeError('fetch failed', { cause: { code: 'ECONNREFUSED' } }).
 * The first errno code on the cause chain, else the innermost message.
 */
function causeCode(err: unknown): string {
  let current: unknown = err;
  let message = err instanceof Error ? err.message : String(err);
  for (let depth = 0; depth < 4 && current instanceof Error; depth++) {
    const code = (current as NodeJS.ErrnoException).code;
    if (typeof code === 'string' && code !== '') return code;
    message = current.message;
    current = current.cause;
  }
  return message;
}
