// Elements added at run time (API, createVolume with URIs): validated like config elements,
// named after their file when no name is given, refused when their file is already in use.
import * as fs from 'node:fs';
import { EngineError } from '../api-types.js';
import type { ElementCache, ElementConfig } from '../config/types.js';
import { defaultElementName, maskUri } from '../config/uri.js';
import { normalizeElement } from '../config/validate.js';
import { localSizeBytes } from '../meta/device.js';
import { withRemote } from '../meta/remote-io.js';
import { remoteSpecFor, type RemoteSpec } from '../remote/spec.js';
import { stopRbdElementOf } from '../remote/rbd-access.js';
import { DATA_OFFSET_BYTES } from '../meta/types.js';
import { MAX_ELEMENT_SLOTS, type ElementEntry, type Registry } from './registry.js';

export interface RuntimeElementSpec {
  readonly uri: string;
  readonly name?: string;
  readonly cache?: ElementCache;
  /** iscsi: the CHAP secret's file. */
  readonly secretFile?: string;
  /** Data bytes of a sparse file to create when the local file is missing. */
  readonly createSizeBytes?: number;
}

/** Config errors of run-time requests are plain invalid requests (exit status is the CLI's business). */
export function asInvalid(err: unknown): unknown {
  if (err instanceof EngineError && err.code === 'config') return new EngineError('invalid', err.message, err.where, err.hint);
  return err;
}

/** Usable bytes of an element after the header area; 0 if unknown (missing, unreachable). */
export async function dataBytesOf(config: ElementConfig): Promise<number> {
  try {
    const total = config.location.kind === 'local' ? await localSizeBytes(config.location.path) : await withRemote(config, async (dev) => dev.info.sizeBytes);
    return Math.max(0, total - DATA_OFFSET_BYTES);
  } catch {
    return 0;
  }
}

/** A remote element's connection spec (secrets and PEM files read now); undefined for local ones. */
export async function remoteSpecOf(config: ElementConfig): Promise<RemoteSpec | undefined> {
  return config.location.kind === 'local' ? undefined : remoteSpecFor(config);
}

function uniqueName(registry: Registry, base: string): string {
  if (!registry.elements.has(base)) return base;
  for (let i = 1; i <= MAX_ELEMENT_SLOTS; i++) if (!registry.elements.has(`${base}-${i}`)) return `${base}-${i}`;
  throw new EngineError('conflict', `no free element name like ${base}`);
}

/** Validates a run-time element against the registry; relative paths resolve against the data dir. */
export function runtimeElementConfig(registry: Registry, spec: RuntimeElementSpec, dataDir: string): ElementConfig {
  let config: ElementConfig;
  try {
    const probe = normalizeElement({ name: 'probe', uri: spec.uri }, 'element', dataDir);
    const missing = probe.location.kind === 'local' && !fs.existsSync(probe.location.path);
    config = normalizeElement({
      name: spec.name ?? uniqueName(registry, defaultElementName(probe.location)), uri: spec.uri,
      ...(spec.cache !== undefined ? { cache: spec.cache } : {}),
      ...(spec.secretFile !== undefined ? { secretFile: spec.secretFile } : {}),
      ...(spec.createSizeBytes !== undefined && missing ? { createSizeBytes: spec.createSizeBytes } : {}),
    }, 'element', dataDir);
  } catch (err) {
    throw asInvalid(err);
  }
  const location = config.location;
  if (location.kind !== 'local') return config;
  for (const e of registry.elements.values()) {
    if (e.config.location.kind === 'local' && e.config.location.path === location.path) {
      throw new EngineError('conflict', `element ${e.config.name} already uses ${location.path}`, `element ${config.name}`);
    }
  }
  if (config.createSizeBytes === undefined && !fs.existsSync(location.path)) {
    throw new EngineError('not-found', `element ${config.name}: file not found: ${location.path}`, location.path, 'create it first, or give a size so onestack creates a sparse file');
  }
  return config;
}

/** Volume-create element list: known names as they are, paths and URIs added as run-time elements (named in `added`). */
export async function resolveElements(registry: Registry, dataDir: string, spec: { elements: readonly string[]; sizeBytes?: number }, added: string[]): Promise<string[]> {
  const names: string[] = [];
  for (const item of spec.elements.slice(0, 64)) {
    if (registry.elements.has(item)) {
      names.push(item);
      continue;
    }
    if (!/[/:.]/.test(item)) throw new EngineError('not-found', `no element named ${item}`, `element ${item}`, 'add it first, or give a URI or path');
    const entry = await newElement(registry, dataDir, { uri: item, ...(spec.sizeBytes !== undefined ? { createSizeBytes: spec.sizeBytes } : {}) });
    added.push(entry.config.name);
    names.push(entry.config.name);
  }
  return names;
}

/** Validates and registers a run-time element (not yet in the data path's topology). */
export async function newElement(registry: Registry, dataDir: string, spec: RuntimeElementSpec): Promise<ElementEntry> {
  const config = runtimeElementConfig(registry, spec, dataDir);
  const remote = await remoteSpecOf(config);
  if (remote === undefined) return registry.addElement(config, true, await dataBytesOf(config), remote);
  // Reachability is checked now, so a wrong URI or password is a clear error, not a failed leg
  // later; the client's own message says which (its errors never carry the secret).
  let totalBytes: number;
  try {
    totalBytes = await withRemote(config, async (dev) => dev.info.sizeBytes);
  } catch (err) {
    await stopRbdElementOf(config); // an rbd:// element's path and lock, opened for this check
    const why = maskUri(err instanceof Error ? err.message : String(err));
    throw new EngineError('unreachable', `element ${config.name}: cannot reach ${maskUri(config.uri)}: ${why}`, maskUri(config.uri), 'check the URI, that the remote is up and the credentials');
  }
  if (totalBytes <= DATA_OFFSET_BYTES) {
    throw new EngineError('invalid', `element ${config.name}: ${maskUri(config.uri)} holds ${totalBytes} bytes, not more than the ${DATA_OFFSET_BYTES}-byte header`, maskUri(config.uri));
  }
  return registry.addElement(config, true, totalBytes - DATA_OFFSET_BYTES, remote);
}
