// Control operations with many steps, kept apart from engine.ts: creating and deleting volumes
// and failing elements at run time (inside Engine.exclusive), and starting a scrub.
import { EngineError } from './api-types.js';
import type { EngineConfig } from './config/types.js';
import { normalizeVolume } from './config/validate.js';
import type { CheckpointKeeper } from './checkpoints/keeper.js';
import type { KeeperHost } from './durable/host.js';
import type { MirrorKeeper } from './durable/keeper.js';
import type { ScrubJobs, ScrubStarted } from './durable/scrub-jobs.js';
import type { ScrubOptions } from './durable/scrub.js';
import { scrubTargetOf } from './durable/scrub-target.js';
import { assembleVolume, markClean, markNeedsRebuild } from './meta/assemble.js';
import { layoutSurvives } from './meta/layout.js';
import { liveViewOf } from './engine-status.js';
import { wipeSuperblocks } from './meta/element-io.js';
import type { AssembledVolume, ElementState } from './meta/types.js';
import type { VolumeEntry } from './state/registry.js';
import { asInvalid, dataBytesOf, resolveElements } from './state/runtime-element.js';
import { checkLayout, type CreateVolumeSpec } from './engine-types.js';
import type { Volume } from './volume.js';
import type { IntegrityStores } from './integrity/stores.js';

export interface VolumeOpsHost extends KeeperHost {
  readonly base: EngineConfig;
  readonly keeper: MirrorKeeper;
  readonly ckpts: CheckpointKeeper;
  readonly scrubs: ScrubJobs;
  readonly integrity: IntegrityStores;
  /** Registers an assembled volume with a fresh handle and volume index. */
  bind(vol: AssembledVolume, runtime: boolean): { handle: Volume };
  attachCheckpoints(entry: VolumeEntry): Promise<void>;
}

/** Resolves and checks the new volume's config: elements named or created, none already used. */
async function newVolumeConfig(host: VolumeOpsHost, spec: CreateVolumeSpec, added: string[]): Promise<AssembledVolume['config']> {
  const { registry } = host;
  const names = await resolveElements(registry, host.base.dataDir, spec, added);
  const raw = { name: spec.name, layout: spec.layout, elements: names, ...(spec.chunkKiB !== undefined ? { chunkKiB: spec.chunkKiB } : {}), ...(spec.order !== undefined ? { order: spec.order } : {}),
    ...(spec.integrity === true ? { integrity: true } : {}), ...(spec.writeBehind !== undefined ? { writeBehind: spec.writeBehind } : {}) };
  let config;
  try {
    config = normalizeVolume(raw, 'volume', new Set(registry.elements.keys()));
  } catch (err) {
    throw asInvalid(err);
  }
  checkLayout(config.layout, config.name);
  for (const name of config.elements) {
    const owner = registry.ownerOf(name);
    if (owner !== undefined) throw new EngineError('conflict', `element ${name} is already used by volume ${owner.assembled.config.name}`, `element ${name}`);
  }
  return config;
}

export async function createVolumeOp(host: VolumeOpsHost, spec: CreateVolumeSpec): Promise<Volume> {
  const { registry, dataPath } = host;
  if (registry.volumes.has(spec.name)) throw new EngineError('conflict', `volume ${spec.name} already exists`, `volume ${spec.name}`);
  const added: string[] = [];
  try {
    const config = await newVolumeConfig(host, spec, added);
    const elementConfigs = new Map([...registry.elements.values()].map((e) => [e.config.name, e.config]));
    const vol = await assembleVolume(config, elementConfigs, { create: true });
    for (const name of added) registry.element(name).dataSizeBytes = await dataBytesOf(registry.element(name).config);
    const entry = host.bind(await markClean(vol, false), true);
    // The data path keeps the live state of elements it already knows (so a failed leg is
    // never revived by a topology change); an element joining a volume takes its assembled state.
    for (const e of vol.elements) dataPath.setElementState(registry.element(e.config.name).index, e.state);
    try {
      await host.applyTopology();
    } catch (err) {
      registry.volumes.delete(config.name);
      entry.handle.detach();
      throw err;
    }
    const bound = registry.volumes.get(config.name)!;
    host.integrity.attach(config.name);
    await host.keeper.attach(bound).catch((err: Error) => host.log('warn', `volume ${config.name}: no write-intent bitmap: ${err.message}`));
    await host.attachCheckpoints(bound).catch((err: Error) => host.log('warn', `volume ${config.name}: no checkpoints: ${err.message}`));
    host.persist();
    host.changed();
    return entry.handle;
  } catch (err) {
    for (const name of added) registry.elements.delete(name);
    throw err;
  }
}

