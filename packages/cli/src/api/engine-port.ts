// The part of the Engine the API server uses. A structural interface, so the server can be
// tested against the real Engine and reasoned about without the whole class.
import type { EventEmitter } from 'node:events';
import type { DiscoverOptions, DiscoverResult, ElementStatus, EngineStatus } from '@onestack/engine';
import type { AddElementSpec, CreateVolumeSpec } from './validate.js';

export interface ApiEngine {
  status(): EngineStatus;
  createVolume(spec: CreateVolumeSpec): Promise<unknown>;
  deleteVolume(name: string): Promise<void>;
  addElement(spec: AddElementSpec): Promise<ElementStatus>;
  removeElement(name: string): Promise<void>;
  failElement(name: string): Promise<void>;
  /** What an NBD server or iSCSI portal offers; `uri` carries no secret (opts.secret does). */
  discover(uri: string, opts: DiscoverOptions): Promise<DiscoverResult>;
  /** Emits 'change' whenever volumes or elements change state. */
  readonly events: EventEmitter;
}

export type LogLevel = 'info' | 'warn' | 'error';
export type Log = (level: LogLevel, message: string) => void;
