// The daemon's HTTP server (node:http): JSON API under /api/v1 with a Bearer token, the web GUI
// at / (packages/web/dist; a server-rendered page when it is not built), SSE events and
// Prometheus metrics. Control plane only: nothing here touches volume data.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { ApiEngine, Log } from './engine-port.js';
import { EventHub } from './events.js';
import {
  HttpError, TokenCheck, readJsonBody, sendError, sendJson, sendNoContent, sendText, toHttpError,
} from './http.js';
import { METRICS_CONTENT_TYPE, renderMetrics } from './metrics.js';
import { renderPage, renderUnauthorizedPage } from './page.js';
import { DEFAULT_WEB_DIR, WebRoot } from './web-root.js';
import { listCandidates } from './candidates.js';
import { addElement, checkAddElementRequest } from './element-secret.js';
import { checkAddMember, checkCheckpointName, checkCreateCheckpoint, checkCreateVolume, checkDiscover, checkGrow, checkName, checkReshape, checkReplace, checkScrub, type DiscoverSpec } from './validate.js';
import { redact } from '../uri-secret.js';
import { isEngineError } from '../errors.js';

export interface ApiServerOptions {
  readonly engine: ApiEngine;
  readonly token: string;
  readonly log?: Log;
  readonly version?: string;
  readonly sseClientsMax?: number;
  /** The built web GUI; default packages/web/dist next to this package; null = the minimal page only. */
  readonly webDir?: string | null;
}

export interface ApiServer {
  readonly host: string;
  readonly port: number;
  /** The listening socket's fd, passed on to the next process by a takeover (takeover.ts). */
  readonly fd: number | undefined;
  /** Stops listening, ends event streams, and after `timeoutMs` (default 1000) drops what is left. */
  close(timeoutMs?: number): Promise<void>;
}

const PREFIX = '/api/v1';
const MUTATIONS_PENDING_MAX = 32;
/** Each discovery holds a socket to a remote for up to its timeout: bound them. */
const DISCOVERIES_MAX = 8;
const HTML = 'text/html; charset=utf-8';
const PAGE_CSP = "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/**
 * Starts listening on HOST:PORT or on an inherited listening socket (socket activation: its fd);
 * rejects with the listen error (EADDRINUSE, EACCES, ...) as is. An fd that is a Unix socket
 * reports host '' and port 0.
 */
export async function startApiServer(options: ApiServerOptions, listen: { host: string; port: number } | { fd: number }): Promise<ApiServer> {
  const log: Log = options.log ?? (() => undefined);
  const handler = new ApiHandler(options, log);
  const server = createServer({ requestTimeout: 30_000, headersTimeout: 10_000 }, (req, res) => { handler.handle(req, res); });
  server.maxHeadersCount = 64;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    const at = 'fd' in listen ? { fd: listen.fd } : { host: listen.host, port: listen.port, exclusive: true };
    server.listen(at, () => { server.off('error', reject); resolve(); });
  });
  server.on('error', (err) => { log('error', `API server: ${err.message}`); });
  const bound = server.address();
  const address: Pick<AddressInfo, 'address' | 'port'> = bound !== null && typeof bound === 'object' ? bound : { address: '', port: 0 };
  const fd = (server as unknown as { _handle?: { fd?: unknown } })._handle?.fd;
  return { host: address.address, port: address.port, fd: typeof fd === 'number' && fd >= 0 ? fd : undefined, close: (timeoutMs = 1000) => closeServer(server, handler, timeoutMs) };
}

async function closeServer(server: Server, handler: ApiHandler, timeoutMs: number): Promise<void> {
  handler.events.close();
  const closed = new Promise<void>((resolve) => { server.close(() => { resolve(); }); });
  server.closeIdleConnections();
  // Clients may hold pre-opened sockets that never carry a request and so never count as idle:
  // after a short grace, close whatever is left. Requests here are short control-plane calls.
  const timer = setTimeout(() => { server.closeAllConnections(); }, timeoutMs);
  await closed;
  clearTimeout(timer);
}

class ApiHandler {
  readonly events: EventHub;
  readonly #engine: ApiEngine;
  readonly #tokens: TokenCheck;
  readonly #log: Log;
  readonly #version: string;
  #mutations: Promise<unknown> = Promise.resolve();
  #mutationsPending = 0;
  #discoveries = 0;
  readonly #web: WebRoot | null;