export async function deleteVolumeOp(host: VolumeOpsHost, name: string): Promise<void> {
  const { registry, dataPath } = host;
  const entry = registry.volumes.get(name);
  if (entry === undefined) throw new EngineError('not-found', `no volume named ${name}`, `volume ${name}`);
  await host.scrubs.cancel(name, 'volume deleted');
  host.scrubs.forget(name);
  await host.keeper.detach(name, entry.handle.io);
  await host.ckpts.remove(name).catch((err: Error) => host.log('warn', `volume ${name}: removing its checkpoints: ${err.message}`));
  await entry.handle.flush().catch((err: Error) => host.log('warn', `volume ${name}: flush before delete failed: ${err.message}`));
  await host.integrity.detach(name);
  entry.handle.detach();
  registry.volumes.delete(name);
  await host.applyTopology();
  for (const e of entry.assembled.elements) {
    const element = registry.elements.get(e.config.name);
    if (element !== undefined) dataPath.setElementState(element.index, element.idleState);
  }
  await wipeSuperblocks(entry.assembled.elements.filter((e) => e.state !== 'failed' || e.config.location.kind === 'local').map((e) => e.config))
    .catch((err: Error) => host.log('warn', `volume ${name}: ${err.message}`));
  if (!entry.runtime) host.log('warn', `volume ${name} is defined in the config file: it will be created again (empty) at the next start unless removed there`);
  host.persist();
  host.changed();
}

/** Fails an element by request; refused when a volume it belongs to would lose its data. */
export async function failElementOp(host: VolumeOpsHost, name: string): Promise<void> {
  const { registry, dataPath } = host;
  const entry = registry.element(name);
  const owner = registry.ownerOf(name);
  if (owner !== undefined) {
    const live = liveViewOf(dataPath);
    const states = owner.assembled.config.elements.map((n): ElementState => (n === name ? 'failed' : live.state(registry.element(n))));
    if (!layoutSurvives(owner.assembled.config.layout, states)) {
      throw new EngineError('conflict', `failing element ${name} would leave volume ${owner.assembled.config.name} without its data`, `element ${name}`, 'add and rebuild another element first');
    }
    owner.assembled = { ...owner.assembled, elements: owner.assembled.elements.map((e) => (e.config.name === name ? { ...e, state: 'failed', reason: 'failed by request' } : e)) };
    const role = owner.assembled.config.elements.indexOf(name);
    if (!(await markNeedsRebuild(owner.assembled, role, undefined, { faulty: true }))) host.log('warn', `element ${name}: could not mark its superblock for rebuild`);
  } else {
    entry.idleState = 'failed';
  }
  dataPath.setElementState(entry.index, 'failed');
  host.log('warn', `element ${name} failed by request`);
  host.changed();
}

/** Starts a scrub (Engine.startScrub): mirror legs unit by unit, raid5/6 rows by the stripe engine. */
export async function startScrubOp(host: VolumeOpsHost, volume: string, opts: ScrubOptions): Promise<ScrubStarted> {
  const entry = host.registry.volumes.get(volume);
  if (entry === undefined) throw new EngineError('not-found', `no volume named ${volume}`, `volume ${volume}`, 'list volumes with `onestack volume list`');
  // Integrity volumes: each copy is judged by its stored checksums, so a repair rewrites the copy
  // that fails them (never by majority) with the one that verifies (durable/scrub-verify.ts).
  const store = host.integrity.of(volume);
  if (entry.assembled.config.integrity === true && store === undefined) {
    throw new EngineError('invalid', `volume ${volume} keeps checksums but has no checksum store attached`, `volume ${volume}`, 'see the daemon log');
  }
  const integrity = store === undefined ? {} : { integrity: { store, count: host.integrity.counters.countFor(volume) } };
  const mirrorTarget = { ...scrubTargetOf(host.registry, entry, (index) => host.dataPath.elementState(index)), ...integrity };
  // raid5/6 rows are checked by the volume's stripe engine (parity maths in the middle stage).
  const parity = entry.assembled.config.layout === 'raid5' || entry.assembled.config.layout === 'raid6';
  // A repair that rewrites legs may change what a read returns: drop those bytes from the read cache.
  // It changes what reads return, so checkpoints count it as written (marked after the rewrite, under the unit's fence).
  const onRewrite = (off: number, len: number): void => {
    if (entry.handle.open) entry.handle.io.invalidateCache(off, len);
    host.ckpts.mark(volume, off, len)?.catch((err: Error) => host.log('error', `volume ${volume}: a scrub repair is missing from its checkpoints: ${err.message}`));
  };
  const target = parity ? { ...mirrorTarget, stripe: host.dataPath.stripe(entry.index), onRewrite } : { ...mirrorTarget, onRewrite };
  return host.scrubs.start(target, entry.handle.io.gate, opts);
}
