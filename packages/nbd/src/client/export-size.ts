// The export's size as an NbdClient knows it, and how it learns a new one: its own RESIZE, a
// side handshake (refresh, size-probe.ts: NBD has no server-to-client notification, so the client
// must ask), a periodic refresh (watchSizeMs), or a reconnect that found the export larger.
import { EventEmitter } from 'node:events';
import { probeExportSize } from './size-probe.js';
import type { BlockDeviceInfo, NbdClientOptions } from './types.js';

/** A request past the end makes the client ask for the size at most this often. */
const RANGE_REFRESH_MIN_MS = 1000;

export class ExportSize {
  /** 'size' (sizeBytes, previousBytes) whenever the known size changes. */
  readonly events = new EventEmitter();
  private probe: Promise<number> | undefined;
  private timer: NodeJS.Timeout | undefined;
  /** When the last probe for a request past the end started (mayAskFor's rate limit). */
  private startedMs = 0;

  constructor(
    private current: BlockDeviceInfo,
    private readonly opts: NbdClientOptions,
    private readonly where: string,
    private readonly signal: AbortSignal,
    private readonly log: (line: string) => void,
  ) {}

  get info(): BlockDeviceInfo {
    return this.current;
  }

  /** A new size for every later check (and block status bounds, read live by the connections). */
  adopt(sizeBytes: number): void {
    const previousBytes = this.current.sizeBytes;
    if (sizeBytes === previousBytes) return;
    this.current = { ...this.current, sizeBytes };
    this.log(`the export's size changed from ${previousBytes} to ${sizeBytes} bytes`);
    this.events.emit('size', sizeBytes, previousBytes);
  }

  /**
   * Whether a request of [offset, +length) past the end as known should first ask for the size
   * (the export may have grown): a well-formed range, and at most one probe started a second.
   */
  mayAskFor(offsetBytes: number, lengthBytes: number): boolean {
    if (!(Number.isSafeInteger(offsetBytes) && Number.isSafeInteger(lengthBytes) && offsetBytes >= 0 && lengthBytes >= 0)) return false;
    if (offsetBytes + lengthBytes <= this.current.sizeBytes) return false;
    return this.probe !== undefined || Date.now() - this.startedMs >= RANGE_REFRESH_MIN_MS;
  }

  /** One side handshake at a time; concurrent callers share it. `pastEnd`: asked for by a request past the end (rate-limited). */
  refresh(pastEnd = false): Promise<number> {
    if (pastEnd && this.probe === undefined) this.startedMs = Date.now();
    this.probe ??= probeExportSize(this.opts, this.where, this.signal).then((found) => {
      this.adopt(found.sizeBytes);
      return found.sizeBytes;
    }).finally(() => { this.probe = undefined; });
    return this.probe;
  }

  /** opts.watchSizeMs: `refresh` on a timer (unref'd: it keeps no process alive) until stop(). */
  watch(refresh: () => Promise<number>): void {
    const everyMs = this.opts.watchSizeMs;
    if (everyMs === undefined || this.timer !== undefined) return;
    this.timer = setInterval(() => {
      refresh().catch((err: Error) => this.log(`size check failed: ${err.message}`));
    }, everyMs);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }
}
