// The part of the Engine the API server uses. A structural interface, so the server can be
// tested against the real Engine and reasoned about without the whole class.
import type { EventEmitter } from 'node:events';
import type { CheckpointStatus, DiscoverOptions, DiscoverResult, ElementStatus, EngineStatus, RebuildStatus } from '@onestack/engine';
import type { AddElementSpec, CreateVolumeSpec, LayoutName } from './validate.js';

export interface ApiEngine {
  status(): EngineStatus;
  createVolume(spec: CreateVolumeSpec): Promise<unknown>;
  deleteVolume(name: string): Promise<void>;
  addElement(spec: AddElementSpec): Promise<ElementStatus>;
  removeElement(name: string): Promise<void>;
  failElement(name: string): Promise<void>;
  /** What an NBD server or iSCSI portal offers; `uri` carries no secret (opts.secret does). */
  discover(uri: string, opts: DiscoverOptions): Promise<DiscoverResult>;
  /** Starts a scrub; rejects with EngineError conflict/invalid/not-found when it cannot. */
  startScrub(volume: string, opts: ScrubRequest): Promise<ScrubStartedView>;
  /** Stops the volume's scrub; false when none was running. */
  cancelScrub(volume: string): Promise<boolean>;
  /**
   * Replaces a volume's element with another and rebuilds onto it; resolves once the rebuild has
   * started. Optional so the API builds before the engine has it (the route answers 501 then).
   */
  replaceElement?(volume: string, oldElement: string, newElement: string): Promise<void>;
  /** Adds a raid1 leg (rebuilt in the background) / removes one; optional like replaceElement (501 without them). */
  addMember?(volume: string, element: string): Promise<void>;
  removeMember?(volume: string, element: string): Promise<void>;
  /** Grows a volume into room its elements have; optional like replaceElement (501 without it). */
  growVolume?(name: string, spec: { sizeBytes: number }): Promise<unknown>;
  /** Starts an online reshape (more elements, raid1→raid5, raid5→raid6); optional like replaceElement (501 without it). */
  reshapeVolume?(name: string, spec: { add: string[]; layout?: LayoutName; maxMiBPerSec?: number; resume?: boolean }): Promise<unknown>;
  /** Makes the volume the boot volume (the empty NBD export name); optional like replaceElement (501 without it). */
  setBootVolume?(name: string): Promise<void>;
  /** Checkpoints (dirty bitmaps for incremental backup); optional like replaceElement (501 without them). */
  checkpoint?(volume: string, name?: string): Promise<CheckpointStatus>;
  checkpoints?(volume: string, opts: { all?: boolean }): readonly CheckpointStatus[];
  deleteCheckpoint?(volume: string, name: string): Promise<void>;
  /** Emits 'change' whenever volumes or elements change state, and at most every 250 ms of rebuild or scrub progress. */
  readonly events: EventEmitter;
}

export type LogLevel = 'info' | 'warn' | 'error';
export type Log = (level: LogLevel, message: string) => void;

export interface ScrubRequest { repair?: boolean; maxMiBPerSec?: number }

/** What POST /volumes/NAME/scrub answers (202): the run's identity and its first progress. */
export interface ScrubStartedView {
  readonly volume: string;
  readonly kind: 'check' | 'repair';
  readonly startedMs: number;
  readonly progress: RebuildStatus;
}
