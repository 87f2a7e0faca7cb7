// rbd://POOL/IMAGE?conf=PATH&id=USER[&keyring=PATH][&path=librbd|gateway]: a Ceph RBD image as an
// element. `location.rbd` says where it comes from; remote/rbd-access.ts reaches it through
// librbd in this process or, where librbd cannot be loaded (or path=gateway), as an NBD element
// over a Unix socket in the data dir served by a supervised qemu-nbd (remote/rbd-gateway.ts).
import { createHash } from 'node:crypto';
import * as os from 'node:os';
import * as path from 'node:path';
import type { ElementConfig, ElementLocation, EngineConfig, RbdTarget } from './types.js';
import { configError, show } from './errors.js';

export const RBD_DEFAULT_CONF = '/etc/ceph/ceph.conf';
export const RBD_DEFAULT_ID = 'admin';
const RBD_PARAMS = ['conf', 'id', 'keyring', 'path'] as const;
const RBD_PATHS = ['librbd', 'gateway'] as const;
/** Pool and image names we accept: what qemu's rbd: filename needs no escaping for. */
const NAME_RE = /^[A-Za-z0-9_.+-]{1,128}$/;
const ID_RE = /^[A-Za-z0-9_.-]{1,64}$/;
const UNIX_PATH_BYTES_MAX = 107;
const EXAMPLE = 'like rbd://rbd/img?conf=/etc/ceph/ceph.conf&id=admin';

function decode(text: string, field: string, what: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    throw configError(field, `bad percent-encoding in the ${what}`);
  }
}

function parseParams(query: string, field: string): Map<string, string> {
  const params = new Map<string, string>();
  if (query === '') return params;
  for (const pair of query.split('&').slice(0, 16)) {
    const eq = pair.indexOf('=');
    const key = eq < 0 ? pair : pair.slice(0, eq);
    if (key === 'key' || key === 'secret') throw configError(field, 'rbd URIs take no key or secret', 'put the key in a keyring file and give keyring=PATH');
    if (!(RBD_PARAMS as readonly string[]).includes(key)) throw configError(field, `unsupported rbd URI parameter ${show(key)} (supported: ${RBD_PARAMS.join(', ')})`);
    if (params.has(key)) throw configError(field, `rbd URI parameter ${show(key)} given twice`);
    const value = decode(eq < 0 ? '' : pair.slice(eq + 1), field, `${key} parameter`);
    if (value === '') throw configError(field, `rbd URI parameter ${show(key)} is empty`, EXAMPLE);
    params.set(key, value);
  }
  return params;
}

/** The socket, pid file and log of an image's gateway: in RUNDIR/rbd/, named after pool, image and a hash. */
export function rbdFiles(target: RbdTarget): { dir: string; socketPath: string; pidPath: string; logPath: string } {
  const hash = createHash('sha256').update(`${target.conf}\0${target.pool}\0${target.image}`).digest('hex').slice(0, 8);
  const dir = path.join(target.runDir, 'rbd');
  const base = `${target.pool.slice(0, 16)}-${target.image.slice(0, 24)}-${hash}`;
  let socketPath = path.join(dir, `${base}.sock`);
  if (Buffer.byteLength(socketPath) > UNIX_PATH_BYTES_MAX) {
    // A deep data dir: the socket (only the socket) goes to a short per-data-dir directory.
    const dirHash = createHash('sha256').update(target.runDir).digest('hex').slice(0, 12);
    socketPath = path.join(os.tmpdir(), `onestack-rbd-${dirHash}`, `${hash}.sock`);
  }
  return { dir, socketPath, pidPath: path.join(dir, `${base}.pid`), logPath: path.join(dir, `${base}.log`) };
}

