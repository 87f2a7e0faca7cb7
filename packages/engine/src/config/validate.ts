// Normalizers: raw (parsed YAML/JSON) values in, validated config types out. Each throws an
// EngineError('config') naming the field path; the loader adds FILE:LINE:COL.
import * as path from 'node:path';
import { DEFAULT_NBD_LIMITS, NBD_LIMIT_RANGES, parseCidr } from '@onestack/nbd';
import type { CacheTierConfig, ElementCache, ElementConfig, Layout, ListenAddress, NbdConfig, NbdLimitsConfig, PoolsConfig, QueueConfig, QueueOrder, RebuildConfig, TlsConfig, VolumeConfig } from './types.js';
import { configError, didYouMean, show } from './errors.js';
import { join, readBool, readEnum, readInt, readList, readMap, readName, readSizeBytes, readString } from './fields.js';
import { parseElementUri, parseListen, parseNbdListen } from './uri.js';
import { normalizeVolumeScrub } from './scrub-schedule.js';
import { normalizeWriteBehind } from './write-behind.js';

export const LAYOUTS: readonly Layout[] = ['linear', 'raid0', 'raid1', 'raid10', 'raid5', 'raid6'];
export const ORDERS: readonly QueueOrder[] = ['fifo', 'lifo', 'priority'];
export const CACHES: readonly ElementCache[] = ['writeback', 'none'];
export const MAX_ELEMENTS = 256;
export const MAX_VOLUMES = 64;
export const MAX_ELEMENTS_PER_VOLUME = 64;
export const DEFAULT_TIMEOUT_MS = 5000;
export const DEFAULT_CHUNK_KIB = 64;
export const DEFAULT_POOLS: PoolsConfig = { top: 1, middle: 1, bottom: 2, remote: 1 };
/** Remote threads each own a ring in the shared layout, so their number is bounded at start-up. */
export const REMOTE_THREADS_MAX = 8;
export const DIGESTS = ['none', 'crc32c'] as const;
export const DEFAULT_QUEUE: QueueConfig = { depth: 1024, slots: 256, slotKiB: 256 };
export const DEFAULT_REBUILD: RebuildConfig = { maxMiBPerSec: 200 };
/** Cache tier bounds: its block map takes 16 bytes per block, so at most 2^21 blocks (32 MiB of map). */
export const CACHE_TIER_BLOCKS_MAX = 1 << 21;
export const CACHE_TIER_SIZE_MIB_MAX = 2 * 1024 * 1024;
const CACHE_TIER_BLOCK_KIB_MIN = 4;
const CACHE_TIER_BLOCK_KIB_MAX = 1024;

/** Fewest elements each layout needs, and whether the count must be even. */
const LAYOUT_MIN: Readonly<Record<Layout, number>> = { linear: 1, raid0: 2, raid1: 2, raid10: 4, raid5: 3, raid6: 4 };

/** Checks an element count against a layout; returns an error message or undefined. */
export function layoutCountProblem(layout: Layout, count: number): string | undefined {
  const min = LAYOUT_MIN[layout];
  if (count < min) return `${layout} needs at least ${min} element${min === 1 ? '' : 's'}, got ${count}`;
  if (layout === 'raid10' && count % 2 !== 0) return `raid10 needs an even number of elements, got ${count}`;
  if (count > MAX_ELEMENTS_PER_VOLUME) return `at most ${MAX_ELEMENTS_PER_VOLUME} elements per volume, got ${count}`;
  return undefined;
}

const ELEMENT_KEYS = ['name', 'uri', 'cache', 'timeoutMs', 'secretFile', 'createSizeBytes', 'tls', 'connections', 'targetUser', 'targetSecretFile', 'digest', 'cacheTier'];

