// Public shapes of the embedding API: status (same as `onestack status --json`) and errors.
import type { ElementKind, Layout } from './config/types.js';
import type { ElementState } from './meta/types.js';

export type VolumeState = 'optimal' | 'degraded' | 'rebuilding' | 'failed';

export interface ElementStatus {
  readonly name: string;
  readonly kind: ElementKind;
  readonly uri: string;
  readonly state: ElementState;
  readonly sizeBytes: number;
  readonly volume: string | null;
  readonly role: number | null;
  readonly errors: number;
}

export interface VolumeStatus {
  readonly name: string;
  readonly layout: Layout;
  readonly sizeBytes: number;
  readonly chunkKiB: number;
  readonly order: string;
  readonly boot: boolean;
  readonly state: VolumeState;
  readonly rebuild: { readonly percent: number } | null;
  readonly elements: readonly ElementStatus[];
  readonly stats: { readonly readOps: number; readonly writeOps: number; readonly readBytes: number; readonly writeBytes: number; readonly errors: number };
}

export interface PoolStatus {
  readonly threads: number;
  /** Requests waiting in this pool's queue(s) right now. */
  readonly queueDepth: number;
}

export interface EngineStatus {
  readonly volumes: readonly VolumeStatus[];
  readonly elements: readonly ElementStatus[];
  readonly pools: { readonly top: PoolStatus; readonly middle: PoolStatus; readonly bottom: PoolStatus; readonly remote: PoolStatus };
  readonly queue: { readonly depth: number; readonly inFlight: number; readonly slots: number; readonly slotKiB: number };
  readonly native: { readonly backend: 'native' | 'js'; readonly reason?: string };
  readonly dataDir: string;
  /** NBD TLS as configured (nbd.tls): required, optional or off. Never any key material. */
  readonly nbd?: { readonly tls: 'required' | 'optional' | 'off' };
}

export type EngineErrorCode = 'config' | 'not-found' | 'conflict' | 'invalid' | 'io' | 'closed';

/** Every error the engine raises on purpose. `where` names the field/file/element concerned. */
export class EngineError extends Error {
  readonly code: EngineErrorCode;
  readonly where?: string;
  readonly hint?: string;
  constructor(code: EngineErrorCode, message: string, where?: string, hint?: string) {
    super(message);
    this.name = 'EngineError';
    this.code = code;
    if (where !== undefined) this.where = where;
    if (hint !== undefined) this.hint = hint;
  }
}
