// @onestack/native: Linux I/O primitives (O_DIRECT, fallocate, block-device size, io_uring) through the
// napi-rs addon in crates/onestack-native, with pure-JS fallbacks when it is not built.
export type { NativeBackend, NativeInfo } from './loader.js';
export { nativeInfo } from './loader.js';
export { addressMod4096, probeAddressMod4096 } from './address.js';
export type { OpenFileOptions } from './file.js';
export { openFile, punchHole, zeroRange } from './file.js';
export { deviceSizeBytes, isBlockDevice } from './device.js';
export type { RdmaDevice, RdmaLibrary, RdmaPort, RdmaProbe } from './rdma.js';
export { formatRdmaLine, rdmaProbe } from './rdma.js';
export type { IoBackendInfo, OpenUring, UringOpCode, UringRing } from './uring.js';
export { ioBackendInfo, openUring, putUringRecord, URING_ENTRIES_MAX, URING_RECORD_F64S, UringOp } from './uring.js';
export type { PreadNowait } from './nowait.js';
export { preadNowait } from './nowait.js';
export { sparseSeek, sparseSeekUnavailable, type SparseSeek } from './seek.js';
export { blockChecksums, crc32cBlocksJs, CHECKSUM_BLOCK_BYTES_MAX, CHECKSUM_BLOCK_BYTES_MIN, type BlockChecksums, type ChecksumAlgo, type Crc32cBlocks, type Xxh64Blocks } from './checksum.js';
export { crc32c, crc32cUpdate } from './crc32c.js';
export type { NativeRbdImage, RbdDone, RbdTargetOptions } from './rbd.js';
export { openRbdImage, rbdFence, rbdUnavailable } from './rbd.js';