/** Options that only some element kinds take: nbd (tls, connections) and iscsi (mutual CHAP, digest). */
function remoteOptions(map: Readonly<Record<string, unknown>>, field: string, kind: ElementConfig['location']['kind'], tlsUri: boolean, baseDir: string): Partial<ElementConfig> {
  const only = (key: string, want: string, ok: boolean): void => {
    if (map[key] !== undefined && !ok) throw configError(join(field, key), `${key} is for ${want} elements only`);
  };
  only('tls', 'nbds://', kind === 'nbd' && tlsUri);
  only('connections', 'nbd://', kind === 'nbd');
  only('targetUser', 'iscsi://', kind === 'iscsi');
  only('targetSecretFile', 'iscsi://', kind === 'iscsi');
  only('digest', 'iscsi://', kind === 'iscsi');
  const out: { -readonly [K in keyof ElementConfig]?: ElementConfig[K] } = {};
  if (map.tls !== undefined) {
    const tls = readMap(map.tls, join(field, 'tls'), ['ca', 'cert', 'key']);
    const file = (key: string): string | undefined => (tls[key] === undefined ? undefined : path.resolve(baseDir, readString(tls[key], join(join(field, 'tls'), key))));
    const [ca, cert, key] = [file('ca'), file('cert'), file('key')];
    if ((cert === undefined) !== (key === undefined)) throw configError(join(field, 'tls'), 'a client certificate needs both cert and key');
    out.tls = { ...(ca !== undefined ? { ca } : {}), ...(cert !== undefined ? { cert } : {}), ...(key !== undefined ? { key } : {}) };
  }
  if (map.connections !== undefined) out.connections = readInt(map.connections, join(field, 'connections'), 1, 16);
  if (map.targetUser !== undefined) out.targetUser = readString(map.targetUser, join(field, 'targetUser'), 255);
  if (map.targetSecretFile !== undefined) out.targetSecretFile = path.resolve(baseDir, readString(map.targetSecretFile, join(field, 'targetSecretFile')));
  if ((out.targetUser === undefined) !== (out.targetSecretFile === undefined)) throw configError(join(field, 'targetUser'), 'mutual CHAP needs both targetUser and targetSecretFile');
  if (map.digest !== undefined) out.digest = readEnum(map.digest, join(field, 'digest'), 'digest', DIGESTS);
  return out;
}

/** elements[].cacheTier: { path, sizeMiB, blockKiB? } on a remote element; the block grows from 4 KiB until the map is bounded. */
function normalizeCacheTier(raw: unknown, field: string, kind: ElementConfig['location']['kind'], baseDir: string): CacheTierConfig {
  if (kind === 'local') throw configError(field, 'cacheTier is for nbd://, nbds:// and iscsi:// elements only', 'a local element is served from the page cache already');
  const map = readMap(raw, field, ['path', 'sizeMiB', 'blockKiB']);
  if (map.path === undefined) throw configError(join(field, 'path'), 'missing (the local cache file, like /var/cache/onestack/r0.cache)');
  if (map.sizeMiB === undefined) throw configError(join(field, 'sizeMiB'), 'missing (the cache file size in MiB, like 1024)');
  const file = path.resolve(baseDir, readString(map.path, join(field, 'path')));
  const sizeMiB = readInt(map.sizeMiB, join(field, 'sizeMiB'), 1, CACHE_TIER_SIZE_MIB_MAX);
  const fitKiB = Math.ceil((sizeMiB * 1024) / CACHE_TIER_BLOCKS_MAX);
  if (map.blockKiB === undefined) {
    let blockKiB = CACHE_TIER_BLOCK_KIB_MIN;
    while (blockKiB < fitKiB) blockKiB *= 2; // ≤ 10 doublings: sizeMiB is bounded
    return { path: file, sizeMiB, blockKiB };
  }
  const blockKiB = readInt(map.blockKiB, join(field, 'blockKiB'), CACHE_TIER_BLOCK_KIB_MIN, CACHE_TIER_BLOCK_KIB_MAX);
  if ((blockKiB & (blockKiB - 1)) !== 0) throw configError(join(field, 'blockKiB'), `${blockKiB} is not a power of two`, 'like 4, 16 or 64');
  if (blockKiB < fitKiB) {
    throw configError(join(field, 'blockKiB'), `${sizeMiB} MiB in ${blockKiB} KiB blocks is more than ${CACHE_TIER_BLOCKS_MAX} blocks`, `use blockKiB: ${2 ** Math.ceil(Math.log2(fitKiB))} or more, or leave it out`);
  }
  return { path: file, sizeMiB, blockKiB };
}

