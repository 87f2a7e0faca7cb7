// Element URIs and listen addresses. Secrets in iSCSI URIs are accepted (libiscsi style
// USER%SECRET@) but never leave this module except in the `secret` field of the result.
import * as path from 'node:path';
import type { ElementLocation, ListenAddress, NbdListenAddress } from './types.js';
import { configError, show } from './errors.js';
import { parseRbdUri } from './rbd.js';

export const NBD_DEFAULT_PORT = 10809;
export const ISCSI_DEFAULT_PORT = 3260;
const MASK = '***';

export interface ParsedElementUri {
  readonly location: ElementLocation;
  readonly maskedUri: string;
  readonly user?: string;
  readonly secret?: string;
}

/**
 * Replaces the secret of an iSCSI URI by ***, so the text is safe to print: everything from the
 * user's % or : to the last '@', since parseIscsi splits there and a secret may hold '@', '/'...
 * The same for SCHEME://USER:SECRET@ of any other scheme (a mistyped "iscsi" included).
 */
export function maskUri(uri: string): string {
  return uri.replace(/^(iscsi:[^%:]*[%:]|[a-z][a-z0-9+.-]*:\/\/[^%:]*[%:]).*@/is, `$1${MASK}@`)
    // Also USER%SECRET@ / USER:SECRET@ after any "//", so a mangled scheme ("is csi://…", taken
    // for a local path) still shows no secret in errors and status.
    .replace(/(\/\/[^/%:@\s]*[%:])[^\s]*@/g, `$1${MASK}@`);
}

function decode(text: string, field: string, what: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    throw configError(field, `bad percent-encoding in the ${what}`);
  }
}

/** Parses HOST[:PORT] (HOST may be [IPv6]); the port is required when defaultPort is undefined. */
export function parseHostPort(text: string, field: string, what: string, defaultPort?: number): ListenAddress {
  const match = /^(\[[0-9A-Fa-f:.%]+\]|[A-Za-z0-9._-]+)(?::(\d{1,5}))?$/.exec(text);
  if (match === null) {
    throw configError(field, `invalid ${what} ${show(text)} (expected HOST:PORT)`, 'like 127.0.0.1:10809 or [::1]:10809');
  }
  const host = (match[1] ?? '').replace(/^\[(.*)\]$/, '$1');
  if (match[2] === undefined && defaultPort === undefined) {
    throw configError(field, `invalid ${what} ${show(text)}: missing port (expected HOST:PORT)`, 'like 127.0.0.1:10809');
  }
  const port = match[2] === undefined ? (defaultPort ?? 0) : Number(match[2]);
  if (port > 65535) throw configError(field, `invalid ${what} ${show(text)}: port ${port} is out of range (0..65535)`);
  return { host, port };
}

/** sun_path: 108 bytes on Linux with the terminating NUL (also @onestack/nbd UNIX_PATH_BYTES_MAX). */
const UNIX_PATH_BYTES_MAX = 107;

/**
 * The NBD listen address: "HOST:PORT" or "unix:PATH" (a Unix socket; a relative PATH resolves
 * against baseDir, the config file's directory or, for --nbd, the working directory).
 */
export function parseNbdListen(text: string, field: string, baseDir: string): NbdListenAddress {
  if (typeof text !== 'string' || !text.startsWith('unix:')) return parseListen(text, field, 'HOST:PORT or unix:PATH');
  const raw = text.slice('unix:'.length);
  if (raw === '') throw configError(field, 'unix: needs a socket path', 'like unix:/run/onestack/nbd.sock');
  if (/[\0\r\n]/.test(raw)) throw configError(field, 'the socket path contains a control character');
  const socketPath = path.resolve(baseDir, raw);
  if (Buffer.byteLength(socketPath) > UNIX_PATH_BYTES_MAX) {
    throw configError(field, `socket path ${show(socketPath)} is longer than ${UNIX_PATH_BYTES_MAX} bytes (the limit of a Unix socket address)`, 'choose a shorter path, like unix:/run/onestack/nbd.sock');
  }
  return { socketPath };
}

/** A listen address "HOST:PORT" (port 0 picks a free port). */
export function parseListen(text: string, field: string, expected = 'HOST:PORT'): ListenAddress {
  if (typeof text !== 'string' || text.length === 0 || text.length > 300) {
    throw configError(field, `invalid listen address ${show(text)} (expected ${expected})`, 'like 127.0.0.1:10809');
  }
  return parseHostPort(text, field, 'listen address');
}

