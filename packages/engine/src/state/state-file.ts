// Runtime-created elements and volumes, persisted in DATA_DIR/onestack-state.json so that a
// restart with the same data dir serves the same volumes. Written atomically (tmp, fsync,
// rename, fsync dir). The config file wins on name clashes.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { EngineError } from '../api-types.js';
import type { ElementConfig, EngineConfig, VolumeConfig } from '../config/types.js';
import { normalizeElement, normalizeVolume } from '../config/validate.js';
import { applyBootPick, readBootPick, type BootPick } from './boot.js';

export const STATE_FILE = 'onestack-state.json';
const STATE_VERSION = 1;
const MAX_STATE_BYTES = 4 * 1024 * 1024;

export interface PersistedElement {
  readonly name: string;
  readonly uri: string;
  readonly cache: string;
  readonly timeoutMs: number;
  readonly createSizeBytes?: number;
  readonly secretFile?: string;
}

export interface PersistedVolume {
  readonly name: string;
  readonly layout: string;
  readonly elements: readonly string[];
  readonly chunkKiB: number;
  readonly order: string;
  readonly boot: boolean;
  readonly sizeBytes?: number;
  readonly spares?: readonly string[];
  readonly bitmapRegionKiB?: number;
  readonly integrity?: boolean;
  readonly writeBehind?: { readonly element: string; readonly maxLagMiB: number; readonly drainOnFlush: boolean };
}

/**
 * A config-file volume whose elements changed at run time (a leg replaced): it applies at the
 * next start only while the config still lists `configElements` (else the config wins, warned).
 */
export interface ReplacedVolume {
  readonly volume: string;
  readonly configElements: readonly string[];
  readonly elements: readonly string[];
}

/**
 * A config-file volume reshaped at run time (docs/reshape.md): its layout and elements now. Applied
 * at start while the config still says `configLayout` over `configElements`; a config that says
 * the new ones has caught up; any other config wins, with a warning (assembly then refuses the
 * volume clearly if its superblocks disagree).
 */
export interface ReshapedVolume {
  readonly volume: string;
  readonly configLayout: string;
  readonly configElements: readonly string[];
  readonly layout: string;
  readonly elements: readonly string[];
}

export interface PersistedState {
  readonly elements: readonly ElementConfig[];
  readonly volumes: readonly VolumeConfig[];
  readonly replaced?: readonly ReplacedVolume[];
  /**
   * Config-file raid1 volumes whose member count changed at run time (add-member, remove-member),
   * same shape as `replaced`; applied at start while the config still lists `configElements`.
   */
  readonly members?: readonly ReplacedVolume[];
  /** The boot volume picked at run time (state/boot.ts). */
  readonly bootPick?: BootPick;
  /** Config-file volumes whose layout or element count a reshape changed (withReshaped). */
  readonly reshaped?: readonly ReshapedVolume[];
}

export const EMPTY_STATE: PersistedState = { elements: [], volumes: [] };

function readReplaced(raw: unknown, key = 'replaced'): ReplacedVolume[] {
  if (raw === undefined) return [];
  if (!Array.isArray(raw)) throw new Error(`${key}: expected a list`);
  const names = (v: unknown, what: string): string[] => {
    if (!Array.isArray(v) || v.length > 64 || !v.every((x) => typeof x === 'string' && x.length > 0 && x.length <= 64)) throw new Error(`${key}: ${what} must be a list of element names`);
    return v as string[];
  };
  return raw.slice(0, 64).map((item: unknown) => {
    const r = (item ?? {}) as { volume?: unknown; configElements?: unknown; elements?: unknown };
    if (typeof r.volume !== 'string' || r.volume.length === 0) throw new Error(`${key}: volume must be a name`);
    return { volume: r.volume, configElements: names(r.configElements, 'configElements'), elements: names(r.elements, 'elements') };
  });
}

const LAYOUT_NAMES = ['linear', 'raid0', 'raid1', 'raid10', 'raid5', 'raid6'];