/** Parses rbd://POOL/IMAGE?...; paths resolve against baseDir, which is also the gateway's run dir until placed. */
export function parseRbdUri(uri: string, field: string, baseDir: string): ElementLocation {
  const match = /^rbd:\/\/([^/?#]*)(\/[^?#]*)?(?:\?([^#]*))?$/i.exec(uri);
  // Shown without its query: a key given there by mistake must not reach the error.
  if (match === null) throw configError(field, `invalid rbd URI ${show(uri.replace(/[?#].*$/s, '?…'))}`, EXAMPLE);
  const authority = match[1] ?? '';
  if (authority.includes('@') || authority.includes(':')) {
    throw configError(field, 'rbd URIs name the pool where the host would be, with no user, secret or port (rbd://POOL/IMAGE)', 'give the user as ?id=USER and the key in a keyring file (?keyring=PATH)');
  }
  const pool = decode(authority, field, 'pool name');
  const image = decode((match[2] ?? '').replace(/^\//, ''), field, 'image name');
  if (pool === '') throw configError(field, `rbd URI ${show(uri)} has no pool`, EXAMPLE);
  if (image === '') throw configError(field, `rbd URI ${show(uri)} has no image`, EXAMPLE);
  if (!NAME_RE.test(pool)) throw configError(field, `invalid rbd pool name ${show(pool)} (letters, digits, _ . + - only)`);
  if (!NAME_RE.test(image)) {
    throw configError(field, `invalid rbd image name ${show(image)} (letters, digits, _ . + - only)`, image.includes('/') ? 'namespaces (POOL/NS/IMAGE) and snapshots are not supported' : undefined);
  }
  const params = parseParams(match[3] ?? '', field);
  const id = params.get('id') ?? RBD_DEFAULT_ID;
  if (id.startsWith('client.')) throw configError(field, `rbd id ${show(id)}: give the user without "client."`, `like id=${id.slice('client.'.length)}`);
  if (!ID_RE.test(id)) throw configError(field, `invalid rbd id ${show(id)} (letters, digits, _ . - only)`);
  const conf = path.resolve(baseDir, params.get('conf') ?? RBD_DEFAULT_CONF);
  const keyringText = params.get('keyring');
  const keyring = keyringText === undefined ? undefined : path.resolve(baseDir, keyringText);
  const pathText = params.get('path');
  if (pathText !== undefined && !(RBD_PATHS as readonly string[]).includes(pathText)) throw configError(field, `rbd path ${show(pathText)} is not one of ${RBD_PATHS.join(', ')}`, 'leave it out to use librbd where it loads and the qemu-nbd gateway elsewhere');
  const via = pathText === undefined ? {} : { path: pathText as RbdTarget['path'] & string };
  const target: RbdTarget = { pool, image, conf, id, ...(keyring !== undefined ? { keyring } : {}), ...via, runDir: baseDir };
  return { kind: 'nbd', uri, tls: false, socketPath: rbdFiles(target).socketPath, exportName: '', rbd: target };
}

/** The element's gateway files under runDir (the data dir); other elements as they are. */
function placed(element: ElementConfig, runDir: string): ElementConfig {
  const loc = element.location;
  if (loc.kind !== 'nbd' || loc.rbd === undefined || loc.rbd.runDir === runDir) return element;
  const rbd: RbdTarget = { ...loc.rbd, runDir };
  return { ...element, location: { ...loc, rbd, socketPath: rbdFiles(rbd).socketPath } };
}

/**
 * Puts every rbd element's gateway in the config's data dir (URIs of the config file were parsed
 * against its own directory) and refuses one image under two element names: two gateways, or one
 * image as two mirror legs, would both write it.
 */
export function withRbdRunDir<T extends Pick<EngineConfig, 'dataDir' | 'elements'>>(config: T, field = 'elements'): T {
  if (!config.elements.some((e) => e.location.kind === 'nbd' && e.location.rbd !== undefined)) return config;
  const seen = new Map<string, string>();
  const elements = config.elements.map((e, i) => {
    const out = placed(e, config.dataDir);
    const loc = out.location;
    if (loc.kind !== 'nbd' || loc.rbd === undefined) return out;
    const key = `${loc.rbd.conf}\0${loc.rbd.pool}/${loc.rbd.image}`;
    const other = seen.get(key);
    if (other !== undefined) throw configError(`${field}[${i}].uri`, `rbd image ${loc.rbd.pool}/${loc.rbd.image} is already element ${show(other)}`, 'each element needs its own image');
    seen.set(key, e.name);
    return out;
  });
  return { ...config, elements };
}
