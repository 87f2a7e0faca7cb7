// Engine-wide families of /metrics: driver pools, the shared request queue, payload copies and
// the fast lane.
import type { EngineStatus } from '@onestack/engine';
import type { Registry } from 'prom-client';
import { counterFamily, gaugeFamily, type Row, type Snapshot } from './metrics-families.js';

function byPool(pick: (p: EngineStatus['pools']['top']) => number): (s: EngineStatus) => Row<'pool'>[] {
  // Object.entries: older daemons (and fakes) have no remote pool.
  return (s) => Object.entries(s.pools).map(([pool, p]): Row<'pool'> => [{ pool }, pick(p)]);
}

export function registerEngineFamilies(registry: Registry, snap: Snapshot): void {
  gaugeFamily(registry, snap, { name: 'onestack_pool_queue_depth', help: 'Requests waiting in the driver pool queue.', labels: ['pool'], rows: byPool((p) => p.queueDepth) });
  gaugeFamily(registry, snap, { name: 'onestack_pool_threads', help: 'Worker threads of the driver pool.', labels: ['pool'], rows: byPool((p) => p.threads) });
  gaugeFamily(registry, snap, { name: 'onestack_queue_in_flight', help: 'Requests in flight in the shared request ring.', labels: [], rows: (s) => [[{}, s.queue.inFlight]] });
  gaugeFamily(registry, snap, { name: 'onestack_queue_depth', help: 'Parent descriptors of the shared request ring (queue.depth): requests in flight at most.', labels: [], rows: (s) => [[{}, s.queue.depth]] });
  gaugeFamily(registry, snap, { name: 'onestack_queue_slots', help: 'Data slab slots (queue.slots) shared by the requests in flight.', labels: [], rows: (s) => [[{}, s.queue.slots]] });
  counterFamily(registry, snap, {
    name: 'onestack_io_copies_total', help: 'User-space copies of payload bytes (NBD payloads not read in place, volume-layer copies).', labels: [],
    rows: (s) => (s.io?.copies === undefined ? [] : [[{}, s.io.copies.copies]]),
  });
  counterFamily(registry, snap, {
    name: 'onestack_io_copied_bytes_total', help: 'Payload bytes copied in user space.', labels: [],
    rows: (s) => (s.io?.copies === undefined ? [] : [[{}, s.io.copies.bytesCopied]]),
  });
  counterFamily(registry, snap, {
    name: 'onestack_fast_lane_reads_total', help: 'Reads tried inline from the page cache: hit = served there, miss = went to the queue. Absent when the lane is off.', labels: ['result'],
    rows: (s) => {
      const lane = s.io?.fastLane;
      return lane === undefined || lane === null ? [] : [[{ result: 'hit' }, lane.hits], [{ result: 'miss' }, lane.misses]];
    },
  });
}
