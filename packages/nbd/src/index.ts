// @onestack/nbd: the NBD protocol. Server side today; the codecs serve a client as well.

export * from './backend.js';
export * from './constants.js';
export { NbdProtocolError, type NbdProtocolErrorCode, type Decoded } from './errors.js';
export { ByteAccumulator } from './codec/accumulator.js';
export * from './codec/handshake.js';
export * from './codec/transmission.js';
export * from './codec/meta-context.js';
export * from './codec/extended.js';
export * from './codec/block-status.js';
export { createNbdServer, type NbdServer, type NbdServerOptions, type NbdServerStats } from './server/server.js';
export { describeTarget, UNIX_PATH_BYTES_MAX, type NbdBoundAddress, type NbdListenTarget } from './server/listener.js';
export type { LogFn } from './server/connection.js';
export { DEFAULT_NBD_LIMITS, LIMIT_LOG_INTERVAL_MS, LimitLog, NBD_LIMIT_RANGES, resolveLimits, type LimitKey, type NbdLimits } from './server/limits.js';
export { cidrContains, createAllowList, createPeerFilter, parseAddress, parseCidr, type Cidr, type PeerTransport } from './server/allow.js';
export { ServerHandshake, transmissionFlagsFor, type HandshakeConfig, type HandshakeStep, type TransmissionSetup } from './server/handshake.js';
export { checkRequest } from './server/validate.js';
export { MetaContextNegotiation, listMatches, offeredContexts, setMatches, type SelectedContext } from './server/meta-context.js';
export { BLOCK_STATUS_EXTENTS_MAX, BlockStatusContractError, blockStatusQuery, blockStatusReply, extentsProblem } from './server/block-status.js';
export { createMemoryExport, createMemoryProvider, type MemoryContextFn, type MemoryExport, type MemoryExportOptions } from './memory.js';
export { type NbdServerTlsOptions } from './server/tls.js';
export type { TlsMode } from './server/handshake.js';
export { NbdClient, deviceInfoFrom } from './client/client.js';
export { listNbdExports } from './client/connect.js';
export { RemoteError, type RemoteErrorCode } from './client/errors.js';
export type { BlockDeviceInfo, NbdClientOptions, NbdClientTlsOptions } from './client/types.js';
export * from './codec/client-handshake.js';
export * from './codec/client-replies.js';
