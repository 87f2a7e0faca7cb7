// Loads onestack.yaml (YAML or JSON) or an inline object into an EngineConfig. Errors name the
// field path and, for files, FILE:LINE:COL (parseDocument + LineCounter keep the positions).
import * as fs from 'node:fs';
import * as path from 'node:path';
import { isMap, isScalar, isSeq, LineCounter, parseDocument, type Document, type Node } from 'yaml';
import { EngineError } from '../api-types.js';
import type { ElementConfig, EngineConfig, ListenAddress, VolumeConfig } from './types.js';
import { configError, errorField } from './errors.js';
import { readList, readMap, readString } from './fields.js';
import { parseListen, parseNbdListen } from './uri.js';
import { withRbdRunDir } from './rbd.js';
import { checkVolumeScrubs, normalizeScrubDefault } from './scrub-schedule.js';
import {
  MAX_ELEMENTS, MAX_VOLUMES, normalizeApi, normalizeCache, normalizeElement, normalizeNbd, normalizePools, normalizeQueue, normalizeRebuild, normalizeVolume,
  DEFAULT_CHUNK_KIB, DEFAULT_POOLS, DEFAULT_QUEUE, DEFAULT_TIMEOUT_MS,
} from './validate.js';

export type ConfigSource = { path: string } | { object: unknown; baseDir?: string } | { embeddedDefault: true };
export interface ConfigOverrides { dataDir?: string; nbdListen?: string; apiListen?: string }

export const DEFAULT_NBD_LISTEN: ListenAddress = { host: '127.0.0.1', port: 10809 };
export const DEFAULT_API_LISTEN: ListenAddress = { host: '127.0.0.1', port: 9090 };
export const EMBEDDED_DISK_BYTES = 1024 * 1024 * 1024;
const TOP_KEYS = ['dataDir', 'nbd', 'api', 'pools', 'queue', 'cache', 'rebuild', 'scrub', 'elements', 'volumes'];
const MAX_CONFIG_BYTES = 4 * 1024 * 1024;

/** The data dir used when neither a flag nor the config names one: $ONESTACK_DATA_DIR, else BASE/data. */
export function defaultDataDir(baseDir: string): string {
  const env = process.env.ONESTACK_DATA_DIR;
  return env !== undefined && env !== '' ? path.resolve(env) : path.resolve(baseDir, 'data');
}

/** The embedded default of SPEC.md: volume `default`, raid1 over two sparse 1 GiB images. */
export function embeddedDefaultConfig(dataDir: string): EngineConfig {
  const dir = path.resolve(dataDir);
  const disk = (name: string, file: string): ElementConfig => {
    const diskPath = path.join(dir, file);
    return { name, uri: `file:${diskPath}`, location: { kind: 'local', path: diskPath }, cache: 'writeback', timeoutMs: DEFAULT_TIMEOUT_MS, createSizeBytes: EMBEDDED_DISK_BYTES };
  };
  const volume: VolumeConfig = { name: 'default', layout: 'raid1', elements: ['d0', 'd1'], chunkKiB: DEFAULT_CHUNK_KIB, order: 'fifo', boot: true };
  return {
    dataDir: dir,
    nbd: { listen: DEFAULT_NBD_LISTEN, allow: [] },
    api: { listen: DEFAULT_API_LISTEN },
    pools: DEFAULT_POOLS,
    queue: DEFAULT_QUEUE,
    cache: { readMiB: 64 },
    elements: [disk('d0', 'disk0.img'), disk('d1', 'disk1.img')],
    volumes: [volume],
  };
}

