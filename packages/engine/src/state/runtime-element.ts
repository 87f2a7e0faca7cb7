// Elements added at run time (API, createVolume with URIs): validated like config elements,
// named after their file when no name is given, refused when their file is already in use.
import * as fs from 'node:fs';
import { EngineError } from '../api-types.js';
import type { ElementCache, ElementConfig } from '../config/types.js';
import { defaultElementName } from '../config/uri.js';
import { normalizeElement } from '../config/validate.js';
import { localSizeBytes } from '../meta/device.js';
import { DATA_OFFSET_BYTES } from '../meta/types.js';
import { MAX_ELEMENT_SLOTS, type Registry } from './registry.js';

export interface RuntimeElementSpec {
  readonly uri: string;
  readonly name?: string;
  readonly cache?: ElementCache;
  /** Data bytes of a sparse file to create when the local file is missing. */
  readonly createSizeBytes?: number;
}

/** Config errors of run-time requests are plain invalid requests (exit status is the CLI's business). */
export function asInvalid(err: unknown): unknown {
  if (err instanceof EngineError && err.code === 'config') return new EngineError('invalid', err.message, err.where, err.hint);
  return err;
}

/** Usable bytes of a local element after the header area; 0 if unknown (remote, missing). */
export async function dataBytesOf(config: ElementConfig): Promise<number> {
  if (config.location.kind !== 'local') return 0;
  try {
    return Math.max(0, (await localSizeBytes(config.location.path)) - DATA_OFFSET_BYTES);
  } catch {
    return 0;
  }
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