  constructor(options: ApiServerOptions, log: Log) {
    this.#engine = options.engine;
    this.#tokens = new TokenCheck(options.token);
    this.#log = log;
    this.#version = options.version ?? 'unknown';
    this.events = new EventHub(options.engine, log, options.sseClientsMax);
    const webDir = options.webDir === undefined ? DEFAULT_WEB_DIR : options.webDir;
    this.#web = webDir === null ? null : WebRoot.load(webDir);
    if (webDir !== null && this.#web === null) log('warn', `web GUI not built (no ${webDir}/index.html): / serves the minimal page; run \`pnpm run build\``);
  }

  handle(req: IncomingMessage, res: ServerResponse): void {
    this.#route(req, res).catch((err: unknown) => {
      const httpError = toHttpError(err);
      // Never log the URL's query: the GUI URL carries the token.
      // A daemon fault gets its stack; a remote that did not answer (502) or a closing engine (503) one line.
      if (httpError.status === 500) this.#log('error', `${req.method ?? '?'} ${pathOf(req)}: ${err instanceof Error ? err.stack ?? err.message : String(err)}`);
      else if (httpError.status > 500) this.#log('warn', `${req.method ?? '?'} ${pathOf(req)}: ${httpError.message}`);
      if (!res.headersSent) sendError(res, httpError);
      else res.destroy();
    });
  }

  async #route(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://localhost');
    const method = req.method ?? 'GET';
    if (url.pathname === '/' || url.pathname === '/index.html') return this.#page(req, res, method, url);
    if (url.pathname.startsWith('/assets/') && this.#web !== null) {
      if (method !== 'GET' && method !== 'HEAD') throw methodNotAllowed(['GET']);
      if (this.#web.sendAsset(res, url.pathname.slice('/assets/'.length), method === 'HEAD')) return;
      throw new HttpError(404, 'not-found', `no such file: ${url.pathname}`, url.pathname);
    }
    if (url.pathname !== PREFIX && !url.pathname.startsWith(PREFIX + '/')) {
      throw new HttpError(404, 'not-found', `no such page: ${url.pathname}`, url.pathname, `the API lives under ${PREFIX}`);
    }
    if (!this.#tokens.matchesRequest(req)) {
      sendError(res, new HttpError(401, 'unauthorized', 'missing or wrong API token', 'Authorization',
        'send Authorization: Bearer TOKEN with the token from <data dir>/api-token'), { 'www-authenticate': 'Bearer realm="onestack"' });
      return;
    }
    await this.#api(req, res, method, segments(url.pathname.slice(PREFIX.length)));
  }

  /**
   * The GUI's index.html holds no data, so it goes to anyone: the page takes the token from the
   * URL (or asks for it) and sends it with every API call. Without the built GUI, the minimal page
   * renders the status, so it wants the token first.
   */
  #page(req: IncomingMessage, res: ServerResponse, method: string, url: URL): void {
    if (method !== 'GET' && method !== 'HEAD') throw methodNotAllowed(['GET']);
    if (this.#web !== null) return this.#web.sendIndex(res, method === 'HEAD');
    // The GUI URL is the only place a token may ride in the query; nothing else is set (no cookie).
    if (!this.#tokens.matches(url.searchParams.get('token') ?? undefined) && !this.#tokens.matchesRequest(req)) {
      return sendText(res, 401, HTML, renderUnauthorizedPage(), { 'content-security-policy': PAGE_CSP });
    }
    sendText(res, 200, HTML, renderPage(this.#engine.status(), this.#version), { 'content-security-policy': PAGE_CSP });
  }

  async #api(req: IncomingMessage, res: ServerResponse, method: string, parts: readonly string[]): Promise<void> {
    const [collection, name, action, extra, more] = parts;
    // Four segments only for one checkpoint or member: volumes/NAME/checkpoints/CKPT, volumes/NAME/members/ELEMENT.
    if (more !== undefined || (extra !== undefined && (collection !== 'volumes' || (action !== 'checkpoints' && action !== 'members')))) throw notFound(parts);
    if (collection === 'status' && name === undefined) return this.#get(method, res, () => this.#engine.status());
    if (collection === 'metrics' && name === undefined) {
      if (method !== 'GET') throw methodNotAllowed(['GET']);
      return sendText(res, 200, METRICS_CONTENT_TYPE, await renderMetrics(this.#engine.status()));
    }
    if (collection === 'events' && name === undefined) {
      if (method !== 'GET') throw methodNotAllowed(['GET']);
      return this.events.attach(req, res);
    }
    if (collection === 'volumes') return this.#volumes(req, res, method, name, action, extra);
    if (collection === 'elements') return this.#elements(req, res, method, name, action);
    if (collection === 'discover' && name === undefined) return this.#discover(req, res, method);
    if (collection === 'candidates' && name === undefined) {
      return this.#get(method, res, () => { const status = this.#engine.status(); return listCandidates(status.dataDir, status.elements); });
    }
    throw notFound(parts);
  }

  async #volumes(req: IncomingMessage, res: ServerResponse, method: string, name?: string, action?: string, extra?: string): Promise<void> {
    if (name === undefined) {
      if (method === 'GET') return sendJson(res, 200, this.#engine.status().volumes);
      if (method !== 'POST') throw methodNotAllowed(['GET', 'POST']);
      const spec = checkCreateVolume(await readJsonBody(req));
      await this.#mutate(() => this.#engine.createVolume(spec));
      return sendJson(res, 201, this.#volume(spec.name));
    }
    checkName(name, 'volume');
    if (action === 'replace') return this.#replace(req, res, method, name);
    if (action === 'scrub') return this.#scrub(req, res, method, name);
    if (action === 'boot') return this.#boot(req, res, method, name);
    if (action === 'grow') return this.#grow(req, res, method, name);
    if (action === 'reshape') return this.#reshape(req, res, method, name);
    if (action === 'checkpoints') return this.#checkpoints(req, res, method, name, extra);
    if (action === 'members') return this.#members(req, res, method, name, extra);
    if (action !== undefined) throw notFound(['volumes', name, action]);
    if (method === 'GET') return sendJson(res, 200, this.#volume(name));
    if (method !== 'DELETE') throw methodNotAllowed(['GET', 'DELETE']);
    await this.#mutate(() => this.#engine.deleteVolume(name));
    return sendNoContent(res);
  }

  /** Accepted once the rebuild onto the new element has started; progress shows in status `rebuild`. */
  async #replace(req: IncomingMessage, res: ServerResponse, method: string, name: string): Promise<void> {
    if (method !== 'POST') throw methodNotAllowed(['POST']);
    const spec = checkReplace(await readJsonBody(req));
    const engine = this.#engine;
    if (engine.replaceElement === undefined) {
      throw new HttpError(501, 'not-implemented', 'this engine cannot replace elements yet', `volumes/${name}/replace`,
        'fail the old element; the volume keeps running degraded');
    }
    await this.#mutate(() => engine.replaceElement!(name, spec.old, spec.new));
    return sendJson(res, 202, this.#volume(name));
  }

  /** POST `{ element }` adds a raid1 leg (202 once its rebuild started); DELETE .../members/ELEMENT removes one (200). */
  async #members(req: IncomingMessage, res: ServerResponse, method: string, name: string, element?: string): Promise<void> {
    const engine = this.#engine;
    if (engine.addMember === undefined || engine.removeMember === undefined) throw new HttpError(501, 'not-implemented', 'this engine cannot change volume members', `volumes/${name}/members`);
    if (element === undefined) {
      if (method !== 'POST') throw methodNotAllowed(['POST']);
      const spec = checkAddMember(await readJsonBody(req));
      await this.#mutate(() => engine.addMember!(name, spec.element));
      return sendJson(res, 202, this.#volume(name));
    }
    if (method !== 'DELETE') throw methodNotAllowed(['DELETE']);
    const leg = checkName(element, 'element');
    await this.#mutate(() => engine.removeMember!(name, leg));
    return sendJson(res, 200, this.#volume(name));
  }

  /** POST `{ sizeBytes }` grows the volume into room its elements have (engine volume-grow.ts); 200 with the volume. */
  async #grow(req: IncomingMessage, res: ServerResponse, method: string, name: string): Promise<void> {
    if (method !== 'POST') throw methodNotAllowed(['POST']);
    const spec = checkGrow(await readJsonBody(req));
    const engine = this.#engine;
    if (engine.growVolume === undefined) throw new HttpError(501, 'not-implemented', 'this engine cannot grow volumes', `volumes/${name}/grow`);
    await this.#mutate(() => engine.growVolume!(name, spec));
    return sendJson(res, 200, this.#volume(name));
  }

  /** POST `{ add, layout?, maxMiBPerSec? }` starts a reshape (engine durable/reshape*.ts); 202 once it runs, progress in status `reshape`. */
  async #reshape(req: IncomingMessage, res: ServerResponse, method: string, name: string): Promise<void> {
    if (method !== 'POST') throw methodNotAllowed(['POST']);
    const spec = checkReshape(await readJsonBody(req));
    const engine = this.#engine;
    if (engine.reshapeVolume === undefined) throw new HttpError(501, 'not-implemented', 'this engine cannot reshape volumes', `volumes/${name}/reshape`);
    await this.#mutate(() => engine.reshapeVolume!(name, spec));
    return sendJson(res, 202, this.#volume(name));
  }

  /** POST makes the volume the boot volume (an empty JSON object as body); 200 with the volume. */
  async #boot(req: IncomingMessage, res: ServerResponse, method: string, name: string): Promise<void> {
    if (method !== 'POST') throw methodNotAllowed(['POST']);
    checkEmptyBody(await readJsonBody(req));
    const engine = this.#engine;
    if (engine.setBootVolume === undefined) throw new HttpError(501, 'not-implemented', 'this engine cannot change the boot volume', `volumes/${name}/boot`);
    await this.#mutate(() => engine.setBootVolume!(name));
    return sendJson(res, 200, this.#volume(name));
  }

  /** POST starts a scrub (202 with its identity and first progress), DELETE cancels it. */
  async #scrub(req: IncomingMessage, res: ServerResponse, method: string, name: string): Promise<void> {
    if (method === 'DELETE') return sendJson(res, 200, { volume: name, cancelled: await this.#engine.cancelScrub(name) });
    if (method !== 'POST') throw methodNotAllowed(['POST', 'DELETE']);
    const spec = checkScrub(await readJsonBody(req));
    const started = await this.#engine.startScrub(name, spec);
    // Only the plain fields: the engine's object also carries its completion promise.
    return sendJson(res, 202, { volume: started.volume, kind: started.kind, startedMs: started.startedMs, progress: started.progress });
  }

  /**
   * POST starts a checkpoint (201 with it), GET lists them (unusable ones carry `unusable`), and
   * DELETE .../checkpoints/CKPT deletes one (204).
   */
  async #checkpoints(req: IncomingMessage, res: ServerResponse, method: string, volume: string, checkpoint?: string): Promise<void> {
    const engine = this.#engine;
    if (engine.checkpoint === undefined || engine.checkpoints === undefined || engine.deleteCheckpoint === undefined) {
      throw new HttpError(501, 'not-implemented', 'this engine has no checkpoints', `volumes/${volume}/checkpoints`);
    }
    this.#volume(volume); // 404 for an unknown volume, before anything else
    const all = (): readonly { name: string }[] => engine.checkpoints!(volume, { all: true });
    if (checkpoint !== undefined) {
      const ckpt = checkCheckpointName(checkpoint, 'checkpoint');
      if (method === 'GET') {
        const found = all().find((c) => c.name === ckpt);
        if (found === undefined) throw new HttpError(404, 'not-found', `volume ${volume} has no checkpoint named ${ckpt}`, `volumes/${volume}/checkpoints/${ckpt}`);
        return sendJson(res, 200, found);
      }
      if (method !== 'DELETE') throw methodNotAllowed(['GET', 'DELETE']);
      await this.#mutate(() => engine.deleteCheckpoint!(volume, ckpt));
      return sendNoContent(res);
    }
    if (method === 'GET') return sendJson(res, 200, all());
    if (method !== 'POST') throw methodNotAllowed(['GET', 'POST']);
    const spec = checkCreateCheckpoint(await readJsonBody(req));
    return sendJson(res, 201, await this.#mutate(() => engine.checkpoint!(volume, spec.name)));
  }

  async #elements(req: IncomingMessage, res: ServerResponse, method: string, name?: string, action?: string): Promise<void> {
    if (name === undefined) {
      if (method === 'GET') return sendJson(res, 200, this.#engine.status().elements);
      if (method !== 'POST') throw methodNotAllowed(['GET', 'POST']);
      // JSON.parse may quote the text it choked on, and this body may hold a CHAP secret.
      const body = await readJsonBody(req).catch((err: unknown) => {
        throw err instanceof HttpError && err.status === 400 ? new HttpError(400, 'invalid', 'request body is not valid JSON', 'body', err.hint) : err;
      });
      const request = checkAddElementRequest(body);
      const element = await this.#mutate(() => addElement(this.#engine, request));
      return sendJson(res, 201, element);
    }
    checkName(name, 'element');
    if (action === 'fail') {
      if (method !== 'POST') throw methodNotAllowed(['POST']);
      await this.#mutate(() => this.#engine.failElement(name));
      return sendJson(res, 200, this.#element(name));
    }
    if (action !== undefined) throw notFound(['elements', name, action]);
    if (method === 'GET') return sendJson(res, 200, this.#element(name));
    if (method !== 'DELETE') throw methodNotAllowed(['GET', 'DELETE']);
    await this.#mutate(() => this.#engine.removeElement(name));
    return sendNoContent(res);
  }

  /** Read-only, so it does not queue behind changes; the secret never comes back, even in errors. */
  async #discover(req: IncomingMessage, res: ServerResponse, method: string): Promise<void> {
    if (method !== 'POST') throw methodNotAllowed(['POST']);
    // JSON.parse may quote the text it choked on, and this body may hold a secret.
    const body = await readJsonBody(req).catch((err: unknown) => {
      throw err instanceof HttpError && err.status === 400 ? new HttpError(400, 'invalid', 'request body is not valid JSON', 'body', err.hint) : err;
    });
    const spec = checkDiscover(body);
    if (this.#discoveries >= DISCOVERIES_MAX) {
      throw new HttpError(503, 'busy', `too many discoveries running (${DISCOVERIES_MAX})`, 'api', 'retry in a moment');
    }
    this.#discoveries++;
    try {
      const { uri, ...opts } = spec;
      return sendJson(res, 200, await this.#engine.discover(uri, opts));
    } catch (err) {
      throw this.#redacted(err, spec);
    } finally {
      this.#discoveries--;
    }
  }

  #redacted(err: unknown, spec: DiscoverSpec): HttpError {
    const clean = (text: string | undefined): string | undefined => (text === undefined ? undefined : redact(text, spec.secret));
    if (err instanceof HttpError || isEngineError(err)) {
      const h = toHttpError(err);
      return new HttpError(h.status, h.code, clean(h.message) ?? '', clean(h.where), clean(h.hint));
    }
    // Logged here, redacted, because the generic handler would log the raw stack.
    this.#log('error', `POST ${PREFIX}/discover: ${clean(err instanceof Error ? err.stack ?? err.message : String(err)) ?? ''}`);
    return toHttpError(new Error('internal'));
  }

  #get(method: string, res: ServerResponse, body: () => unknown): void {
    if (method !== 'GET') throw methodNotAllowed(['GET']);
    sendJson(res, 200, body());
  }

  #volume(name: string): unknown {
    const volume = this.#engine.status().volumes.find((v) => v.name === name);
    if (volume === undefined) throw new HttpError(404, 'not-found', `no volume named ${name}`, `volumes/${name}`, 'list them with GET /api/v1/volumes');
    return volume;
  }

  #element(name: string): unknown {
    const element = this.#engine.status().elements.find((e) => e.name === name);
    if (element === undefined) throw new HttpError(404, 'not-found', `no element named ${name}`, `elements/${name}`, 'list them with GET /api/v1/elements');
    return element;
  }

  /** Changes run one at a time, in arrival order, with a bounded backlog. */
  async #mutate<T>(change: () => Promise<T>): Promise<T> {
    if (this.#mutationsPending >= MUTATIONS_PENDING_MAX) {
      throw new HttpError(503, 'busy', `too many changes pending (${MUTATIONS_PENDING_MAX})`, 'api', 'retry in a moment');
    }
    this.#mutationsPending++;
    const result = this.#mutations.then(change);
    this.#mutations = result.catch(() => undefined);
    try {
      return await result;
    } finally {
      this.#mutationsPending--;
    }
  }
}

function segments(path: string): string[] {
  const parts = path.split('/').filter((p) => p !== '');
  try {
    return parts.map((p) => decodeURIComponent(p));
  } catch {
    throw new HttpError(400, 'invalid', 'bad percent-encoding in the path', 'path');
  }
}

function pathOf(req: IncomingMessage): string {
  return (req.url ?? '/').split('?')[0] ?? '/';
}

function notFound(parts: readonly string[]): HttpError {
  return new HttpError(404, 'not-found', `no such route: ${PREFIX}/${parts.join('/')}`, 'path',
    'routes: status, volumes[/NAME[/scrub|/replace|/boot|/grow|/reshape|/members[/ELEMENT]|/checkpoints[/CKPT]]], elements[/NAME[/fail]], discover, candidates, events, metrics');
}

function checkEmptyBody(body: unknown): void {
  if (typeof body !== 'object' || body === null || Array.isArray(body) || Object.keys(body).length > 0) {
    const field = typeof body === 'object' && body !== null && !Array.isArray(body) ? Object.keys(body)[0] : undefined;
    throw new HttpError(400, 'invalid', field === undefined ? 'request body must be an empty JSON object' : `unknown field "${field}"`, field ?? 'body',
      'this request takes no fields: send {} or no body');
  }
}

function methodNotAllowed(allowed: readonly string[]): HttpError {
  const err = new HttpError(405, 'invalid', `method not allowed (use ${allowed.join(' or ')})`, 'method');
  err.headers = { allow: allowed.join(', ') };
  return err;
}
