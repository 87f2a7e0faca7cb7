// Normalized configuration: what the loader (config/load.ts) produces after validation and
// defaults. Every other module of the engine consumes these types, never raw YAML.
import type { ScrubScheduleConfig, VolumeScrubConfig } from './scrub-schedule.js';
import type { WriteBehindConfig } from './write-behind.js';

export type Layout = 'linear' | 'raid0' | 'raid1' | 'raid10' | 'raid5' | 'raid6';
export type QueueOrder = 'fifo' | 'lifo' | 'priority';
export type ElementCache = 'writeback' | 'none';
export type ElementKind = 'local' | 'nbd' | 'iscsi';

export interface ListenAddress {
  readonly host: string;
  readonly port: number;
}

/** nbd.listen: a TCP address, or (written unix:PATH) a Unix socket at an absolute path. */
export type NbdListenAddress = ListenAddress | { readonly socketPath: string };

/** A parsed element URI. Secrets are never part of this object's printable form. */
export type ElementLocation =
  | { readonly kind: 'local'; readonly path: string }
  | { readonly kind: 'nbd'; readonly uri: string; readonly tls: boolean; readonly host?: string; readonly port?: number; readonly socketPath?: string; readonly exportName: string; readonly rbd?: RbdTarget }
  | { readonly kind: 'iscsi'; readonly uri: string; readonly host: string; readonly port: number; readonly targetIqn: string; readonly lun: number; readonly user?: string };

/** rbd://POOL/IMAGE: librbd in this process or an NBD element over a gateway socket (remote/rbd-access.ts, config/rbd.ts). */
export interface RbdTarget {
  readonly pool: string; readonly image: string; readonly conf: string; readonly id: string; readonly keyring?: string; readonly runDir: string;
  /** `?path=`: absent = librbd where it loads, else the gateway (remote/rbd-native.ts rbdPathChoice). */
  readonly path?: 'librbd' | 'gateway';
}

export interface ElementConfig {
  readonly name: string;
  /** The URI as written by the user, with any secret masked. */
  readonly uri: string;
  readonly location: ElementLocation;
  readonly cache: ElementCache;
  readonly timeoutMs: number;
  readonly secretFile?: string;
  /** Create a sparse local file of this size (bytes, data area) if it does not exist. */
  readonly createSizeBytes?: number;
  /** CHAP secret given in the URI (USER%SECRET@). Non-enumerable: never serialized or printed. */
  readonly secret?: string;
  /** nbds:// only: PEM files (absolute paths) for CA verification and an optional client certificate. */
  readonly tls?: ElementTlsConfig;
  /** nbd only: connections per remote worker when the server allows multi-conn (default 1). */
  readonly connections?: number;
  /** iscsi only, mutual CHAP: the target's user name and the file holding its secret. */
  readonly targetUser?: string;
  readonly targetSecretFile?: string;
  /** iscsi only: header/data digest we offer first (default none). */
  readonly digest?: 'none' | 'crc32c';
  /** nbd/iscsi only: a local write-through read cache for the element (workers/cache-tier.ts). */
  readonly cacheTier?: CacheTierConfig;
}

/** `elements[].cacheTier`: a local file caching a remote element's blocks; volatile (emptied at every start). */
export interface CacheTierConfig {
  /** Absolute path of the cache file (created or truncated at start). */
  readonly path: string;
  readonly sizeMiB: number;
  /** Cache block size: a power of two from 4 to 1024 (default 4, raised so the block map stays bounded). */
  readonly blockKiB: number;
}

export interface ElementTlsConfig {
  readonly ca?: string;
  readonly cert?: string;
  readonly key?: string;
}

