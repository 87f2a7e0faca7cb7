// An in-memory stand-in for the Engine's control plane, used in addition to (never instead of)
// the real Engine: it lets the API tests reach states (rebuilding, many events) on demand.
import { EventEmitter } from 'node:events';
import type { DiscoverOptions, DiscoverResult, ElementStatus, EngineStatus, VolumeStatus } from '@onestack/engine';
import type { ApiEngine } from '../src/api/engine-port.js';
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
      boot: false, state: 'optimal', rebuild: null, elements: members, stats: { readOps: 5, writeOps: 7, readBytes: 512, writeBytes: 1024, errors: 0 },
    });
    this.events.emit('change');
    return {};
  }

  async deleteVolume(name: string): Promise<void> {
    if (!this.volumes.delete(name)) throw engineError('not-found', `no volume ${name}`, name);
    this.events.emit('change');
  }

  async addElement(spec: AddElementSpec): Promise<ElementStatus> {
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
}