function readReshaped(raw: unknown): ReshapedVolume[] {
  if (raw === undefined) return [];
  if (!Array.isArray(raw)) throw new Error('reshaped: expected a list');
  return raw.slice(0, 64).map((item: unknown) => {
    const r = (item ?? {}) as { volume?: unknown; configLayout?: unknown; layout?: unknown };
    const layout = (v: unknown, what: string): string => {
      if (typeof v !== 'string' || !LAYOUT_NAMES.includes(v)) throw new Error(`reshaped: ${what} must be one of ${LAYOUT_NAMES.join(', ')}`);
      return v;
    };
    const [lists] = readReplaced([item], 'reshaped');
    if (typeof r.volume !== 'string' || lists === undefined) throw new Error('reshaped: volume must be a name');
    return { volume: lists.volume, configLayout: layout(r.configLayout, 'configLayout'), configElements: lists.configElements, layout: layout(r.layout, 'layout'), elements: lists.elements };
  });
}

function persistElement(e: ElementConfig): PersistedElement {
  // Local paths are stored absolute so the state does not depend on the daemon's cwd.
  const uri = e.location.kind === 'local' ? `file:${e.location.path}` : e.uri;
  return { name: e.name, uri, cache: e.cache, timeoutMs: e.timeoutMs,
    ...(e.createSizeBytes !== undefined ? { createSizeBytes: e.createSizeBytes } : {}), ...(e.secretFile !== undefined ? { secretFile: e.secretFile } : {}) };
}

function persistVolume(v: VolumeConfig): PersistedVolume {
  return { name: v.name, layout: v.layout, elements: v.elements, chunkKiB: v.chunkKiB, order: v.order, boot: v.boot, ...(v.sizeBytes !== undefined ? { sizeBytes: v.sizeBytes } : {}),
    ...(v.spares !== undefined && v.spares.length > 0 ? { spares: v.spares } : {}), ...(v.bitmapRegionKiB !== undefined ? { bitmapRegionKiB: v.bitmapRegionKiB } : {}),
    ...(v.integrity === true ? { integrity: true } : {}), ...(v.writeBehind !== undefined ? { writeBehind: v.writeBehind } : {}) };
}

/** Element names the volumes of the state file mention (members and spares), unchecked. */
function referencedElements(rawVolumes: readonly unknown[]): string[] {
  const names: string[] = [];
  for (const v of rawVolumes) {
    const map = (v ?? {}) as { elements?: unknown; spares?: unknown };
    for (const list of [map.elements, map.spares]) {
      if (Array.isArray(list)) for (const x of list.slice(0, 64)) if (typeof x === 'string') names.push(x);
    }
  }
  return names;
}

/** Reads the state file; missing = empty. A damaged file is a clear error, never silently dropped. */
export function readStateFile(dataDir: string): PersistedState {
  const file = path.join(dataDir, STATE_FILE);
  let raw: unknown;
  try {
    if (fs.statSync(file).size > MAX_STATE_BYTES) throw new Error('file too large');
    raw = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return EMPTY_STATE;
    throw new EngineError('config', `cannot read the runtime state: ${(err as Error).message}`, file, 'fix or move the file away (its volumes will then not be served)');
  }
  try {
    const map = (raw ?? {}) as { version?: unknown; elements?: unknown; volumes?: unknown; replaced?: unknown; members?: unknown; bootPick?: unknown; reshaped?: unknown };
    if (map.version !== STATE_VERSION) throw new Error(`unsupported version ${JSON.stringify(map.version)}`);
    const rawElements = Array.isArray(map.elements) ? map.elements.slice(0, 256) : [];
    const elements = rawElements.map((item, i) => normalizeElement(item, `elements[${i}]`, dataDir));
    const rawVolumes = Array.isArray(map.volumes) ? map.volumes.slice(0, 64) : [];
    // A run-time volume may be built on config-file elements: names are checked against the
    // merged config (mergeState), not against this file's own elements.
    const names = new Set([...elements.map((e) => e.name), ...referencedElements(rawVolumes)]);
    const bootPick = readBootPick(map.bootPick);
    return { elements, volumes: rawVolumes.map((item, i) => normalizeVolume(item, `volumes[${i}]`, names)), replaced: readReplaced(map.replaced), members: readReplaced(map.members, 'members'), reshaped: readReshaped(map.reshaped),
      ...(bootPick !== undefined ? { bootPick } : {}) };
  } catch (err) {
    throw new EngineError('config', `invalid runtime state: ${(err as Error).message}`, file, 'fix or move the file away (its volumes will then not be served)');
  }
}

