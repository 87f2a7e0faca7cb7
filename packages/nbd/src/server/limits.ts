// What one client may hold, and how hitting a limit is reported. Each limit has a default, a
// range the engine's config loader checks against, and a key under which hits are logged: one
// line at the first hit, then at most one summary line per interval with the count of the hits
// it did not log, so a flood of refused clients cannot flood the log.

export type LogLevel = 'info' | 'warn' | 'error';
export type LogFn = (level: LogLevel, msg: string) => void;

export interface NbdLimits {
  /** Connections open at once; more are closed at accept. */
  readonly maxConnections: number;
  /** Largest READ/WRITE payload (the advertised maximum block size); above it EOVERFLOW. */
  readonly maxRequestBytes: number;
  /** From accept to transmission (TLS included); slower or silent clients are dropped. */
  readonly handshakeTimeoutMs: number;
  /** Requests at the backend per connection; at the cap the socket is not read. */
  readonly inFlightMax: number;
  /** From a WRITE's buffer being ready to its last payload byte; a client that stalls is dropped. */
  readonly payloadTimeoutMs: number;
}

export const DEFAULT_NBD_LIMITS: NbdLimits = {
  maxConnections: 64,
  maxRequestBytes: 32 * 1024 * 1024,
  handshakeTimeoutMs: 10_000,
  inFlightMax: 64,
  payloadTimeoutMs: 60_000,
};

/** Inclusive bounds of each limit (maxRequestBytes must also be a power of two). */
export const NBD_LIMIT_RANGES: { readonly [K in keyof NbdLimits]: readonly [number, number] } = {
  maxConnections: [1, 65_536],
  maxRequestBytes: [4096, 32 * 1024 * 1024],
  handshakeTimeoutMs: [100, 600_000],
  inFlightMax: [1, 4096],
  payloadTimeoutMs: [100, 3_600_000],
};

/** Defaults filled in and every value checked; throws RangeError naming the first bad one. */
export function resolveLimits(given: Partial<NbdLimits>): NbdLimits {
  const limits = { ...DEFAULT_NBD_LIMITS };
  for (const key of Object.keys(NBD_LIMIT_RANGES) as (keyof NbdLimits)[]) {
    const value = given[key] ?? DEFAULT_NBD_LIMITS[key];
    const [min, max] = NBD_LIMIT_RANGES[key];
    if (!Number.isInteger(value) || value < min || value > max) throw new RangeError(`NbdServerOptions.${key}: ${value} is out of range (${min}..${max})`);
    limits[key] = value;
  }
  if ((limits.maxRequestBytes & (limits.maxRequestBytes - 1)) !== 0) throw new RangeError(`NbdServerOptions.maxRequestBytes: ${limits.maxRequestBytes} is not a power of two`);
  return limits;
}

/** Which limit a log line is about; each is rate-limited on its own. */
export type LimitKey = 'allow' | 'max-connections' | 'handshake-timeout' | 'in-flight' | 'request-size' | 'payload-timeout';

interface Window {
  suppressed: number;
  level: LogLevel;
  lastMessage: string;
  timer: NodeJS.Timeout;
}

export const LIMIT_LOG_INTERVAL_MS = 10_000;

/**
 * One line per limit per interval: the first hit is logged at once; hits within the next
 * `intervalMs` are counted, and when it ends one line gives their number and the last of them.
 * While hits keep coming that repeats every interval; a quiet interval closes the window.
 */
export class LimitLog {
  private readonly windows = new Map<LimitKey, Window>();

  constructor(private readonly log: LogFn, private readonly intervalMs = LIMIT_LOG_INTERVAL_MS) {
    if (!(intervalMs > 0)) throw new RangeError('LimitLog interval must be positive');
  }

  note(key: LimitKey, level: LogLevel, message: string): void {
    const open = this.windows.get(key);
    if (open !== undefined) {
      open.suppressed += 1;
      open.lastMessage = message;
      if (level === 'warn' || level === 'error') open.level = level;
      return;
    }
    this.log(level, message);
    this.open(key, level, message);
  }

  /** Logs what is still counted and stops the timers (server close). */
  close(): void {
    for (const key of [...this.windows.keys()]) this.flush(key, false);
  }

  private open(key: LimitKey, level: LogLevel, message: string): void {
    const timer = setTimeout(() => this.flush(key, true), this.intervalMs);
    timer.unref(); // a pending summary line must not keep the process alive
    this.windows.set(key, { suppressed: 0, level, lastMessage: message, timer });
  }

  private flush(key: LimitKey, reopen: boolean): void {
    const w = this.windows.get(key);
    if (w === undefined) return;
    clearTimeout(w.timer);
    this.windows.delete(key);
    if (w.suppressed === 0) return;
    this.log(w.level, `${w.lastMessage} [${w.suppressed} more like this not logged, ${Math.round(this.intervalMs / 1000)} s interval]`);
    if (reopen) this.open(key, w.level, w.lastMessage);
  }
}
