// The boot volume picked at run time (what the empty NBD export name serves). The pick is saved
// in the state file as `bootPick: {volume, configBoot}`: it applies at the next start only while
// the config still names the same boot volume as when the pick was made (else the config wins,
// warned), the way `replaced` treats run-time leg replacements.
import { EngineError } from '../api-types.js';
import type { EngineConfig, VolumeConfig } from '../config/types.js';
import type { Registry } from './registry.js';

export interface BootPick {
  readonly volume: string;
  /** The config file's boot volume when the pick was made (null: the config names none). */
  readonly configBoot: string | null;
}

export function readBootPick(raw: unknown): BootPick | undefined {
  if (raw === undefined) return undefined;
  const r = (raw ?? {}) as { volume?: unknown; configBoot?: unknown };
  if (typeof r.volume !== 'string' || r.volume.length === 0 || r.volume.length > 64) throw new Error('bootPick: volume must be a name');
  if (r.configBoot !== null && (typeof r.configBoot !== 'string' || r.configBoot.length === 0)) throw new Error('bootPick: configBoot must be a name or null');
  return { volume: r.volume, configBoot: r.configBoot };
}

function configBootOf(config: EngineConfig): string | null {
  return config.volumes.find((v) => v.boot)?.name ?? null;
}

/** The pick to save: the current boot volume when it differs from the config file's. */
export function currentBootPick(registry: Registry, base: EngineConfig): BootPick | undefined {
  const current = [...registry.volumes.values()].find((v) => v.assembled.config.boot)?.assembled.config.name;
  const configBoot = configBootOf(base);
  return current === undefined || current === configBoot ? undefined : { volume: current, configBoot };
}

/** Applies a saved pick to the merged volumes (one boot volume at most), or warns why it does not. */
export function applyBootPick(volumes: readonly VolumeConfig[], base: EngineConfig, pick: BootPick | undefined, warn: (msg: string) => void): VolumeConfig[] {
  if (pick === undefined) return [...volumes];
  const configBoot = configBootOf(base);
  if (configBoot !== pick.configBoot) {
    warn(`boot volume ${pick.volume} (picked at run time) ignored: the config names ${configBoot ?? 'no boot volume'} now`);
    return [...volumes];
  }
  if (!volumes.some((v) => v.name === pick.volume)) {
    warn(`boot volume ${pick.volume} (picked at run time) ignored: no such volume`);
    return [...volumes];
  }
  return volumes.map((v) => (v.boot === (v.name === pick.volume) ? v : { ...v, boot: v.name === pick.volume }));
}

/** Makes `name` the only boot volume in the registry; returns how to undo it. */
export function pickBootVolume(registry: Registry, name: string): () => void {
  if (!registry.volumes.has(name)) {
    throw new EngineError('not-found', `no volume named ${name}`, `volume ${name}`, 'list volumes with `onestack volume list`');
  }
  const before = [...registry.volumes.values()].map((entry) => [entry, entry.assembled] as const);
  for (const entry of registry.volumes.values()) {
    const config = entry.assembled.config;
    if (config.boot !== (config.name === name)) entry.assembled = { ...entry.assembled, config: { ...config, boot: config.name === name } };
  }
  return () => { for (const [entry, assembled] of before) entry.assembled = { ...entry.assembled, config: { ...entry.assembled.config, boot: assembled.config.boot } }; };
}
