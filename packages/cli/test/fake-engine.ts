// An in-memory stand-in for the Engine's control plane, used in addition to (never instead of)
// the real Engine: it lets the API tests reach states (rebuilding, many events) on demand.
import { EventEmitter } from 'node:events';
import type { DiscoverOptions, DiscoverResult, ElementStatus, EngineStatus, ScrubStatus, VolumeStatus } from '@onestack/engine';
import { afterAll, beforeAll } from 'vitest';
import type { ApiEngine, ScrubRequest, ScrubStartedView } from '../src/api/engine-port.js';
import { startApiServer } from '../src/api/server.js';
import type { AddElementSpec, CreateVolumeSpec } from '../src/api/validate.js';

function engineError(code: string, message: string, where?: string): Error {
  return Object.assign(new Error(message), { name: 'EngineError', code, where });
}

export class FakeEngine implements ApiEngine {
  readonly events = new EventEmitter();
  readonly elements = new Map<string, ElementStatus>();
  readonly volumes = new Map<string, VolumeStatus>();

  constructor() {
    for (const name of ['d0', 'd1', 'd2', 'd3']) {
      this.elements.set(name, { name, kind: 'local', uri: `file:/tmp/${name}.img`, state: 'spare', sizeBytes: 2 ** 30, volume: null, role: null, errors: 0 });
    }
  }

  status(): EngineStatus {
    const pool = { threads: 1, queueDepth: 0 };
    return {
      volumes: [...this.volumes.values()], elements: [...this.elements.values()],
      pools: { top: pool, middle: pool, bottom: { threads: 2, queueDepth: 3 } },
      queue: { depth: 256, inFlight: 0, slots: 64, slotKiB: 128 }, native: { backend: 'js', reason: 'fake' }, dataDir: '/tmp/fake',
    };
  }

  async createVolume(spec: CreateVolumeSpec): Promise<unknown> {
    if (this.volumes.has(spec.name)) throw engineError('conflict', `volume ${spec.name} exists`, spec.name);
    const members = spec.elements.map((name, role) => {
      const e = this.elements.get(name);
      if (e === undefined) throw engineError('not-found', `no element ${name}`, name);
      return { ...e, state: 'active' as const, volume: spec.name, role };
    });
    for (const m of members) this.elements.set(m.name, m);
    this.volumes.set(spec.name, {
      name: spec.name, layout: spec.layout, sizeBytes: spec.sizeBytes ?? 2 ** 30, chunkKiB: spec.chunkKiB ?? 64, order: spec.order ?? 'fifo',
      boot: false, state: 'optimal', rebuild: null, scrub: null, elements: members, stats: { readOps: 5, writeOps: 7, readBytes: 512, writeBytes: 1024, errors: 0 },
    });
    this.events.emit('change');
    return {};
  }

  async deleteVolume(name: string): Promise<void> {
    if (!this.volumes.delete(name)) throw engineError('not-found', `no volume ${name}`, name);
    this.events.emit('change');
  }

  /** The last addElement spec, to check what reached the engine (e.g. a secretFile path). */
  lastAdd: AddElementSpec | undefined;

  async addElement(spec: AddElementSpec): Promise<ElementStatus> {
    this.lastAdd = spec;
    const name = spec.name ?? `e${this.elements.size}`;
    if (this.elements.has(name)) throw engineError('conflict', `element ${name} exists`, name);
    const e: ElementStatus = { name, kind: 'local', uri: spec.uri, state: 'spare', sizeBytes: 2 ** 20, volume: null, role: null, errors: 0 };
    this.elements.set(name, e);
    return e;
  }

  async removeElement(name: string): Promise<void> {
    if (!this.elements.delete(name)) throw engineError('not-found', `no element ${name}`, name);
  }

  /** The last discover call, to check what reached the engine (secret split out of the URI). */
  lastDiscover: { uri: string; opts: DiscoverOptions } | undefined;

  /** nbd://fake-*: a canned listing; iscsi://...:1/: unreachable, echoing the secret (a careless peer). */
  async discover(uri: string, opts: DiscoverOptions): Promise<DiscoverResult> {
    this.lastDiscover = { uri, opts };
    if (uri.startsWith('nbd://fake')) {
      return { kind: 'nbd', where: uri, items: [{ name: 'disk', uri: `${uri}/disk`, description: 'a disk' }, { name: '', uri: `${uri}/` }] };
    }
    if (uri.startsWith('iscsi://')) throw engineError('io', `discover ${uri}: login refused for secret ${opts.secret ?? '-'}`, uri);
    throw engineError('invalid', `cannot discover ${uri}: unknown scheme`, 'uri');
  }

  async failElement(name: string): Promise<void> {
    const e = this.elements.get(name);
    if (e === undefined) throw engineError('not-found', `no element ${name}`, name);
    this.elements.set(name, { ...e, state: 'failed' });
    this.events.emit('change');
  }

  /** How the next scrub goes: progress steps (one every stepMs, each a 'change' event), then this result. */
  scrubPlan = { steps: 3, stepMs: 60, mismatchedUnits: 0, repairable: true };
  readonly scrubs: { volume: string; opts: ScrubRequest }[] = [];
  readonly replaced: { volume: string; old: string; new: string }[] = [];
  readonly #scrubTimers = new Map<string, { timer: NodeJS.Timeout; startedMs: number }>();

