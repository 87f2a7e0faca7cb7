// The qemu-nbd gateway of rbd:// elements (config/rbd.ts): started before the element is first
// opened (remoteSpecFor), restarted with back-off when it dies, stopped when its engine closes.
// The engine then reaches the image as an NBD element over the gateway's Unix socket, so our NBD
// client's reconnects, deadlines and the stale/retry logic apply unchanged. It is the path where
// librbd cannot be loaded or the URI asks for it; rbd-access.ts chooses (status `rbd.path`).
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import { connect } from 'node:net';
import type { RbdTarget } from '../config/types.js';
import { rbdFiles } from '../config/rbd.js';
import { EngineError, type ElementRbdStatus } from '../api-types.js';

export type GatewayLog = (level: 'info' | 'warn' | 'error', msg: string) => void;
type GatewayState = 'starting' | 'up' | 'down' | 'stopped';

/** How long ensure() waits for a new gateway to answer; rados gives up on the monitors sooner (MOUNT_TIMEOUT_S). */
export const GATEWAY_READY_MS = 20_000;
const MOUNT_TIMEOUT_S = 15;
const BACKOFF_FIRST_MS = 250;
const BACKOFF_MAX_MS = 30_000;
/** A gateway up this long has recovered: the next death starts the back-off from the beginning. */
const HEALTHY_MS = 10_000;
const STOP_GRACE_MS = 3_000;
const LOG_ROTATE_BYTES = 1 << 20;
/** Our NBD client's connections (up to 16 per remote loop) plus the control plane's short-lived ones: beyond it qemu-nbd stops accepting. */
const SHARED_CLIENTS = 64;

const gateways = new Map<string, RbdGateway>();
let exitHookSet = false;


/** Escapes a value for qemu's rbd: filename, whose separators are ':' (options) and '@' (snapshot). */
function escapeOpt(value: string): string {
  return value.replace(/[\\:@]/g, (c) => `\\${c}`);
}

/** qemu-nbd's argument list: the socket, then the image in qemu's legacy rbd: syntax (the keyring path, never a key). */
export function gatewayArgs(target: RbdTarget, socketPath: string): string[] {
  const opts = [`id=${escapeOpt(target.id)}`, `conf=${escapeOpt(target.conf)}`];
  if (target.keyring !== undefined) opts.push(`keyring=${escapeOpt(target.keyring)}`);
  // Without it, an unreachable cluster holds qemu-nbd in rados_connect for 300 s.
  opts.push(`client_mount_timeout=${MOUNT_TIMEOUT_S}`);
  return [`--socket=${socketPath}`, '--format=raw', '--cache=none', `--shared=${SHARED_CLIENTS}`, '--persistent',
    `rbd:${target.pool}/${target.image}:${opts.join(':')}`];
}

/** True once something accepts a connection on the socket and sends the NBD greeting. */
function answers(socketPath: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(socketPath);
    const done = (ok: boolean): void => { s.destroy(); resolve(ok); };
    s.setTimeout(2000, () => done(false));
    s.once('data', (chunk: Buffer) => done(chunk.subarray(0, 8).toString('latin1') === 'NBDMAGIC'));
    s.once('error', () => done(false));
    s.once('close', () => done(false));
  });
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** The last "qemu-nbd: ..." line the current run wrote (from fromBytes on; qemu-nbd names the failing open there), bounded. */
function lastLogError(logPath: string, fromBytes: number): string | null {
  try {
    const fd = fs.openSync(logPath, 'r');
    try {
      const size = fs.fstatSync(fd).size;
      const len = Math.min(Math.max(0, size - fromBytes), 4096);
      const buf = Buffer.alloc(len);
      fs.readSync(fd, buf, 0, len, size - len);
      const lines = buf.toString('utf8').split('\n').map((l) => l.trim()).filter((l) => l !== '');
      const line = [...lines].reverse().find((l) => l.startsWith('qemu-nbd:')) ?? lines[lines.length - 1];
      return line === undefined ? null : line.slice(0, 400);
    } finally {
      fs.closeSync(fd);
    }
  } catch {
    return null;
  }
}