export function normalizeElement(raw: unknown, field: string, baseDir: string): ElementConfig {
  const map = readMap(raw, field, ELEMENT_KEYS);
  if (map.name === undefined) throw configError(join(field, 'name'), 'missing (every element needs a name)');
  if (map.uri === undefined) throw configError(join(field, 'uri'), 'missing (like file:./data/disk0.img or nbd://HOST:PORT/EXPORT)');
  const name = readName(map.name, join(field, 'name'));
  const parsed = parseElementUri(readString(map.uri, join(field, 'uri')), join(field, 'uri'), baseDir);
  const kind = parsed.location.kind;
  const cache = map.cache === undefined ? 'writeback' : readEnum(map.cache, join(field, 'cache'), 'cache mode', CACHES);
  const timeoutMs = map.timeoutMs === undefined ? DEFAULT_TIMEOUT_MS : readInt(map.timeoutMs, join(field, 'timeoutMs'), 1, 3_600_000);
  let secretFile: string | undefined;
  if (map.secretFile !== undefined) {
    if (kind !== 'iscsi') throw configError(join(field, 'secretFile'), 'secretFile is for iscsi:// elements only');
    secretFile = path.resolve(baseDir, readString(map.secretFile, join(field, 'secretFile')));
  }
  let createSizeBytes: number | undefined;
  if (map.createSizeBytes !== undefined) {
    if (kind !== 'local') throw configError(join(field, 'createSizeBytes'), 'createSizeBytes is for local elements only');
    createSizeBytes = readSizeBytes(map.createSizeBytes, join(field, 'createSizeBytes'), 1024 * 1024);
  }
  const element: ElementConfig = {
    name, uri: parsed.maskedUri, location: parsed.location, cache, timeoutMs,
    ...(secretFile !== undefined ? { secretFile } : {}),
    ...(createSizeBytes !== undefined ? { createSizeBytes } : {}),
    ...remoteOptions(map, field, kind, parsed.location.kind === 'nbd' && parsed.location.tls, baseDir),
    ...(map.cacheTier !== undefined ? { cacheTier: normalizeCacheTier(map.cacheTier, join(field, 'cacheTier'), kind, baseDir) } : {}),
  };
  // Non-enumerable: JSON.stringify, spreads and status output never carry the secret.
  if (parsed.secret !== undefined) Object.defineProperty(element, 'secret', { value: parsed.secret, enumerable: false });
  return element;
}

const VOLUME_KEYS = ['name', 'layout', 'elements', 'chunkKiB', 'order', 'boot', 'sizeBytes', 'spares', 'bitmapRegionKiB', 'integrity', 'scrub', 'writeBehind'];

/** volumes[].spares: known elements, not members of this volume, each once. */
function readSpares(raw: unknown, field: string, elementNames: ReadonlySet<string>, members: readonly string[]): string[] {
  const spares: string[] = [];
  readList(raw, field, MAX_ELEMENTS_PER_VOLUME).forEach((item, i) => {
    const itemField = `${field}[${i}]`;
    const name = readString(item, itemField, 64);
    if (!elementNames.has(name)) throw configError(itemField, `unknown element ${show(name)}`, 'list the spare under `elements:` first');
    if (members.includes(name)) throw configError(itemField, `element ${show(name)} is a member of this volume, not a spare`);
    if (spares.includes(name)) throw configError(itemField, `element ${show(name)} is listed twice`);
    spares.push(name);
  });
  return spares;
}

/** Why a layout cannot carry per-block checksums (undefined = it can): without a second copy or parity a bad block could be found but never repaired. */
export function integrityLayoutProblem(layout: Layout): string | undefined {
  if (layout === 'raid1' || layout === 'raid10' || layout === 'raid5' || layout === 'raid6') return undefined;
  return `integrity needs a layout that can repair a bad block (raid1, raid10, raid5 or raid6); this volume is ${layout}`;
}