export interface VolumeConfig {
  readonly name: string;
  readonly layout: Layout;
  /** Element names, in role order (role 0 first). */
  readonly elements: readonly string[];
  readonly chunkKiB: number;
  readonly order: QueueOrder;
  readonly boot: boolean;
  /** Caps the volume's size; absent = the layout's full capacity. */
  readonly sizeBytes?: number;
  /** Hot spares: unused elements a failed leg is rebuilt onto automatically (mirrors). */
  readonly spares?: readonly string[];
  /** Write-intent bitmap region size for a new bitmap (mirrors; default 4096 KiB). */
  readonly bitmapRegionKiB?: number;
  /** Per-block checksums on every element (docs/integrity.md); present only when true. raid1, raid10, raid5 and raid6. */
  readonly integrity?: boolean;
  /** Scheduled scrubs: overrides of the top-level `scrub` default (config/scrub-schedule.ts). */
  readonly scrub?: VolumeScrubConfig;
  /** One raid1 leg written after the acknowledgement, with a bounded lag (config/write-behind.ts). */
  readonly writeBehind?: WriteBehindConfig;
}

/** Resyncs and rebuilds (durable/keeper.ts). */
export interface RebuildConfig {
  /** Copy throughput limit, so foreground I/O keeps priority; 0 = unthrottled. */
  readonly maxMiBPerSec: number;
}

export interface PoolsConfig {
  /** Top driver threads. The top driver lives where the sockets are (main thread). */
  readonly top: number;
  /** Middle driver threads; 0 runs the middle stage inline on the top thread. */
  readonly middle: number;
  readonly bottom: number;
  /** Remote bottom threads (async socket loops for nbd/iscsi elements); element i is served by thread i % remote. */
  readonly remote: number;
}

export interface QueueConfig {
  /** Request descriptors in the shared ring (power of two). */
  readonly depth: number;
  /** Data slab slots and their size; requests larger than one slot are split. */
  readonly slots: number;
  readonly slotKiB: number;
}

/** nbd.tls: PEM file paths (absolute), read when the NBD export starts, never kept in the config. */
export interface TlsConfig {
  readonly cert?: string;
  readonly key?: string;
  readonly ca?: string;
  /** Refuse every option but STARTTLS/ABORT before the upgrade (proto.md's FORCEDTLS). */
  readonly require: boolean;
  /** Clients must present a certificate signed by `ca`. */
  readonly verifyClient: boolean;
}

/** nbd: what one client may hold (defaults and ranges: @onestack/nbd DEFAULT_NBD_LIMITS, NBD_LIMIT_RANGES). */
export interface NbdLimitsConfig {
  /** Connections open at once; more are closed at accept. */
  readonly maxConnections: number;
  /** Largest READ/WRITE (the advertised maximum block size); larger ones get EOVERFLOW. */
  readonly maxRequestBytes: number;
  /** Accept to transmission, TLS included; slower or silent clients are dropped. */
  readonly handshakeTimeoutMs: number;
  /** Requests at the data path per connection; at the cap the socket is not read. */
  readonly inFlightMax: number;
  /** A WRITE's payload must arrive within this once its buffer is ready. */
  readonly payloadTimeoutMs: number;
}

export interface NbdConfig {
  readonly listen: NbdListenAddress;
  readonly tls?: TlsConfig;
  /** Client networks (CIDR or single addresses, IPv4/IPv6); empty = everyone. */
  readonly allow: readonly string[];
  /** Absent in configs built by hand: the server's defaults apply. */
  readonly limits?: NbdLimitsConfig;
}

export interface EngineConfig {
  readonly dataDir: string;
  /** Where the config came from, for error messages; absent for inline/embedded configs. */
  readonly sourcePath?: string;
  readonly nbd: NbdConfig;
  readonly api: { readonly listen: ListenAddress };
  readonly pools: PoolsConfig;
  readonly queue: QueueConfig;
  readonly cache: { readonly readMiB: number };
  /** Absent in configs built by hand: DEFAULT_REBUILD applies. */
  readonly rebuild?: RebuildConfig;
  /** Scheduled scrubs of every redundant volume (config/scrub-schedule.ts); absent = none. */
  readonly scrub?: ScrubScheduleConfig;
  readonly elements: readonly ElementConfig[];
  readonly volumes: readonly VolumeConfig[];
}