/** A gateway left running by a daemon that was killed: found by its pid file and command line, stopped. */
async function stopOrphan(pidPath: string, socketPath: string, log: GatewayLog): Promise<void> {
  let pid: number;
  try {
    pid = Number(fs.readFileSync(pidPath, 'utf8').trim());
  } catch {
    return;
  }
  let cmdline = '';
  try {
    cmdline = fs.readFileSync(`/proc/${pid}/cmdline`, 'latin1');
  } catch { /* gone */ }
  if (Number.isInteger(pid) && pid > 1 && cmdline.includes('qemu-nbd') && cmdline.includes(socketPath)) {
    log('warn', `rbd gateway: stopping qemu-nbd pid ${pid} left by an earlier run (${socketPath})`);
    try { process.kill(pid, 'SIGTERM'); } catch { /* gone */ }
    for (let i = 0; i < 30 && fs.existsSync(`/proc/${pid}`); i++) await sleep(100);
    try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ }
  }
  fs.rmSync(pidPath, { force: true });
}

class RbdGateway {
  state: GatewayState = 'starting';
  child: ChildProcess | null = null;
  restarts = 0;
  lastError: string | null = null;
  /** The first start (answering, exited or timed out); later restarts are not waited for. */
  started: Promise<void> = Promise.resolve();
  private backoffMs = BACKOFF_FIRST_MS;
  private upSinceMs = 0;
  /** Where this run's output starts in the log, so an old run's error is not taken for this one's. */
  private logStartBytes = 0;
  private timer: NodeJS.Timeout | null = null;
  private readonly files: ReturnType<typeof rbdFiles>;
  readonly label: string;

  constructor(readonly target: RbdTarget, readonly socketPath: string, readonly element: string, private readonly log: GatewayLog) {
    this.files = { ...rbdFiles(target), socketPath };
    this.label = `rbd gateway ${target.pool}/${target.image} (element ${element})`;
  }

  /** Starts qemu-nbd; resolves when it answers, exits or GATEWAY_READY_MS pass (then it keeps trying). */
  async start(): Promise<void> {
    fs.mkdirSync(this.files.dir, { recursive: true, mode: 0o700 });
    fs.mkdirSync(this.socketPath.slice(0, this.socketPath.lastIndexOf('/')), { recursive: true, mode: 0o700 });
    await stopOrphan(this.files.pidPath, this.socketPath, this.log);
    await this.spawnAndWait();
  }

  private async spawnAndWait(): Promise<void> {
    const child = this.spawnOnce();
    const deadline = Date.now() + GATEWAY_READY_MS;
    while (this.child === child && Date.now() < deadline) {
      if (await answers(this.socketPath)) {
        if (this.child === child) this.setUp();
        return;
      }
      await sleep(100);
    }
    if (this.child === child && this.state === 'starting') {
      this.lastError = `qemu-nbd did not answer within ${GATEWAY_READY_MS} ms`;
      this.log('warn', `${this.label}: ${this.lastError}; still waiting`);
      void this.waitUp(child);
    }
  }

  /** Keeps polling a slow start in the background, so the state turns up when it finally answers. */
  private async waitUp(child: ChildProcess): Promise<void> {
    while (this.child === child && this.state === 'starting') {
      if (await answers(this.socketPath)) { if (this.child === child) this.setUp(); return; }
      await sleep(1000);
    }
  }