/** Validates a whole raw config (already parsed) into an EngineConfig. */
export function normalizeConfig(raw: unknown, baseDir: string): Omit<EngineConfig, 'sourcePath'> {
  const map = readMap(raw ?? {}, '', TOP_KEYS);
  const dataDir = map.dataDir === undefined ? defaultDataDir(baseDir) : path.resolve(baseDir, readString(map.dataDir, 'dataDir'));
  const rawElements = map.elements === undefined ? [] : readList(map.elements, 'elements', MAX_ELEMENTS);
  const elements = rawElements.map((item, i) => normalizeElement(item, `elements[${i}]`, baseDir));
  checkElementsUnique(elements);
  const names = new Set(elements.map((e) => e.name));
  const rawVolumes = map.volumes === undefined ? [] : readList(map.volumes, 'volumes', MAX_VOLUMES);
  const volumes = rawVolumes.map((item, i) => normalizeVolume(item, `volumes[${i}]`, names));
  checkVolumesConsistent(volumes);
  const scrub = normalizeScrubDefault(map.scrub, 'scrub');
  checkVolumeScrubs(volumes, scrub);
  return {
    dataDir,
    nbd: normalizeNbd(map.nbd, 'nbd', baseDir, DEFAULT_NBD_LISTEN),
    api: normalizeApi(map.api, 'api', DEFAULT_API_LISTEN),
    pools: normalizePools(map.pools, 'pools'),
    queue: normalizeQueue(map.queue, 'queue'),
    cache: normalizeCache(map.cache, 'cache'),
    rebuild: normalizeRebuild(map.rebuild, 'rebuild'),
    ...(scrub !== undefined ? { scrub } : {}),
    elements,
    volumes,
  };
}

function checkElementsUnique(elements: readonly ElementConfig[]): void {
  const byName = new Map<string, number>();
  const byPath = new Map<string, number>();
  elements.forEach((element, i) => {
    const first = byName.get(element.name);
    if (first !== undefined) throw configError(`elements[${i}].name`, `duplicate element name "${element.name}" (also elements[${first}])`);
    byName.set(element.name, i);
    if (element.cacheTier !== undefined) {
      // A cache file shared by two elements (or over an element's image) would serve one's bytes as the other's.
      const other = byPath.get(element.cacheTier.path);
      if (other !== undefined) throw configError(`elements[${i}].cacheTier.path`, `same file as elements[${other}] (${element.cacheTier.path})`, 'each cache tier needs its own file');
      byPath.set(element.cacheTier.path, i);
    }
    if (element.location.kind !== 'local') return;
    const other = byPath.get(element.location.path);
    if (other !== undefined) throw configError(`elements[${i}].uri`, `same file as elements[${other}] (${element.location.path})`, 'each element needs its own file or device');
    byPath.set(element.location.path, i);
  });
}

function checkVolumesConsistent(volumes: readonly VolumeConfig[]): void {
  const byName = new Map<string, number>();
  const owner = new Map<string, string>();
  let boot: number | undefined;
  volumes.forEach((volume, i) => {
    const first = byName.get(volume.name);
    if (first !== undefined) throw configError(`volumes[${i}].name`, `duplicate volume name "${volume.name}" (also volumes[${first}])`);
    byName.set(volume.name, i);
    volume.elements.forEach((name, k) => {
      const other = owner.get(name);
      if (other !== undefined) throw configError(`volumes[${i}].elements[${k}]`, `element "${name}" is already used by volume "${other}"`, 'an element belongs to one volume at most');
      owner.set(name, volume.name);
    });
    if (!volume.boot) return;
    if (boot !== undefined) throw configError(`volumes[${i}].boot`, `only one volume may be the boot volume (also volumes[${boot}])`);
    boot = i;
  });
  // A spare may serve several volumes, but must not be a member of one.
  volumes.forEach((volume, i) => (volume.spares ?? []).forEach((name, k) => {
    const other = owner.get(name);
    if (other !== undefined) throw configError(`volumes[${i}].spares[${k}]`, `element "${name}" is a member of volume "${other}", not a spare`);
  }));
}

/** "volumes[0].elements[1]" → ['volumes', 0, 'elements', 1]. */
function fieldSegments(field: string): (string | number)[] {
  const segments: (string | number)[] = [];
  for (const match of field.matchAll(/([^.[\]]+)|\[(\d+)\]/g)) {
    if (match[2] !== undefined) segments.push(Number(match[2]));
    else if (match[1] !== undefined) segments.push(match[1]);
  }
  return segments;
}