export function normalizeVolume(raw: unknown, field: string, elementNames: ReadonlySet<string>): VolumeConfig {
  const map = readMap(raw, field, VOLUME_KEYS);
  if (map.name === undefined) throw configError(join(field, 'name'), 'missing (every volume needs a name)');
  const name = readName(map.name, join(field, 'name'));
  if (map.layout === undefined) throw configError(join(field, 'layout'), `missing (one of ${LAYOUTS.join(', ')})`);
  const layout = readEnum(map.layout, join(field, 'layout'), 'layout', LAYOUTS);
  if (map.elements === undefined) throw configError(join(field, 'elements'), 'missing (a list of element names)');
  const list = readList(map.elements, join(field, 'elements'), MAX_ELEMENTS_PER_VOLUME);
  const elements: string[] = [];
  list.forEach((item, i) => {
    const itemField = `${join(field, 'elements')}[${i}]`;
    const elementName = readString(item, itemField, 64);
    if (!elementNames.has(elementName)) {
      const guess = didYouMean(elementName, [...elementNames]);
      throw configError(itemField, `unknown element ${show(elementName)}${guess !== undefined ? ` (did you mean "${guess}"?)` : ''}`,
        'list the element under `elements:` first, then refer to it by name');
    }
    if (elements.includes(elementName)) throw configError(itemField, `element ${show(elementName)} is listed twice`);
    elements.push(elementName);
  });
  const problem = layoutCountProblem(layout, elements.length);
  if (problem !== undefined) throw configError(join(field, 'elements'), problem);
  const chunkKiB = map.chunkKiB === undefined ? DEFAULT_CHUNK_KIB : readInt(map.chunkKiB, join(field, 'chunkKiB'), 4, 16384);
  if ((chunkKiB & (chunkKiB - 1)) !== 0) throw configError(join(field, 'chunkKiB'), `${chunkKiB} is not a power of two`, 'like 64, 128 or 512');
  const order = map.order === undefined ? 'fifo' : readEnum(map.order, join(field, 'order'), 'order', ORDERS);
  const boot = map.boot === undefined ? false : readBool(map.boot, join(field, 'boot'));
  const sizeBytes = map.sizeBytes === undefined ? undefined : readSizeBytes(map.sizeBytes, join(field, 'sizeBytes'), 4096);
  const spares = map.spares === undefined ? [] : readSpares(map.spares, join(field, 'spares'), elementNames, elements);
  const mirror = layout === 'raid1' || layout === 'raid10';
  // Spares need a layout that can rebuild a leg from the others: mirrors and parity.
  const redundant = mirror || layout === 'raid5' || layout === 'raid6';
  if (spares.length > 0 && !redundant) throw configError(join(field, 'spares'), `spares are for raid1, raid10, raid5 and raid6 volumes (this one is ${layout})`);
  const bitmapRegionKiB = map.bitmapRegionKiB === undefined ? undefined : readInt(map.bitmapRegionKiB, join(field, 'bitmapRegionKiB'), 64, 1024 * 1024);
  if (bitmapRegionKiB !== undefined && ((bitmapRegionKiB & (bitmapRegionKiB - 1)) !== 0 || !mirror)) {
    throw configError(join(field, 'bitmapRegionKiB'), mirror ? `${bitmapRegionKiB} is not a power of two` : `the write-intent bitmap is for raid1 and raid10 volumes (this one is ${layout})`, 'like 64, 1024 or 4096');
  }
  const integrity = map.integrity === undefined ? false : readBool(map.integrity, join(field, 'integrity'));
  const integrityProblem = integrity ? integrityLayoutProblem(layout) : undefined;
  if (integrityProblem !== undefined) throw configError(join(field, 'integrity'), integrityProblem, 'use integrity: false, or a raid1, raid10, raid5 or raid6 layout');
  return { name, layout, elements, chunkKiB, order, boot, ...(sizeBytes !== undefined ? { sizeBytes } : {}), ...(spares.length > 0 ? { spares } : {}),
    ...(bitmapRegionKiB !== undefined ? { bitmapRegionKiB } : {}), ...(integrity ? { integrity } : {}),
    ...(map.scrub !== undefined ? { scrub: normalizeVolumeScrub(map.scrub, join(field, 'scrub'), layout) } : {}),
    ...(map.writeBehind !== undefined ? { writeBehind: normalizeWriteBehind(map.writeBehind, join(field, 'writeBehind'), layout, elements, integrity) } : {}) };
}

