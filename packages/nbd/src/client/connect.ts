// Transports: opens a TCP or unix socket, runs option haggling on it (TLS included) within one
// deadline, and hands back the socket ready for transmission. Also NBD_OPT_LIST for discovery.

import type { Socket } from 'node:net';
import type { ByteAccumulator } from '../codec/accumulator.js';
import { encodeString } from '../codec/bytes.js';
import { STRING_MAX_BYTES } from '../constants.js';
import { NbdProtocolError } from '../errors.js';
import { RemoteError, remoteError } from './errors.js';
import { type Negotiated, chooseExport, explainHandshakeFailure, greet, listExports } from './handshake.js';
import type { NbdClientOptions, NbdExportListing } from './types.js';
import { Wire, describeTarget } from './wire.js';

export interface OpenedConnection {
  readonly socket: Socket;
  /** Bytes that arrived after the handshake's last reply (normally none). */
  readonly acc: ByteAccumulator;
  readonly negotiated: Negotiated;
}

/** Meta contexts one client may ask for; real uses need one or two. */
export const META_CONTEXTS_MAX = 32;

/** A size poll more often than this would be a side connection storm. */
export const WATCH_SIZE_MIN_MS = 100;

/** More connections than this gain nothing and only load the server. */
export const CONNECTIONS_MAX = 64;

type TransportOptions = Omit<NbdClientOptions, 'exportName'>;

/** Rejects impossible options up front with EINVAL, naming the field. */
export function checkOptions(opts: TransportOptions, where: string): void {
  const bad = (why: string): never => { throw remoteError('EINVAL', `bad NBD client options: ${why}`, where); };
  const tcp = opts.host !== undefined || opts.port !== undefined;
  if (tcp === (opts.socketPath !== undefined)) bad('give exactly one of host/port or socketPath');
  if (tcp && (opts.host === undefined || opts.host === '')) bad('host is missing');
  if (opts.port !== undefined && !(Number.isInteger(opts.port) && opts.port > 0 && opts.port < 65536)) bad(`port ${opts.port} out of range`);
  if (!(Number.isFinite(opts.timeoutMs) && opts.timeoutMs > 0)) bad('timeoutMs must be a positive number');
  const watch = (opts as Partial<NbdClientOptions>).watchSizeMs;
  if (watch !== undefined && !(Number.isFinite(watch) && watch >= WATCH_SIZE_MIN_MS)) bad(`watchSizeMs must be at least ${WATCH_SIZE_MIN_MS}`);
  const connections = opts.connections ?? 1;
  if (!(Number.isInteger(connections) && connections >= 1 && connections <= CONNECTIONS_MAX)) bad(`connections must be 1..${CONNECTIONS_MAX}`);
  if (opts.tls !== undefined && (opts.tls.cert === undefined) !== (opts.tls.key === undefined)) bad('tls.cert and tls.key go together');
  const contexts = opts.metaContexts ?? [];
  if (contexts.length > META_CONTEXTS_MAX) bad(`at most ${META_CONTEXTS_MAX} metaContexts`);
  for (const name of contexts) {
    if (!(typeof name === 'string' && name !== '' && !name.includes('\0') && encodeString(name).length <= STRING_MAX_BYTES)) {
      bad(`meta context ${JSON.stringify(name)} is not a name of 1..${STRING_MAX_BYTES} bytes`);
    }
  }
  if (new Set(contexts).size !== contexts.length) bad('metaContexts lists a name twice');
}

/** Anything thrown while connecting, as a RemoteError. */
export function asRemoteError(err: unknown, where: string): RemoteError {
  if (err instanceof RemoteError) return err;
  if (err instanceof NbdProtocolError) return remoteError('EPROTO', `protocol error: ${err.message}`, where);
  return remoteError('EIO', `unexpected failure: ${err instanceof Error ? err.message : String(err)}`, where);
}

/** Connects and haggles until transmission; everything is bounded by opts.timeoutMs. */
export async function openConnection(opts: NbdClientOptions, where: string, signal?: AbortSignal): Promise<OpenedConnection> {
  const wire = Wire.open(opts, where, signal);
  try {
    await wire.waitConnected();
    const { noZeroes } = await greet(wire, opts.tls, opts.host);
    const negotiated = await chooseExport(wire, opts.exportName, noZeroes, {
      metaContexts: opts.metaContexts ?? [], extendedHeaders: opts.extendedHeaders ?? true,
    });
    return { ...wire.detach(), negotiated };
  } catch (err) {
    const failure = explainHandshakeFailure(asRemoteError(err, where), wire, opts.tls);
    wire.fail(failure);
    throw failure;
  }
}

/** NBD_OPT_LIST: the exports a server offers (for `onestack discover`). */
export async function listNbdExports(opts: TransportOptions): Promise<{ name: string; description?: string }[]> {
  const where = describeTarget(opts);
  checkOptions(opts, where);
  const wire = Wire.open(opts, where);
  try {
    await wire.waitConnected();
    await greet(wire, opts.tls, opts.host);
    const exports: NbdExportListing[] = await listExports(wire);
    // NBD_OPT_ABORT was sent; the server may answer or just close. Either way, stop waiting soon.
    await wire.end(Math.min(opts.timeoutMs, 1000));
    return exports;
  } catch (err) {
    const failure = explainHandshakeFailure(asRemoteError(err, where), wire, opts.tls);
    wire.fail(failure);
    throw failure;
  }
}
