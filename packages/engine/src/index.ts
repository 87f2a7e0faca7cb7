// @onestack/engine: the embeddable storage engine (config, superblocks, assembly, data path, NBD).
export { EngineError } from './api-types.js';
export type { ElementStatus, EngineErrorCode, EngineStatus, PoolStatus, VolumeState, VolumeStatus } from './api-types.js';
export type * from './config/types.js';
export { loadConfig, embeddedDefaultConfig, normalizeConfig, defaultDataDir, DEFAULT_API_LISTEN, DEFAULT_NBD_LISTEN, type ConfigOverrides, type ConfigSource } from './config/load.js';
export { normalizeElement, normalizeVolume, LAYOUTS, ORDERS, CACHES } from './config/validate.js';
export { parseElementUri, parseListen, maskUri, defaultElementName, type ParsedElementUri } from './config/uri.js';
export { DATA_OFFSET_BYTES, SUPERBLOCK_BYTES } from './meta/types.js';
export type { AssembledElement, AssembledVolume, ElementState } from './meta/types.js';
export { crc32c, decodeSuperblock, encodeSuperblock, SuperblockError, type Superblock, type SuperblockErrorKind } from './meta/superblock.js';
export { assembleVolume, markClean, REMOTE_NOT_YET } from './meta/assemble.js';
export { wipeSuperblocks } from './meta/element-io.js';
export { layoutCapacityBytes, layoutSurvives } from './meta/layout.js';
export { ensureDataDir, ensureApiToken, readApiToken, API_TOKEN_FILE } from './state/data-dir.js';
export { readStateFile, writeStateFile, mergeState, STATE_FILE } from './state/state-file.js';
export { Engine, type AddElementSpec, type CreateVolumeSpec, type EngineOpenOptions, type LogFn } from './engine.js';
export { Volume } from './volume.js';
export { startNbdExport, type NbdExportHandle, type NbdExportOptions } from './nbd-export.js';
