// Calls to the daemon's JSON API with the bearer token. The token comes from the GUI URL
// (`?token=`, as the daemon's banner prints it) or the token form, and lives in sessionStorage
// only (gone with the tab); it is taken out of the address bar at once so it is not bookmarked.

const TOKEN_KEY = 'onestack.apiToken';
const CALL_TIMEOUT_MS = 30_000;
/**
 * Adding an element or creating a volume can legitimately wait: taking an rbd image's lock from a
 * dead holder waits out its lease (15 s by default) plus fencing (docs/rbd.md).
 */
export const SLOW_CALL_TIMEOUT_MS = 120_000;
export const API = '/api/v1';

export function takeTokenFromUrl(): void {
  const url = new URL(window.location.href);
  const token = url.searchParams.get('token');
  if (token === null) return;
  if (token !== '') setToken(token);
  url.searchParams.delete('token');
  window.history.replaceState(null, '', url.pathname + url.search + url.hash);
}

export function getToken(): string | null {
  return window.sessionStorage.getItem(TOKEN_KEY);
}

export function setToken(token: string): void {
  window.sessionStorage.setItem(TOKEN_KEY, token.trim());
}

export function forgetToken(): void {
  window.sessionStorage.removeItem(TOKEN_KEY);
}

/** A 4xx/5xx from the API: its JSON `{error, code, where, hint}`, or what the transport said. */
export class ApiError extends Error {
  readonly status: number;
  readonly code: string;
  readonly where: string | undefined;
  readonly hint: string | undefined;
  constructor(status: number, message: string, code = 'error', where?: string, hint?: string) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.code = code;
    this.where = where;
    this.hint = hint;
  }

  /** One line for a person: what, where, and what to do. */
  describe(): string {
    const where = this.where !== undefined ? ` (${this.where})` : '';
    const hint = this.hint !== undefined ? ` — ${this.hint}` : '';
    return `${this.message}${where}${hint}`;
  }
}

type Listener = () => void;
const unauthorizedListeners = new Set<Listener>();

/** Called whenever the API answers 401: the token is wrong or gone. */
export function onUnauthorized(listener: Listener): () => void {
  unauthorizedListeners.add(listener);
  return () => unauthorizedListeners.delete(listener);
}

export function authHeaders(): Record<string, string> {
  const token = getToken();
  return token === null ? {} : { authorization: `Bearer ${token}` };
}

/** Turns a failed response into an ApiError (and tells listeners about a 401). */
export async function errorOf(res: Response): Promise<ApiError> {
  if (res.status === 401) for (const l of unauthorizedListeners) l();
  try {
    const body = (await res.json()) as { error?: unknown; code?: unknown; where?: unknown; hint?: unknown };
    const text = (v: unknown): string | undefined => (typeof v === 'string' ? v : undefined);
    return new ApiError(res.status, text(body.error) ?? `HTTP ${res.status}`, text(body.code), text(body.where), text(body.hint));
  } catch {
    return new ApiError(res.status, `HTTP ${res.status} ${res.statusText}`);
  }
}

export async function call<T>(method: string, path: string, body?: unknown, timeoutMs = CALL_TIMEOUT_MS): Promise<T> {
  const headers: Record<string, string> = { ...authHeaders(), accept: 'application/json' };
  if (body !== undefined) headers['content-type'] = 'application/json';
  let res: Response;
  try {
    res = await fetch(API + path, {
      method, headers, body: body === undefined ? null : JSON.stringify(body), signal: AbortSignal.timeout(timeoutMs), cache: 'no-store',
    });
  } catch (err) {
    if (err instanceof Error && err.name === 'TimeoutError' && method !== 'GET') {
      // The daemon is not told to stop: the change goes on, and the tables show when it is done.
      throw new ApiError(0, `no answer from the daemon within ${Math.round(timeoutMs / 1000)} s; it keeps working on the request`, 'timeout', undefined,
        'watch the tables below (they update live) before trying again');
    }
    throw new ApiError(0, `cannot reach the daemon: ${err instanceof Error ? err.message : String(err)}`, 'network', undefined, 'is `onestack serve` running?');
  }
  if (!res.ok) throw await errorOf(res);
  if (res.status === 204) return undefined as T;
  return (await res.json()) as T;
}

export function describeError(err: unknown): string {
  return err instanceof ApiError ? err.describe() : err instanceof Error ? err.message : String(err);
}

/** Path segment of a volume or element name. */
export function seg(name: string): string {
  return encodeURIComponent(name);
}
