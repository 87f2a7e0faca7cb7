// @onestack/iscsi: an iSCSI initiator (RFC 7143) presenting one LUN as a block device, plus the
// pure codecs it is built from (exported for tests and fuzzing).

export { IscsiClient, defaultInitiatorIqn, ISCSI_DEFAULT_PORT, lbaRunsToExtents, type BlockDeviceInfo, type IscsiClientOptions, type IscsiExtent } from './client.js';
export { discoverIscsiTargets, parseSendTargets, type DiscoveredTarget, type DiscoveryOptions } from './discovery.js';
export { RemoteError, IscsiProtocolError, type RemoteErrorCode, type IscsiProtocolErrorCode } from './errors.js';
export { LoginNegotiator, type ChapCredentials, type LoginConfig, type LoginOutcome, type LoginStep } from './login.js';
export * from './codec/pdu.js';
export * from './codec/frame.js';
export * from './codec/crc32c.js';
export * from './codec/text.js';
export * from './codec/scsi.js';
export * from './codec/sense.js';
export * from './codec/chap.js';