  private spawnOnce(): ChildProcess {
    fs.rmSync(this.socketPath, { force: true });
    try {
      if (fs.statSync(this.files.logPath).size > LOG_ROTATE_BYTES) fs.renameSync(this.files.logPath, `${this.files.logPath}.1`);
    } catch { /* no log yet */ }
    const logFd = fs.openSync(this.files.logPath, 'a', 0o600);
    let child: ChildProcess;
    try {
      fs.writeSync(logFd, `--- ${new Date().toISOString()} starting qemu-nbd for ${this.target.pool}/${this.target.image}\n`);
      this.logStartBytes = fs.fstatSync(logFd).size;
      // Own process group: a Ctrl-C at the terminal must not stop the gateway before the engine's
      // last flush and clean superblocks went through it; close() stops it afterwards.
      child = spawn('qemu-nbd', gatewayArgs(this.target, this.socketPath), { stdio: ['ignore', logFd, logFd], detached: true });
    } finally {
      fs.closeSync(logFd);
    }
    child.unref();
    this.child = child;
    this.state = 'starting';
    setExitHook();
    if (child.pid !== undefined) fs.writeFileSync(this.files.pidPath, `${child.pid}\n`);
    child.once('error', (err) => this.onExit(child, `cannot start qemu-nbd: ${err.message}`));
    child.once('exit', (code, signal) => this.onExit(child, signal !== null ? `killed by ${signal}` : `exit status ${String(code)}`));
    return child;
  }

  private setUp(): void {
    if (this.state === 'up') return;
    this.state = 'up';
    this.upSinceMs = Date.now();
    this.lastError = null;
    this.log('info', `${this.label}: up (qemu-nbd pid ${String(this.child?.pid)}, ${this.socketPath})`);
  }

  private onExit(child: ChildProcess, how: string): void {
    if (this.child !== child) return;
    this.child = null;
    fs.rmSync(this.files.pidPath, { force: true });
    if (this.state === 'stopped') return;
    if (this.state === 'up' && Date.now() - this.upSinceMs >= HEALTHY_MS) this.backoffMs = BACKOFF_FIRST_MS;
    const why = lastLogError(this.files.logPath, this.logStartBytes);
    const error = `qemu-nbd ${how}${why !== null && why.startsWith('qemu-nbd:') ? `: ${why.slice('qemu-nbd:'.length).trim()}` : ''}`;
    // Logged once per state change: a gateway failing the same way at every retry says so once.
    if (this.state === 'up' || error !== this.lastError) this.log('warn', `${this.label}: ${error}; restarting with back-off (up to ${BACKOFF_MAX_MS / 1000} s)`);
    this.state = 'down';
    this.lastError = error;
    this.scheduleRestart();
  }

  private scheduleRestart(): void {
    const delay = this.backoffMs;
    this.backoffMs = Math.min(BACKOFF_MAX_MS, this.backoffMs * 2);
    this.timer = setTimeout(() => {
      this.timer = null;
      if (this.state !== 'down') return;
      this.restarts++;
      this.spawnAndWait().catch((err: Error) => {
        // Not even spawned (log file, data dir): the same back-off, logged once per new reason.
        const error = `cannot restart qemu-nbd: ${err.message}`;
        if (error !== this.lastError) this.log('error', `${this.label}: ${error}`);
        this.lastError = error;
        if (this.state === 'stopped') return;
        this.state = 'down';
        this.scheduleRestart();
      });
    }, delay);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    this.state = 'stopped';
    if (this.timer !== null) clearTimeout(this.timer);
    const child = this.child;
    if (child === null || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), STOP_GRACE_MS);
    await exited;
    clearTimeout(timer);
    this.child = null;
    fs.rmSync(this.files.pidPath, { force: true });
    this.log('info', `${this.label}: stopped`);
  }

  /** The image's ownership lock is lost (rbd-lock.ts): killed at once and never restarted, so nothing more of ours reaches the image. */
  fence(why: string): void {
    this.state = 'stopped';
    this.lastError = why;
    if (this.timer !== null) clearTimeout(this.timer);
    try { this.child?.kill('SIGKILL'); } catch { /* gone */ }
    this.log('error', `${this.label}: ${why}; stopped for good`);
  }

  /** At process exit: no waiting possible, so a SIGTERM (qemu-nbd flushes on it) and the pid file removed. */
  killNow(): void {
    if (this.child === null) return;
    try { this.child.kill('SIGTERM'); } catch { /* gone */ }
    fs.rmSync(this.files.pidPath, { force: true });
  }

  status(): ElementRbdStatus {
    return {
      path: 'gateway', pool: this.target.pool, image: this.target.image, pid: this.state === 'up' ? (this.child?.pid ?? null) : null,
      restarts: this.restarts, state: this.state, ...(this.lastError !== null ? { error: this.lastError } : {}),
    };
  }
}