interface UriParts { scheme: string; authority: string; path: string; query: string }

function splitUri(uri: string, field: string): UriParts {
  const match = /^([a-z][a-z0-9+.-]*):\/\/([^/?#]*)([^?#]*)(?:\?([^#]*))?$/i.exec(uri);
  if (match === null) throw configError(field, `invalid URI ${show(maskUri(uri))}`);
  return { scheme: (match[1] ?? '').toLowerCase(), authority: match[2] ?? '', path: match[3] ?? '', query: match[4] ?? '' };
}

function parseQuery(query: string, field: string, allowed: readonly string[]): Map<string, string> {
  const result = new Map<string, string>();
  if (query === '') return result;
  for (const pair of query.split('&')) {
    const eq = pair.indexOf('=');
    const key = eq < 0 ? pair : pair.slice(0, eq);
    if (!allowed.includes(key)) {
      throw configError(field, `unsupported URI parameter ${show(key)}${allowed.length > 0 ? ` (supported: ${allowed.join(', ')})` : ''}`);
    }
    result.set(key, decode(eq < 0 ? '' : pair.slice(eq + 1), field, 'URI parameter'));
  }
  return result;
}

function parseNbd(uri: string, parts: UriParts, field: string, baseDir: string): ElementLocation {
  const tls = parts.scheme.startsWith('nbds');
  const exportName = decode(parts.path.replace(/^\//, ''), field, 'export name');
  if (parts.scheme.endsWith('+unix')) {
    if (parts.authority !== '') throw configError(field, `${parts.scheme} URIs have no host (write ${parts.scheme}:///EXPORT?socket=PATH)`);
    const socket = parseQuery(parts.query, field, ['socket']).get('socket');
    if (socket === undefined || socket === '') throw configError(field, `${parts.scheme} URI needs ?socket=PATH`);
    return { kind: 'nbd', uri, tls, socketPath: path.resolve(baseDir, socket), exportName };
  }
  parseQuery(parts.query, field, []);
  if (parts.authority === '') throw configError(field, `NBD URI ${show(uri)} has no host`, 'like nbd://127.0.0.1:10809/EXPORT');
  const { host, port } = parseHostPort(parts.authority, field, 'NBD host', NBD_DEFAULT_PORT);
  return { kind: 'nbd', uri, tls, host, port, exportName };
}

function parseIscsi(uri: string, parts: UriParts, field: string): ParsedElementUri {
  const at = parts.authority.lastIndexOf('@');
  // An unencoded '/', '?' or '#' in the secret ended the authority early: the rest would be
  // taken for host and path, and printed. Refuse, showing the URI masked up to its last '@'.
  if (at < 0 && uri.includes('@')) {
    throw configError(field, `invalid iSCSI URI ${show(maskUri(uri))}`, 'percent-encode "/", "?" and "#" in the user name and secret (%2F, %3F, %23)');
  }
  const userInfo = at < 0 ? undefined : parts.authority.slice(0, at);
  const hostPort = at < 0 ? parts.authority : parts.authority.slice(at + 1);
  let user: string | undefined;
  let secret: string | undefined;
  if (userInfo !== undefined) {
    // USER%SECRET@ as libiscsi writes it; USER:SECRET@ as URIs usually do. Either way the secret is masked.
    const pct = userInfo.search(/[%:]/);
    user = decode(pct < 0 ? userInfo : userInfo.slice(0, pct), field, 'iSCSI user');
    const rawSecret = pct < 0 ? undefined : userInfo.slice(pct + 1);
    // "***" is our own mask: a masked URI read back means "secret from secretFile".
    if (rawSecret !== undefined && rawSecret !== MASK && rawSecret !== '') secret = decode(rawSecret, field, 'iSCSI secret');
    if (user === '') throw configError(field, 'iSCSI URI has an empty user name');
  }
  const masked = maskUri(uri);
  if (hostPort === '') throw configError(field, `iSCSI URI ${show(masked)} has no host`);
  const { host, port } = parseHostPort(hostPort, field, 'iSCSI portal', ISCSI_DEFAULT_PORT);
  parseQuery(parts.query, field, []);
  const segments = parts.path.split('/');
  const targetIqn = decode(segments[1] ?? '', field, 'target name');
  const lunText = segments[2] ?? '';
  if (segments.length !== 3 || !/^(iqn|eui|naa)\./i.test(targetIqn)) {
    throw configError(field, `invalid iSCSI URI ${show(masked)} (expected iscsi://[USER@]HOST[:PORT]/TARGET-IQN/LUN)`, 'like iscsi://alice@127.0.0.1:3260/iqn.2026-11.test:disk/1');
  }
  if (!/^\d{1,5}$/.test(lunText) || Number(lunText) > 16383) throw configError(field, `invalid iSCSI LUN ${show(lunText)} (0..16383)`);
  const location: ElementLocation = { kind: 'iscsi', uri: masked, host, port, targetIqn, lun: Number(lunText), ...(user !== undefined ? { user } : {}) };
  return { location, maskedUri: masked, ...(user !== undefined ? { user } : {}), ...(secret !== undefined ? { secret } : {}) };
}

function parseFileUrl(uri: string, field: string, baseDir: string): string {
  if (!/^file:\/\//i.test(uri)) return path.resolve(baseDir, uri.slice('file:'.length));
  const rest = uri.slice('file://'.length);
  const slash = rest.indexOf('/');
  const host = slash < 0 ? rest : rest.slice(0, slash);
  if (host !== '' && host !== 'localhost') throw configError(field, `file URI ${show(uri)} names a remote host`, 'use an nbd:// or iscsi:// URI for remote disks');
  return decode(slash < 0 ? '/' : rest.slice(slash), field, 'file path');
}

/** Parses an element URI; relative local paths are resolved against baseDir. */
export function parseElementUri(uri: string, field: string, baseDir: string): ParsedElementUri {
  if (typeof uri !== 'string' || uri.length === 0) throw configError(field, `expected an element URI, got ${show(uri)}`);
  if (uri.length > 4096) throw configError(field, 'element URI is too long (at most 4096 characters)');
  if (/[\0\r\n]/.test(uri)) throw configError(field, 'element URI contains a control character');
  const scheme = /^([a-z][a-z0-9+.-]*):/i.exec(uri)?.[1]?.toLowerCase();
  if (scheme === undefined || scheme.length === 1 /* C:\ style drive letters are paths */) {
    return { location: { kind: 'local', path: path.resolve(baseDir, uri) }, maskedUri: uri };
  }
  if (scheme === 'file') {
    const local = parseFileUrl(uri, field, baseDir);
    if (local === 'file:' || local === '') throw configError(field, 'file URI has no path');
    return { location: { kind: 'local', path: local }, maskedUri: uri };
  }
  if (scheme === 'nbd' || scheme === 'nbds' || scheme === 'nbd+unix' || scheme === 'nbds+unix') {
    return { location: parseNbd(uri, splitUri(uri, field), field, baseDir), maskedUri: uri };
  }
  if (scheme === 'iscsi') return parseIscsi(uri, splitUri(uri, field), field);
  if (scheme === 'rbd') return { location: parseRbdUri(uri, field, baseDir), maskedUri: uri };
  throw configError(field, `unknown URI scheme "${scheme}:" in ${show(maskUri(uri))}`, 'use file:PATH, a path, /dev/..., nbd://HOST[:PORT]/EXPORT, nbds://..., nbd+unix:///EXPORT?socket=PATH, iscsi://HOST[:PORT]/IQN/LUN or rbd://POOL/IMAGE');
}

/** A default element name for a URI: the file name without extension, the export name, or target-lun. */
export function defaultElementName(location: ElementLocation): string {
  let base: string;
  if (location.kind === 'local') base = path.basename(location.path).replace(/\.[^.]*$/, '');
  else if (location.kind === 'nbd' && location.rbd !== undefined) base = location.rbd.image;
  else if (location.kind === 'nbd') base = location.exportName !== '' ? location.exportName : (location.host ?? 'nbd');
  else base = `${location.targetIqn.replace(/^.*:/, '')}-${location.lun}`;
  const cleaned = base.replace(/[^A-Za-z0-9._-]/g, '-').replace(/^[^A-Za-z0-9]+/, '').slice(0, 64);
  return cleaned === '' ? 'element' : cleaned;
}
