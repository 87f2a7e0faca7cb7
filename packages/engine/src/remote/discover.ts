// `onestack discover URI`: what a remote offers before it becomes an element. NBD servers list
// their exports (NBD_OPT_LIST); iSCSI portals their targets (a SendTargets discovery session).
import * as fs from 'node:fs/promises';
import { listNbdExports } from '@onestack/nbd';
import { discoverIscsiTargets } from '@onestack/iscsi';
import { EngineError } from '../api-types.js';
import { ISCSI_DEFAULT_PORT, maskUri, NBD_DEFAULT_PORT } from '../config/uri.js';

export interface DiscoverOptions {
  readonly timeoutMs?: number;
  /** iSCSI CHAP secret (the user comes from the URI), or a file holding it. */
  readonly secret?: string;
  readonly secretFile?: string;
  /** nbds: PEM files. */
  readonly tls?: { readonly ca?: string; readonly cert?: string; readonly key?: string };
}

export interface DiscoveredItem {
  /** An element URI for `element add` (no secret in it). */
  readonly uri: string;
  readonly name: string;
  readonly description?: string;
}

export interface DiscoverResult {
  readonly kind: 'nbd' | 'iscsi';
  readonly where: string;
  readonly items: readonly DiscoveredItem[];
}

const DEFAULT_TIMEOUT_MS = 5000;

function invalid(uri: string, why: string): EngineError {
  return new EngineError('invalid', `cannot discover ${maskUri(uri)}: ${why}`, 'uri', 'like nbd://HOST[:PORT], nbds://HOST, nbd+unix:///?socket=PATH or iscsi://[USER@]HOST[:PORT]');
}

async function pem(file: string | undefined): Promise<string | undefined> {
  if (file === undefined) return undefined;
  try {
    return await fs.readFile(file, 'utf8');
  } catch (err) {
    throw new EngineError('invalid', `cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`, file);
  }
}

/** USER[%SECRET]@ (libiscsi style; also USER:SECRET@) from the raw URI: URL() would mangle a '%'. */
function userInfo(uri: string): { user: string; secret?: string } {
  const raw = /^[a-z]+:\/\/([^@/]*)@/i.exec(uri)?.[1];
  if (raw === undefined) return { user: '' };
  const cut = raw.search(/[%:]/);
  const decode = (text: string): string => {
    try {
      return decodeURIComponent(text);
    } catch {
      return text;
    }
  };
  if (cut < 0) return { user: decode(raw) };
  const secret = raw.slice(cut + 1);
  return { user: decode(raw.slice(0, cut)), ...(secret !== '' && secret !== '***' ? { secret } : {}) };
}

function hostOf(url: URL): string {
  return url.hostname.replace(/^\[(.*)\]$/, '$1');
}

async function discoverNbd(url: URL, uri: string, opts: DiscoverOptions, timeoutMs: number): Promise<DiscoverResult> {
  const tlsWanted = url.protocol.startsWith('nbds');
  const unix = url.protocol.endsWith('+unix:');
  const socketPath = unix ? url.searchParams.get('socket') ?? '' : undefined;
  if (unix && socketPath === '') throw invalid(uri, 'an nbd+unix URI needs ?socket=PATH');
  if (!unix && url.hostname === '') throw invalid(uri, 'no host');
  const port = url.port === '' ? NBD_DEFAULT_PORT : Number(url.port);
  const [ca, cert, key] = await Promise.all([pem(opts.tls?.ca), pem(opts.tls?.cert), pem(opts.tls?.key)]);
  const tls = tlsWanted ? { ...(ca !== undefined ? { ca } : {}), ...(cert !== undefined ? { cert } : {}), ...(key !== undefined ? { key } : {}) } : undefined;
  const exports = await listNbdExports({ timeoutMs, ...(unix ? { socketPath: socketPath! } : { host: hostOf(url), port }), ...(tls !== undefined ? { tls } : {}) });
  const scheme = url.protocol.slice(0, -1);
  const base = unix ? `${scheme}://` : `${scheme}://${url.host}`;
  return {
    kind: 'nbd', where: maskUri(uri),
    items: exports.map((e) => ({
      name: e.name, ...(e.description !== undefined ? { description: e.description } : {}),
      uri: unix ? `${base}/${encodeURIComponent(e.name)}?socket=${encodeURIComponent(socketPath!)}` : `${base}/${encodeURIComponent(e.name)}`,
    })),
  };
}

async function discoverIscsi(url: URL, uri: string, opts: DiscoverOptions, timeoutMs: number): Promise<DiscoverResult> {
  if (url.hostname === '') throw invalid(uri, 'no host');
  const { user, secret: inline } = userInfo(uri);
  const fromFile = opts.secretFile !== undefined ? (await pem(opts.secretFile))!.split(/\r?\n/)[0]!.trim() : undefined;
  if (fromFile === '') throw invalid(uri, `the secret file ${opts.secretFile} starts with an empty line`);
  const secret = opts.secret ?? inline ?? fromFile;
  if (user !== '' && secret === undefined) throw invalid(uri, `CHAP user ${user} needs a secret (--secret-file FILE)`);
  const port = url.port === '' ? ISCSI_DEFAULT_PORT : Number(url.port);
  const targets = await discoverIscsiTargets({ host: hostOf(url), port, timeoutMs, ...(user !== '' && secret !== undefined ? { chap: { user, secret } } : {}) });
  const auth = user !== '' ? `${encodeURIComponent(user)}@` : '';
  return {
    kind: 'iscsi', where: maskUri(uri),
    // LUN 1 is tgt's first data LUN (LUN 0 is its controller); SendTargets does not list LUNs,
    // so other targets may need the URI's LUN changed (REPORT LUNS would tell: not done yet).
    items: targets.map((t) => ({ name: t.targetIqn, description: t.portals.join(', '), uri: `iscsi://${auth}${url.host}/${t.targetIqn}/1` })),
  };
}

/** Lists what an NBD server or iSCSI portal offers. Errors are EngineError with a clear line. */
export async function discover(uri: string, opts: DiscoverOptions = {}): Promise<DiscoverResult> {
  let url: URL;
  try {
    url = new URL(uri);
  } catch {
    throw invalid(uri, 'not a URI');
  }
  const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  try {
    if (/^nbds?(\+unix)?:$/.test(url.protocol)) return await discoverNbd(url, uri, opts, timeoutMs);
    if (url.protocol === 'iscsi:') return await discoverIscsi(url, uri, opts, timeoutMs);
  } catch (err) {
    if (err instanceof EngineError) throw err;
    throw new EngineError('io', `discover ${maskUri(uri)}: ${(err as Error).message}`, maskUri(uri));
  }
  throw invalid(uri, `unknown scheme ${url.protocol}`);
}