/** A process exit (normal or by an uncaught error) takes the gateways along; a SIGKILL leaves them to stopOrphan. */
function setExitHook(): void {
  if (exitHookSet) return;
  exitHookSet = true;
  process.once('exit', () => {
    for (const gw of gateways.values()) gw.killNow();
  });
}

/**
 * Starts the gateway of the image behind socketPath unless it runs already. Never throws for a
 * gateway that does not come up: the supervisor keeps retrying, the connect that follows fails
 * with the gateway's own error (explainGateway), and a mirror leg comes up failed.
 */
export async function ensureRbdGateway(target: RbdTarget, socketPath: string, element: string, log: GatewayLog): Promise<void> {
  const running = gateways.get(socketPath);
  if (running !== undefined) {
    if (running.element !== element) throw new EngineError('conflict', `rbd image ${target.pool}/${target.image} is already element ${running.element}`);
    return running.started; // a caller arriving during the first start waits for it too
  }
  const gw = new RbdGateway(target, socketPath, element, log);
  gateways.set(socketPath, gw);
  gw.started = gw.start();
  try {
    await gw.started;
  } catch (err) { // the data dir not writable, say: nothing left running, the next open tries again
    gateways.delete(socketPath);
    await gw.stop();
    throw err;
  }
}

/** Whether a gateway serves socketPath, and for which element. */
export function rbdGatewayElement(socketPath: string): string | undefined {
  return gateways.get(socketPath)?.element;
}

/** Stops one gateway (element removed). */
export async function stopRbdGatewayOf(socketPath: string): Promise<void> {
  const gw = gateways.get(socketPath);
  if (gw === undefined) return;
  gateways.delete(socketPath);
  await gw.stop();
}

/** Stops every gateway of the engine whose data dir is runDir (engine closed or failed to open). */
export async function stopRbdGateways(runDir: string): Promise<void> {
  const mine = [...gateways.entries()].filter(([, gw]) => gw.target.runDir === runDir);
  for (const [key] of mine) gateways.delete(key);
  await Promise.all(mine.map(([, gw]) => gw.stop()));
}

/** Kills the gateway for good (its image's ownership lock was lost). */
export function fenceRbdGateway(socketPath: string, why: string): void {
  gateways.get(socketPath)?.fence(why);
}

/** The gateway's status, or a stopped one. */
export function rbdGatewayStatus(target: RbdTarget, socketPath: string): ElementRbdStatus {
  return gateways.get(socketPath)?.status() ?? { path: 'gateway', pool: target.pool, image: target.image, pid: null, restarts: 0, state: 'stopped' };
}

/** A failed connect to a gateway's socket, said as what the gateway is doing (on the thread that runs it). */
export function explainGateway(socketPath: string | undefined, err: unknown): unknown {
  const gw = socketPath === undefined ? undefined : gateways.get(socketPath);
  if (gw === undefined || gw.state === 'up' || !(err instanceof Error)) return err;
  const why = gw.state === 'starting' ? 'is starting' : `is down (${gw.lastError ?? 'no error recorded'}), restarts so far: ${gw.restarts}`;
  const out = new Error(`${gw.label} ${why}: ${err.message}`);
  if ('code' in err) Object.assign(out, { code: (err as { code: unknown }).code });
  return out;
}