/** Writes the state atomically: temp file, fsync, rename, fsync of the directory. */
export function writeStateFile(dataDir: string, state: PersistedState): void {
  const file = path.join(dataDir, STATE_FILE);
  const tmp = `${file}.tmp-${process.pid}`;
  const replaced = state.replaced !== undefined && state.replaced.length > 0 ? { replaced: state.replaced } : {};
  const members = state.members !== undefined && state.members.length > 0 ? { members: state.members } : {};
  const bootPick = state.bootPick !== undefined ? { bootPick: state.bootPick } : {};
  const reshaped = state.reshaped !== undefined && state.reshaped.length > 0 ? { reshaped: state.reshaped } : {};
  const body = JSON.stringify({ version: STATE_VERSION, elements: state.elements.map(persistElement), volumes: state.volumes.map(persistVolume), ...replaced, ...members, ...reshaped, ...bootPick }, null, 2);
  const fd = fs.openSync(tmp, 'w', 0o600);
  try {
    fs.writeSync(fd, `${body}\n`);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  fs.renameSync(tmp, file);
  const dirFd = fs.openSync(dataDir, 'r');
  try {
    fs.fsyncSync(dirFd);
  } finally {
    fs.closeSync(dirFd);
  }
}

export interface MergedConfig {
  readonly config: EngineConfig;
  /** The parts that came from the state file (and are written back to it on change). */
  readonly runtime: PersistedState;
}

/** Adds the state's elements and volumes to the config; the config wins every clash (with a warning). */
export function mergeState(config: EngineConfig, state: PersistedState, warn: (msg: string) => void): MergedConfig {
  const configNames = new Set(config.elements.map((e) => e.name));
  const configPaths = new Set(config.elements.flatMap((e) => (e.location.kind === 'local' ? [e.location.path] : [])));
  const dropped = new Set<string>();
  const elements = state.elements.filter((e) => {
    const clash = configNames.has(e.name) ? `name "${e.name}"` : e.location.kind === 'local' && configPaths.has(e.location.path) ? `file ${e.location.path}` : undefined;
    if (clash === undefined) return true;
    warn(`runtime element ${e.name} ignored: the config defines the same ${clash}`);
    dropped.add(e.name);
    return false;
  });
  const known = new Set([...config.elements.map((e) => e.name), ...elements.map((e) => e.name)]);
  const configVolumes = config.volumes.map((v) => withReshaped(withMembers(withReplacement(v, state.replaced ?? [], known, warn), state.members ?? [], known, warn), state.reshaped ?? [], known, warn));
  const used = new Set(configVolumes.flatMap((v) => v.elements));
  const volumeNames = new Set(config.volumes.map((v) => v.name));
  let hasBoot = config.volumes.some((v) => v.boot);
  const volumes: VolumeConfig[] = [];
  for (const v of state.volumes) {
    const problem = volumeNames.has(v.name) ? 'the config defines a volume of that name'
      : v.elements.some((e) => dropped.has(e)) ? 'one of its elements clashes with the config'
        : [...v.elements, ...(v.spares ?? [])].some((e) => !known.has(e)) ? 'one of its elements is defined neither in the config nor in the state file'
        : v.elements.some((e) => used.has(e)) ? 'one of its elements is used by a config volume' : undefined;
    if (problem !== undefined) {
      warn(`runtime volume ${v.name} ignored: ${problem}`);
      continue;
    }
    const boot = v.boot && !hasBoot;
    if (v.boot && !boot && state.bootPick?.volume !== v.name) warn(`runtime volume ${v.name} is no longer the boot volume: the config names one`);
    hasBoot ||= boot;
    v.elements.forEach((e) => used.add(e));
    volumes.push({ ...v, boot });
  }
  const picked = applyBootPick([...configVolumes, ...volumes], config, state.bootPick, warn);
  const runtimeVolumes = picked.filter((v) => volumes.some((r) => r.name === v.name));
  return {
    config: { ...config, elements: [...config.elements, ...elements], volumes: picked },
    runtime: { elements, volumes: runtimeVolumes, replaced: (state.replaced ?? []).filter((r) => configVolumes.some((v) => v.name === r.volume && sameSet(v.elements, r.elements))),
      members: (state.members ?? []).filter((r) => configVolumes.some((v) => v.name === r.volume && sameSet(v.elements, r.elements))),
      reshaped: (state.reshaped ?? []).filter((r) => configVolumes.some((v) => v.name === r.volume && v.layout === r.layout && sameSet(v.elements, r.elements))) },
  };
}

function sameSet(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((x) => b.includes(x));
}

/** A config volume with the run-time replacement of its legs applied, if the config did not change since. */
function withReplacement(v: VolumeConfig, replaced: readonly ReplacedVolume[], known: ReadonlySet<string>, warn: (msg: string) => void): VolumeConfig {
  const r = replaced.find((x) => x.volume === v.name);
  if (r === undefined) return v;
  if (!sameSet(r.configElements, v.elements) || r.elements.length !== v.elements.length || !r.elements.every((e) => known.has(e))) {
    warn(`volume ${v.name}: run-time replacement of its elements (${r.elements.join(', ')}) ignored: the config lists ${v.elements.join(', ')} now`);
    return v;
  }
  return { ...v, elements: r.elements, ...(v.spares !== undefined ? { spares: v.spares.filter((s) => !r.elements.includes(s)) } : {}) };
}

/**
 * A config raid1 volume with the members added or removed at run time: applied while the config
 * lists the members it listed then (`configElements`); a config that lists the members as they
 * are now has caught up (nothing to say); any other config wins, with a warning.
 */
function withMembers(v: VolumeConfig, records: readonly ReplacedVolume[], known: ReadonlySet<string>, warn: (msg: string) => void): VolumeConfig {
  const r = records.find((x) => x.volume === v.name);
  if (r === undefined || sameSet(r.elements, v.elements)) return v;
  if (v.layout !== 'raid1' || !sameSet(r.configElements, v.elements) || r.elements.length < 2 || !r.elements.every((e) => known.has(e))) {
    warn(`volume ${v.name}: run-time change of its members (${r.elements.join(', ')}) ignored: the config lists ${v.elements.join(', ')} now`);
    return v;
  }
  return { ...v, elements: r.elements, ...(v.spares !== undefined ? { spares: v.spares.filter((s) => !r.elements.includes(s)) } : {}) };
}

/**
 * A config volume with a run-time reshape applied (layout and elements, in role order), while the
 * config still says what it said then; a config that says the new ones has caught up.
 */
function withReshaped(v: VolumeConfig, records: readonly ReshapedVolume[], known: ReadonlySet<string>, warn: (msg: string) => void): VolumeConfig {
  const r = records.find((x) => x.volume === v.name);
  if (r === undefined || (r.layout === v.layout && sameSet(r.elements, v.elements))) return v;
  if (r.configLayout !== v.layout || !sameSet(r.configElements, v.elements) || !r.elements.every((e) => known.has(e))) {
    warn(`volume ${v.name}: run-time reshape to ${r.layout} over ${r.elements.join(', ')} ignored: the config says ${v.layout} over ${v.elements.join(', ')} now`);
    return v;
  }
  return { ...v, layout: r.layout as VolumeConfig['layout'], elements: r.elements, ...(v.spares !== undefined ? { spares: v.spares.filter((s) => !r.elements.includes(s)) } : {}) };
}
