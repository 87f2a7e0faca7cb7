// Small HTTP helpers for the API server: JSON replies, errors as {error, code, where, hint},
// size-capped JSON bodies, and the constant-time token check.
import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { isEngineError } from '../errors.js';

export const BODY_BYTES_MAX = 64 * 1024;

/** An error with an HTTP status; `where` names the field or resource, `hint` what to do. */
export class HttpError extends Error {
  readonly status: number;
  readonly code: string;
  readonly where?: string;
  readonly hint?: string;
  /** Extra response headers, e.g. Allow on a 405. */
  headers: Record<string, string> = {};
  constructor(status: number, code: string, message: string, where?: string, hint?: string) {
    super(message);
    this.name = 'HttpError';
    this.status = status;
    this.code = code;
    if (where !== undefined) this.where = where;
    if (hint !== undefined) this.hint = hint;
  }
}

export function badRequest(message: string, where: string, hint?: string): HttpError {
  return new HttpError(400, 'invalid', message, where, hint);
}

const ENGINE_STATUS: Readonly<Record<string, number>> = {
  config: 400, invalid: 400, 'not-found': 404, conflict: 409, io: 500, closed: 503, unreachable: 502,
};

/** HttpError as is; EngineError by its code; anything else is a 500 that says nothing inside. */
export function toHttpError(err: unknown): HttpError {
  if (err instanceof HttpError) return err;
  if (isEngineError(err)) {
    return new HttpError(ENGINE_STATUS[err.code] ?? 500, err.code, err.message, err.where, err.hint);
  }
  return new HttpError(500, 'internal', 'internal error', undefined, 'see the daemon log (stderr of onestack serve)');
}

const COMMON_HEADERS = {
  'cache-control': 'no-store',
  'x-content-type-options': 'nosniff',
  // The GUI URL carries the token: never hand it on to another site.
  'referrer-policy': 'no-referrer',
} as const;

export function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { ...COMMON_HEADERS, 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

export function sendNoContent(res: ServerResponse): void {
  res.writeHead(204, COMMON_HEADERS);
  res.end();
}

export function sendText(res: ServerResponse, status: number, contentType: string, text: string, extra: Record<string, string> = {}): void {
  res.writeHead(status, { ...COMMON_HEADERS, ...extra, 'content-type': contentType, 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

export function sendError(res: ServerResponse, err: HttpError, extra: Record<string, string> = {}): void {
  const body: Record<string, string> = { error: err.message, code: err.code };
  if (err.where !== undefined) body['where'] = err.where;
  if (err.hint !== undefined) body['hint'] = err.hint;
  const text = JSON.stringify(body);
  res.writeHead(err.status, { ...COMMON_HEADERS, ...err.headers, ...extra, 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

/** Reads a JSON body of at most BODY_BYTES_MAX bytes; an empty body is `{}`. */
export async function readJsonBody(req: IncomingMessage): Promise<unknown> {
  const declared = Number(req.headers['content-length'] ?? '0');
  if (declared > BODY_BYTES_MAX) throw tooLarge();
  const chunks: Buffer[] = [];
  let total = 0;
  for await (const chunk of req) {
    const buffer = chunk as Buffer;
    total += buffer.length;
    if (total > BODY_BYTES_MAX) throw tooLarge();
    chunks.push(buffer);
  }
  const text = Buffer.concat(chunks).toString('utf8').trim();
  if (text === '') return {};
  try {
    return JSON.parse(text) as unknown;
  } catch (err) {
    throw badRequest(`request body is not valid JSON: ${err instanceof Error ? err.message : String(err)}`, 'body',
      'send Content-Type: application/json with a JSON object');
  }
}

function tooLarge(): HttpError {
  return new HttpError(413, 'invalid', `request body is larger than ${BODY_BYTES_MAX} bytes`, 'body');
}

/** Holds the token's digest and compares candidates in constant time. */
export class TokenCheck {
  readonly #digest: Buffer;
  constructor(token: string) {
    if (token.length < 16) throw new Error('API token too short (want at least 16 characters)');
    this.#digest = digest(token);
  }
  /** Equal-length digests, so timingSafeEqual never leaks the token's length or prefix. */
  matches(candidate: string | undefined): boolean {
    if (candidate === undefined || candidate.length > 4096) return false;
    return timingSafeEqual(digest(candidate), this.#digest);
  }
  /** `Authorization: Bearer TOKEN` */
  matchesRequest(req: IncomingMessage): boolean {
    const header = req.headers['authorization'];
    if (typeof header !== 'string') return false;
    const match = /^Bearer\s+(\S+)\s*$/i.exec(header);
    return this.matches(match?.[1]);
  }
}

function digest(text: string): Buffer {
  return createHash('sha256').update(text, 'utf8').digest();
}