export function normalizePools(raw: unknown, field: string): PoolsConfig {
  if (raw === undefined) return DEFAULT_POOLS;
  const map = readMap(raw, field, ['top', 'middle', 'bottom', 'remote']);
  return {
    top: map.top === undefined ? DEFAULT_POOLS.top : readTopThreads(map.top, join(field, 'top')),
    middle: map.middle === undefined ? DEFAULT_POOLS.middle : readInt(map.middle, join(field, 'middle'), 0, 64),
    bottom: map.bottom === undefined ? DEFAULT_POOLS.bottom : readInt(map.bottom, join(field, 'bottom'), 1, 64),
    remote: map.remote === undefined ? DEFAULT_POOLS.remote : readInt(map.remote, join(field, 'remote'), 1, REMOTE_THREADS_MAX),
  };
}

// The top driver runs on the thread that owns the sockets: Node cannot hand a socket to a worker
// thread, and CALIBRATION.md measured worker-owned sockets 20-30% slower. So exactly one.
function readTopThreads(raw: unknown, field: string): number {
  const top = readInt(raw, field, 1, 64);
  if (top !== 1) {
    throw configError(field, `${top} top threads: the top driver runs on the one thread that owns the sockets`, 'use top: 1; add middle or bottom threads instead');
  }
  return top;
}

export function normalizeQueue(raw: unknown, field: string): QueueConfig {
  if (raw === undefined) return DEFAULT_QUEUE;
  const map = readMap(raw, field, ['depth', 'slots', 'slotKiB']);
  const depth = map.depth === undefined ? DEFAULT_QUEUE.depth : readInt(map.depth, join(field, 'depth'), 64, 65536);
  if ((depth & (depth - 1)) !== 0) throw configError(join(field, 'depth'), `${depth} is not a power of two`, 'like 256, 1024 or 4096');
  const slots = map.slots === undefined ? DEFAULT_QUEUE.slots : readInt(map.slots, join(field, 'slots'), 1, 65536);
  const slotKiB = map.slotKiB === undefined ? DEFAULT_QUEUE.slotKiB : readInt(map.slotKiB, join(field, 'slotKiB'), 4, 16384);
  if (slotKiB % 4 !== 0) throw configError(join(field, 'slotKiB'), `${slotKiB} is not a multiple of 4`);
  if (slots * slotKiB > 4 * 1024 * 1024) {
    throw configError(field, `slots × slotKiB is ${slots * slotKiB} KiB; at most 4 GiB of buffers`, 'lower queue.slots or queue.slotKiB');
  }
  return { depth, slots, slotKiB };
}

function normalizeTls(raw: unknown, field: string, baseDir: string): TlsConfig {
  const map = readMap(raw, field, ['cert', 'key', 'ca', 'require', 'verifyClient']);
  const file = (key: string): string | undefined =>
    map[key] === undefined ? undefined : path.resolve(baseDir, readString(map[key], join(field, key)));
  const cert = file('cert');
  const key = file('key');
  const ca = file('ca');
  if ((cert === undefined) !== (key === undefined)) {
    throw configError(join(field, cert === undefined ? 'cert' : 'key'), 'TLS needs both cert and key');
  }
  const require = map.require === undefined ? false : readBool(map.require, join(field, 'require'));
  if (require && cert === undefined) throw configError(join(field, 'require'), 'require: true needs cert and key');
  const verifyClient = map.verifyClient === undefined ? false : readBool(map.verifyClient, join(field, 'verifyClient'));
  if (verifyClient && (cert === undefined || ca === undefined)) {
    throw configError(join(field, 'verifyClient'), 'verifyClient: true needs cert, key and ca (the CA that signs client certificates)');
  }
  return { ...(cert !== undefined ? { cert } : {}), ...(key !== undefined ? { key } : {}), ...(ca !== undefined ? { ca } : {}), require, verifyClient };
}