/** Source offset of a field: its value (or its key for unknown keys/collections); else the nearest parent. */
function locate(doc: Document, field: string, preferKey: boolean): number {
  let node: unknown = doc.contents;
  let offset = (doc.contents as Node | null)?.range?.[0] ?? 0;
  for (const segment of fieldSegments(field).slice(0, 64)) {
    if (typeof segment === 'number' && isSeq(node)) {
      node = node.items[segment];
      offset = (node as Node | undefined)?.range?.[0] ?? offset;
      continue;
    }
    if (!isMap(node)) break;
    const pair = node.items.find((p) => isScalar(p.key) && String(p.key.value) === String(segment));
    if (pair === undefined) break;
    const keyOffset = (pair.key as Node).range?.[0] ?? offset;
    const value = pair.value as Node | null;
    const useKey = value === null || value.range === undefined || preferKey || !isScalar(value);
    offset = useKey ? keyOffset : (value.range?.[0] ?? keyOffset);
    node = value;
  }
  return offset;
}

function relocated(error: EngineError, file: string, doc: Document, lines: LineCounter): EngineError {
  const field = errorField(error);
  const offset = locate(doc, field, /: unknown key "/.test(error.message));
  const { line, col } = lines.linePos(offset);
  return new EngineError('config', error.message, `${file}:${line}:${col}${field === '' ? '' : ` ${field}`}`, error.hint);
}

function parseFile(file: string): { doc: Document; lines: LineCounter; raw: unknown } {
  let text: string;
  try {
    const stat = fs.statSync(file);
    if (!stat.isFile()) throw new Error('not a regular file');
    if (stat.size > MAX_CONFIG_BYTES) throw new Error(`too large (${stat.size} bytes; at most ${MAX_CONFIG_BYTES})`);
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    const reason = (err as NodeJS.ErrnoException).code === 'ENOENT' ? 'file not found' : (err as Error).message;
    throw new EngineError('config', `cannot read config file: ${reason}`, file, 'check the --config path');
  }
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines, prettyErrors: false, uniqueKeys: true });
  const first = doc.errors[0];
  if (first !== undefined) {
    const { line, col } = lines.linePos(first.pos[0]);
    const message = first.message.split('\n')[0] ?? 'syntax error';
    throw new EngineError('config', `invalid YAML/JSON: ${message}`, `${file}:${line}:${col}`, 'fix the syntax; JSON is accepted too');
  }
  try {
    return { doc, lines, raw: doc.toJS({ maxAliasCount: 1000 }) };
  } catch (err) {
    throw new EngineError('config', `invalid YAML: ${(err as Error).message}`, file, 'avoid deeply nested aliases');
  }
}

function applyOverrides(config: EngineConfig, overrides: ConfigOverrides | undefined): EngineConfig {
  if (overrides === undefined) return config;
  let result = config;
  if (overrides.dataDir !== undefined) result = { ...result, dataDir: path.resolve(overrides.dataDir) };
  // A relative unix:PATH on the command line is relative to where the command was typed.
  if (overrides.nbdListen !== undefined) result = { ...result, nbd: { ...result.nbd, listen: parseNbdListen(overrides.nbdListen, '--nbd', process.cwd()) } };
  if (overrides.apiListen !== undefined) result = { ...result, api: { listen: parseListen(overrides.apiListen, '--api') } };
  return result;
}

/**
 * Loads and validates a configuration. Precedence for the data dir: overrides.dataDir, then the
 * config's dataDir (relative to the config file), then $ONESTACK_DATA_DIR, then BASE/data.
 */
export function loadConfig(source: ConfigSource, overrides?: ConfigOverrides): EngineConfig {
  if ('embeddedDefault' in source) {
    const dataDir = overrides?.dataDir !== undefined ? path.resolve(overrides.dataDir) : defaultDataDir(process.cwd());
    return applyOverrides(embeddedDefaultConfig(dataDir), { ...overrides, dataDir });
  }
  if ('object' in source) {
    const baseDir = path.resolve(source.baseDir ?? process.cwd());
    return withRbdRunDir(applyOverrides(normalizeConfig(source.object, baseDir), overrides));
  }
  const { doc, lines, raw } = parseFile(source.path);
  const sourcePath = path.resolve(source.path);
  try {
    return withRbdRunDir(applyOverrides({ ...normalizeConfig(raw, path.dirname(sourcePath)), sourcePath }, overrides));
  } catch (err) {
    if (err instanceof EngineError && err.code === 'config' && !err.where?.startsWith('--')) throw relocated(err, source.path, doc, lines);
    throw err;
  }
}
