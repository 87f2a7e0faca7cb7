// @onestack/queue: lock-free rings, stacks, doorbells and slabs in SharedArrayBuffers, shared
// between worker threads. Knows nothing of the rest of onestack.
export { QueueError, assert, type QueueErrorCode, isPowerOfTwo, nextPowerOfTwo, CAS_RETRY_MAX } from './assert.js';
export {
  Op,
  type OpCode,
  type RequestClass,
  type RequestIdParts,
  VOLUME_INDEX_MAX,
  SEQUENCE_MODULUS,
  isOpCode,
  makeRequestId,
  parseRequestId,
  requestIdHi,
  requestIdLo,
  requestIdFromWords,
} from './ids.js';
export { DESC_WORDS, DESC_BYTES, D, DescStatus, DescFlags, DescriptorTable } from './descriptors.js';
export { Ring, RING_CAPACITY_MAX } from './ring.js';
export { LifoStack, LIFO_CAPACITY_MAX } from './lifo.js';
export { PriorityQueue, PRIORITY_LEVELS_MAX } from './priority.js';
export { type QueuePolicy, PRIORITY_LEVELS, type SubmissionQueue, type Pushable, queueBytes, createQueue, pushSure } from './queue.js';
export { Doorbell, type SleepResult } from './doorbell.js';
export { Slab, IndexPool, alignUp, PAGE_BYTES } from './slab.js';