function normalizeCidr(raw: unknown, field: string): string {
  const text = readString(raw, field, 64);
  // The server's own parser (@onestack/nbd allow.ts): what passes here is what it matches.
  if (parseCidr(text) === undefined) throw configError(field, `invalid address or CIDR ${show(text)}`, 'like 127.0.0.1/32, 10.0.0.0/8, ::1 or fd00::/8');
  return text;
}

/** nbd limits: each key optional, defaults from the NBD server, ranges checked here with the field path. */
function normalizeNbdLimits(map: Readonly<Record<string, unknown>>, field: string): NbdLimitsConfig {
  const int = (key: keyof NbdLimitsConfig): number => {
    const [min, max] = NBD_LIMIT_RANGES[key];
    return map[key] === undefined ? DEFAULT_NBD_LIMITS[key] : readInt(map[key], join(field, key), min, max);
  };
  const [minBytes, maxBytes] = NBD_LIMIT_RANGES.maxRequestBytes;
  const requestField = join(field, 'maxRequestBytes');
  const maxRequestBytes = map.maxRequestBytes === undefined ? DEFAULT_NBD_LIMITS.maxRequestBytes : readSizeBytes(map.maxRequestBytes, requestField, minBytes);
  if (maxRequestBytes > maxBytes || (maxRequestBytes & (maxRequestBytes - 1)) !== 0) {
    throw configError(requestField, `${maxRequestBytes} bytes is not a power of two from ${minBytes} to ${maxBytes}`, 'like 1MiB, 4MiB or 32MiB (the default)');
  }
  return {
    maxConnections: int('maxConnections'), maxRequestBytes, handshakeTimeoutMs: int('handshakeTimeoutMs'),
    inFlightMax: int('inFlightMax'), payloadTimeoutMs: int('payloadTimeoutMs'),
  };
}

const NBD_KEYS = ['listen', 'tls', 'allow', 'maxConnections', 'maxRequestBytes', 'handshakeTimeoutMs', 'inFlightMax', 'payloadTimeoutMs'];

export function normalizeNbd(raw: unknown, field: string, baseDir: string, defaultListen: ListenAddress): NbdConfig {
  if (raw === undefined) return { listen: defaultListen, allow: [], limits: { ...DEFAULT_NBD_LIMITS } };
  const map = readMap(raw, field, NBD_KEYS);
  const listenField = join(field, 'listen');
  // HOST:PORT, or unix:PATH relative to the config file like every other path in it.
  const listen = map.listen === undefined ? defaultListen : parseNbdListen(readString(map.listen, listenField), listenField, baseDir);
  const tls = map.tls === undefined ? undefined : normalizeTls(map.tls, join(field, 'tls'), baseDir);
  const allow = map.allow === undefined ? [] : readList(map.allow, join(field, 'allow'), 256).map((item, i) => normalizeCidr(item, `${join(field, 'allow')}[${i}]`));
  return { listen, allow, limits: normalizeNbdLimits(map, field), ...(tls !== undefined ? { tls } : {}) };
}

export function normalizeApi(raw: unknown, field: string, defaultListen: ListenAddress): { listen: ListenAddress } {
  if (raw === undefined) return { listen: defaultListen };
  const map = readMap(raw, field, ['listen']);
  return { listen: map.listen === undefined ? defaultListen : parseListen(readString(map.listen, join(field, 'listen')), join(field, 'listen')) };
}

export function normalizeRebuild(raw: unknown, field: string): RebuildConfig {
  if (raw === undefined) return DEFAULT_REBUILD;
  const map = readMap(raw, field, ['maxMiBPerSec']);
  return { maxMiBPerSec: map.maxMiBPerSec === undefined ? DEFAULT_REBUILD.maxMiBPerSec : readInt(map.maxMiBPerSec, join(field, 'maxMiBPerSec'), 0, 1_000_000) };
}

export function normalizeCache(raw: unknown, field: string): { readMiB: number } {
  if (raw === undefined) return { readMiB: 64 };
  const map = readMap(raw, field, ['readMiB']);
  return { readMiB: map.readMiB === undefined ? 64 : readInt(map.readMiB, join(field, 'readMiB'), 0, 1024 * 1024) };
}