  /** A scrub in steps driven by a timer: rebuild {kind: check|repair} moves, then scrub holds the result. */
  async startScrub(volume: string, opts: ScrubRequest): Promise<ScrubStartedView> {
    const v = this.volumes.get(volume);
    if (v === undefined) throw engineError('not-found', `no volume named ${volume}`, `volume ${volume}`);
    if (this.#scrubTimers.has(volume)) throw engineError('conflict', `volume ${volume} is already being scrubbed`, `volume ${volume}`);
    this.scrubs.push({ volume, opts });
    const kind = opts.repair === true ? 'repair' : 'check';
    const startedMs = Date.now();
    const plan = { ...this.scrubPlan };
    const progress = (step: number) => {
      const doneBytes = Math.round((v.sizeBytes * step) / plan.steps);
      return { kind, element: null, percent: (100 * step) / plan.steps, mibPerSec: 512, etaSeconds: step === 0 ? null : (plan.steps - step) * plan.stepMs / 1000, doneBytes, totalBytes: v.sizeBytes } as const;
    };
    this.#set(volume, { rebuild: progress(0) });
    let step = 0;
    const timer = setInterval(() => {
      step++;
      if (step < plan.steps) { this.#set(volume, { rebuild: progress(step) }); return; }
      this.#finish(volume, {
        kind, startedMs, finishedMs: Date.now(), outcome: 'done', checkedBytes: v.sizeBytes, skippedBytes: 0, mismatchedUnits: plan.mismatchedUnits,
        mismatchedBytes: plan.mismatchedUnits * 10, repairedUnits: kind === 'repair' && plan.repairable ? plan.mismatchedUnits : 0, ioErrors: 0,
      });
    }, plan.stepMs);
    this.#scrubTimers.set(volume, { timer, startedMs });
    return { volume, kind, startedMs, progress: progress(0) };
  }

  async cancelScrub(volume: string): Promise<boolean> {
    const v = this.volumes.get(volume);
    if (v === undefined) throw engineError('not-found', `no volume named ${volume}`, `volume ${volume}`);
    const running = this.#scrubTimers.get(volume);
    if (running === undefined || v.rebuild === null) return false;
    this.#finish(volume, {
      kind: v.rebuild.kind === 'repair' ? 'repair' : 'check', startedMs: running.startedMs, finishedMs: Date.now(), outcome: 'cancelled', checkedBytes: 0, skippedBytes: 0,
      mismatchedUnits: 0, mismatchedBytes: 0, repairedUnits: 0, ioErrors: 0, message: 'cancelled by request',
    });
    return true;
  }

  async replaceElement(volume: string, oldElement: string, newElement: string): Promise<void> {
    const v = this.volumes.get(volume);
    if (v === undefined) throw engineError('not-found', `no volume named ${volume}`, `volume ${volume}`);
    const role = v.elements.findIndex((e) => e.name === oldElement);
    if (role < 0) throw engineError('invalid', `element ${oldElement} is not in volume ${volume}`, `element ${oldElement}`);
    const spare = this.elements.get(newElement);
    if (spare === undefined) throw engineError('not-found', `no element ${newElement}`, newElement);
    if (spare.volume !== null) throw engineError('conflict', `element ${newElement} is used by volume ${spare.volume}`, newElement);
    this.replaced.push({ volume, old: oldElement, new: newElement });
    const member = { ...spare, state: 'rebuilding' as const, volume, role };
    this.elements.set(newElement, member);
    this.elements.set(oldElement, { ...v.elements[role]!, state: 'spare', volume: null, role: null });
    this.#set(volume, {
      state: 'rebuilding', elements: v.elements.map((e, i) => (i === role ? member : e)),
      rebuild: { kind: 'rebuild', element: newElement, percent: 0, mibPerSec: 0, etaSeconds: null, doneBytes: 0, totalBytes: v.sizeBytes },
    });
  }

  /** Stops pending scrub timers (afterAll). */
  stopTimers(): void {
    for (const t of this.#scrubTimers.values()) clearInterval(t.timer);
    this.#scrubTimers.clear();
  }

  #finish(volume: string, result: ScrubStatus): void {
    clearInterval(this.#scrubTimers.get(volume)?.timer);
    this.#scrubTimers.delete(volume);
    this.#set(volume, { rebuild: null, scrub: result });
  }

  #set(volume: string, change: Partial<VolumeStatus>): void {
    const v = this.volumes.get(volume);
    if (v === undefined) return;
    this.volumes.set(volume, { ...v, ...change });
    this.events.emit('change');
  }
}

/** A FakeEngine behind a real API server on a free port, with volume `m` (raid1 of d0, d1): started before the file's tests, stopped after. */
export function useFakeDaemon(token: string): { readonly engine: FakeEngine; readonly port: number } {
  let engine: FakeEngine | null = null;
  let server: Awaited<ReturnType<typeof startApiServer>> | null = null;
  beforeAll(async () => {
    engine = new FakeEngine();
    server = await startApiServer({ engine, token }, { host: '127.0.0.1', port: 0 });
    await engine.createVolume({ name: 'm', layout: 'raid1', elements: ['d0', 'd1'] });
  });
  afterAll(async () => {
    engine?.stopTimers();
    await server?.close();
  });
  return {
    get engine(): FakeEngine { if (engine === null) throw new Error('fake daemon not started'); return engine; },
    get port(): number { if (server === null) throw new Error('fake daemon not started'); return server.port; },
  };
}
