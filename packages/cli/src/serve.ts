// `onestack serve`: open the engine, export its volumes over NBD, serve the API and page, print
// the banner and `onestack: ready`; on SIGINT/SIGTERM close everything within a bounded time.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Engine, EngineOpenOptions, NbdExportHandle, NbdTlsMode } from '@onestack/engine';
import type { NbdBoundAddress, NbdListenTarget, NbdServer } from '@onestack/nbd';
import { startApiServer, type ApiServer } from './api/server.js';
import type { Log, LogLevel } from './api/engine-port.js';
import { checkNbdListenFlag, formatHostPort, helpHint, parseCommandArgs, parseHostPort, type HostPort } from './args.js';
import { clearActivation, readActivation, type ActivationFds } from './socket-activation.js';
import { TakeoverChild } from './takeover-child.js';
import { TAKEOVER_FDS_ENV, takeOver, type TakeoverHost } from './takeover.js';
import { cliVersion } from './version.js';
import { CliError, usageError, type ExitCode } from './errors.js';
import { HELP } from './help.js';
import type { CliIo } from './io.js';
import { formatBytes } from './render.js';

const SHUTDOWN_MS_MAX = 15_000;
const API_CLOSE_MS = 1_000;

interface Running { engine?: Engine; nbd?: NbdExportHandle; api?: ApiServer; apiFd?: number }

export async function serveCommand(argv: readonly string[], io: CliIo): Promise<ExitCode> {
  const args = parseCommandArgs('serve', argv, {
    config: { type: 'string' }, 'data-dir': { type: 'string' }, nbd: { type: 'string' }, api: { type: 'string' },
    help: { type: 'boolean', short: 'h' },
  });
  if (args.values['help'] === true) { io.stdout(HELP['serve'] ?? ''); return 0; }
  if (args.positionals.length > 0) throw usageError(`unexpected argument "${args.positionals[0]}"`, 'serve', helpHint('serve'));
  const text = (name: string): string | undefined => { const v = args.values[name]; return typeof v === 'string' ? v : undefined; };
  const nbdListen = text('nbd');
  const apiListen = text('api');
  // Checked here too, so a typo is a usage error before anything is opened.
  if (nbdListen !== undefined) checkNbdListenFlag(nbdListen);
  if (apiListen !== undefined) parseHostPort(apiListen, '--api', true);
  // Read and removed at once, so no process we start takes the sockets for its own.
  const activation = readActivation(process.env, process.pid);
  clearActivation(process.env);
  const takeoverChild = TakeoverChild.fromEnv(process.env);

  const logger = new Logger(io);
  const signals = new Signals(logger);
  const running: Running = {};
  const opts: EngineOpenOptions = { log: logger.log };
  const configPath = text('config');
  const dataDir = text('data-dir');
  if (configPath !== undefined) opts.configPath = configPath;
  if (dataDir !== undefined) opts.dataDir = dataDir;
  if (nbdListen !== undefined) opts.nbdListen = nbdListen;
  if (apiListen !== undefined) opts.apiListen = apiListen;
  const fds = takeoverChild?.fds ?? (activation.kind === 'fds' ? activation.fds : undefined);
  const plan: StartPlan = { opts, fds, fromTakeover: takeoverChild !== undefined };
  try {
    if (takeoverChild !== undefined) await prepareTakeover(takeoverChild, opts, logger);
    else if (activation.kind === 'other-pid') logger.log('info', `LISTEN_FDS ignored: LISTEN_PID ${activation.listenPid} is not this process (${process.pid})`);
    if (takeoverChild === undefined && fds !== undefined) logActivation(logger, fds, { nbd: nbdListen !== undefined, api: apiListen !== undefined });
    await startServing(running, plan, logger, io);
    if (takeoverChild !== undefined) await takeoverChild.serving(running.nbd?.server as NbdServer, logger.log);
  } catch (err) {
    await takeoverChild?.failed(err);
    await closeAll(running, logger);
    signals.dispose();
    throw err;
  }
  let failed = false;
  for (;;) {
    const signal = await signals.next();
    if (signal !== 'SIGUSR2') {
      logger.log('info', `${signal}: stopping (flushing volumes, closing exports)`);
      break;
    }
    const outcome = await takeOver(takeoverHost(running, plan, logger, io));
    if (outcome.kind === 'handed-over') {
      // A stop asked of this process meanwhile is not forwarded (Ctrl-C reached the new one too).
      const stop = signals.pendingStop();
      if (stop !== undefined) logger.log('warn', `${stop} came during the takeover: process ${outcome.pid} serves on; stop that one`);
      signals.dispose();
      // Now, in this tick: a bound Unix listener is still open, and anything it accepted from
      // here on would be lost (takeover.ts).
      process.exit(0);
    }
    if (outcome.kind === 'failed') { // no way back: close what is open (bounded below), exit 1
      failed = true;
      break;
    }
  }
  const timeout = new Promise<'timeout'>((resolve) => { setTimeout(() => { resolve('timeout'); }, SHUTDOWN_MS_MAX).unref(); });
  const outcome = await Promise.race([closeAll(running, logger), timeout]);
  signals.dispose();
  if (outcome === 'timeout') {
    logger.log('error', `stopping took longer than ${SHUTDOWN_MS_MAX / 1000} s; exiting without a clean stop`);
    return 1;
  }
  if (outcome === false || failed) return 1;
  logger.log('info', 'stopped cleanly');
  return 0;
}

interface StartPlan {
  readonly opts: EngineOpenOptions;
  /** Listening sockets passed by systemd or by the previous process of a takeover. */
  readonly fds: ActivationFds | undefined;
  readonly fromTakeover: boolean;
}

/** Opens the engine, the NBD export and the API, prints the banner and `onestack: ready`. */
async function startServing(running: Running, plan: StartPlan, logger: Logger, io: CliIo): Promise<void> {
  const { Engine, startNbdExport, ensureApiToken } = await import('@onestack/engine');
  const { fds } = plan;
  const flag = fds === undefined ? '--nbd' : plan.fromTakeover ? TAKEOVER_FDS_ENV : 'LISTEN_FDS';
  running.engine = await Engine.open(plan.opts);
  const engine = running.engine;
  const nbdAt: readonly NbdListenTarget[] = fds !== undefined ? fds.nbd.map((fd) => ({ fd })) : [engine.config.nbd.listen];
  running.nbd = await startNbdExport(engine, nbdAt, { log: logger.log })
    .catch((err: unknown) => { throw listenError(err, 'NBD', flag, nbdAt.map(describeTarget).join(', ')); });
  const nbd = running.nbd;
  const token = ensureApiToken(engine.config.dataDir);
  logger.redact(token);
  const apiAt = fds?.api !== undefined ? { fd: fds.api } : { ...engine.config.api.listen };
  running.api = await startApiServer({ engine, token, log: logger.log, version: cliVersion() }, apiAt)
    .catch((err: unknown) => { throw listenError(err, 'API', 'fd' in apiAt ? flag : '--api', 'fd' in apiAt ? `fd ${apiAt.fd}` : formatHostPort(apiAt)); });
  running.apiFd = fds?.api ?? running.api.fd;
  const apiText = 'fd' in apiAt ? `fd ${apiAt.fd}${running.api.port === 0 ? ' (Unix socket)' : ` = ${formatHostPort(running.api)}`}` : formatHostPort(running.api);
  io.stdout(banner(engine, nbd, running.api, token, apiText));
  io.stdout('onestack: ready\n');
  logger.log('info', `serving: NBD on ${nbd.addresses.map(describeAddress).join(', ')} (tls: ${nbd.tls}), API on ${apiText} (pid ${process.pid})`);
}

/** The new process of a takeover: config and sockets checked, then wait for the old one's engine to close. */
async function prepareTakeover(child: TakeoverChild, opts: EngineOpenOptions, logger: Logger): Promise<void> {
  const { loadConfig } = await import('@onestack/engine');
  const overrides = {
    ...(opts.dataDir !== undefined ? { dataDir: opts.dataDir } : {}),
    ...(opts.nbdListen !== undefined ? { nbdListen: opts.nbdListen } : {}),
    ...(opts.apiListen !== undefined ? { apiListen: opts.apiListen } : {}),
  };
  loadConfig(opts.configPath !== undefined ? { path: opts.configPath } : { embeddedDefault: true }, overrides);
  child.checkFds();
  logger.log('info', `takeover: config loaded, ${child.fds.nbd.length} NBD socket(s) passed; waiting for the previous process to close its engine`);
  await child.ready();
}

/** What takeover.ts needs from this process (SIGUSR2). */
function takeoverHost(running: Running, plan: StartPlan, logger: Logger, io: CliIo): TakeoverHost {
  return {
    log: logger.log,
    nbdServer: () => {
      if (running.nbd === undefined) throw new Error('not serving');
      return running.nbd.server;
    },
    apiFd: running.apiFd,
    closeAll: () => closeAll(running, logger),
    reopen: async () => {
      // The configured targets again: the passed fds (if any) went with the failed process.
      await startServing(running, { ...plan, fds: plan.fds !== undefined && plan.fromTakeover ? undefined : plan.fds }, logger, io);
      return running.nbd?.server as NbdServer;
    },
  };
}

/** Closes what was opened, in reverse order: API, NBD, then the engine (flush + clean superblocks). */
async function closeAll(running: Running, logger: Logger): Promise<boolean> {
  let clean = true;
  const step = async (what: string, close: (() => Promise<void>) | undefined): Promise<void> => {
    if (close === undefined) return;
    try {
      await close();
    } catch (err) {
      clean = false;
      logger.log('error', `closing ${what}: ${err instanceof Error ? err.message : String(err)}`);
    }
  };
  await step('the API server', running.api === undefined ? undefined : () => running.api?.close(API_CLOSE_MS) ?? Promise.resolve());
  await step('the NBD export', running.nbd === undefined ? undefined : () => running.nbd?.close() ?? Promise.resolve());
  await step('the engine', running.engine === undefined ? undefined : () => running.engine?.close() ?? Promise.resolve());
  delete running.api;
  delete running.nbd;
  delete running.engine;
  return clean;
}

/** Listen failures as CLI errors: in use or not permitted (exit 1); a wrong target (exit 2). */
function listenError(err: unknown, what: string, flag: string, at: string): unknown {
  const e = err as NodeJS.ErrnoException | undefined;
  const code = e?.code;
  if (code === 'EADDRINUSE' || code === 'EACCES' || code === 'EADDRNOTAVAIL') {
    const hint = code === 'EADDRINUSE'
      ? `is another onestack running? pass ${flag} HOST:PORT (port 0 picks a free one)${flag === '--nbd' ? ' or unix:PATH' : ''}`
      : `pass ${flag} HOST:PORT with an address this machine has and a port above 1023${flag === '--nbd' ? ', or a unix:PATH you may write' : ''}`;
    return new CliError(1, `cannot listen on ${at} for ${what}`, code, hint);
  }
  if (code === 'EEXIST' || code === 'ENAMETOOLONG' || code === 'ENOENT' || code === 'ENOTDIR') {
    const hint = code === 'EEXIST' ? 'choose a socket path where nothing else is, or remove what is there'
      : code === 'ENAMETOOLONG' ? 'choose a shorter socket path' : 'the socket\'s directory must exist';
    return new CliError(2, `cannot listen on ${at} for ${what}: ${e?.message ?? ''}`, flag === '--nbd' ? '--nbd / nbd.listen' : flag, hint);
  }
  if (code === 'ENOTSOCK' || code === 'EBADF') {
    return new CliError(2, `cannot listen for ${what}: ${e?.message ?? ''}`, flag,
      'socket activation passes listening stream sockets from fd 3 on (ListenStream= in the .socket unit; see docs/nbd.md)');
  }
  return err;
}

function describeTarget(target: NbdListenTarget): string {
  if ('fd' in target) return `fd ${target.fd}`;
  return 'socketPath' in target ? `unix:${target.socketPath}` : formatHostPort(target);
}

/** What the log says for one NBD listener. */
function describeAddress(address: NbdBoundAddress): string {
  const fd = address.fd === undefined ? '' : ` (fd ${address.fd})`;
  if (address.transport === 'tcp') return `${formatHostPort(address)}${fd}`;
  return `unix:${address.socketPath ?? '?'}${fd}`;
}

function logActivation(logger: Logger, fds: ActivationFds, flags: { nbd: boolean; api: boolean }): void {
  const named = (fd: number): string => `fd ${fd} (${fds.names.get(fd) ?? 'unknown'})`;
  logger.log('info', `socket activation: NBD on ${fds.nbd.map(named).join(', ')}${fds.api !== undefined ? `, API on ${named(fds.api)}` : ''}`);
  if (flags.nbd) logger.log('warn', '--nbd ignored: socket activation passed the NBD socket');
  if (flags.api && fds.api !== undefined) logger.log('warn', '--api ignored: socket activation passed the API socket');
  for (const u of fds.unused) logger.log('warn', `socket activation: fd ${u.fd} named "${u.name}" is not used (name it "nbd" or "api")`);
}

/** A URL host: wildcard listen addresses are reached through loopback. */
function urlHost(host: string): string {
  if (host === '0.0.0.0' || host === '' ) return '127.0.0.1';
  if (host === '::') return '[::1]';
  return host.includes(':') ? `[${host}]` : host;
}

/** The client URI of an export on one listener: nbd[s]://HOST:PORT/NAME or nbd[s]+unix:///NAME?socket=PATH. */
function exportUri(address: NbdBoundAddress, tls: NbdTlsMode, exportName: string): string {
  // nbds makes libnbd insist on TLS; only then would a plain URI be refused.
  const scheme = tls === 'required' ? 'nbds' : 'nbd';
  const name = encodeURIComponent(exportName);
  if (address.transport === 'tcp') return `${scheme}://${urlHost(address.host)}:${address.port}/${name}`;
  if (address.socketPath === undefined) return `${scheme}+unix:///${name}?socket=<path of fd ${address.fd ?? '?'}>`;
  return `${scheme}+unix:///${name}?socket=${encodeURI(address.socketPath)}`;
}

function banner(engine: Engine, nbd: NbdExportHandle, api: HostPort, token: string, apiText: string): string {
  const status = engine.status();
  const first = nbd.addresses[0];
  if (first === undefined) throw new Error('NBD export has no listener');
  const boot = status.volumes.find((v) => v.boot) ?? status.volumes.find((v) => v.name === 'default') ?? status.volumes[0];
  const io = status.native.backend + (status.native.reason === undefined ? '' : ` (${status.native.reason})`);
  const guiBase = `http://${urlHost(api.host)}:${api.port}`;
  const apiLines = api.port === 0
    ? [`API:  ${apiText}: HTTP over the Unix socket (curl --unix-socket PATH http://localhost/api/v1/status)`, `GUI token: ${token}`]
    : [`API:  ${guiBase}/api/v1  (Authorization: Bearer <token in ${join(status.dataDir, 'api-token')}>)`,
      'To open the GUI, copy and paste this URL into a browser:', `GUI:  ${guiBase}/?token=${token}`];
  const lines = [
    `onestack ${cliVersion()} (engine ${engineVersion()}, node ${process.version}, io backend: ${io})`,
    `data dir: ${status.dataDir}`,
    status.volumes.length === 0 ? 'volumes:  none yet (create one with: onestack volume create)' : 'volumes:',
    ...status.volumes.map((v) => `  ${v.name}: ${v.layout}, ${formatBytes(v.sizeBytes)}, ${v.state}${v.boot ? ', boot' : ''}  ${exportUri(first, nbd.tls, v.name)}`),
    ...nbd.addresses.map((a) => `NBD:  ${exportUri(a, nbd.tls, boot?.name ?? '')}  (tls: ${nbd.tls}${a.fd !== undefined ? `, fd ${a.fd}` : ''})`),
    ...apiLines,
  ];
  return lines.join('\n') + '\n';
}

function engineVersion(): string {
  try {
    const url = new URL('../package.json', import.meta.resolve('@onestack/engine'));
    const pkg = JSON.parse(readFileSync(url, 'utf8')) as { version?: unknown };
    return typeof pkg.version === 'string' ? pkg.version : 'unknown';
  } catch {
    return 'unknown';
  }
}

/** Log lines on stderr with a level prefix. The token is masked should anything ever carry it. */
class Logger {
  readonly #io: CliIo;
  #secrets: string[] = [];
  constructor(io: CliIo) { this.#io = io; }
  redact(secret: string): void { if (secret !== '') this.#secrets.push(secret); }
  readonly log: Log = (level: LogLevel, message: string) => {
    let line = message;
    for (const secret of this.#secrets) line = line.split(secret).join('<token>');
    this.#io.stderr(`${level}: ${line}\n`);
  };
}

/**
 * First SIGINT/SIGTERM starts a clean stop; a second one exits at once with status 1. SIGUSR2
 * starts a takeover (takeover.ts; nginx's signal for the same, which leaves SIGHUP harmless).
 * SIGHUP (a closed terminal, or someone expecting a config reload) would end the process
 * uncleanly by default: the config is read at start only, so it is ignored, with a warning.
 */
class Signals {
  #stops = 0;
  #pending: string[] = [];
  #wake: (() => void) | undefined;
  readonly #handler: (signal: NodeJS.Signals) => void;
  readonly #hangup: () => void;
  readonly #usr2: () => void;
  constructor(logger: Logger) {
    this.#hangup = () => logger.log('warn', 'SIGHUP ignored: the config is read at start only (restart onestack, or send SIGUSR2 for a takeover, to apply a changed config)');
    process.on('SIGHUP', this.#hangup);
    this.#handler = (signal) => {
      this.#stops++;
      if (this.#stops === 1) { this.#push(signal); return; }
      logger.log('error', `${signal} again: exiting now, without a clean stop`);
      process.exit(1);
    };
    this.#usr2 = () => {
      if (this.#pending.includes('SIGUSR2')) logger.log('warn', 'SIGUSR2 ignored: a takeover is due already');
      else this.#push('SIGUSR2');
    };
    process.on('SIGINT', this.#handler);
    process.on('SIGTERM', this.#handler);
    process.on('SIGUSR2', this.#usr2);
  }
  /** A stop signal waiting to be acted on, if any. */
  pendingStop(): string | undefined {
    return this.#pending.find((s) => s !== 'SIGUSR2');
  }
  /** The next signal to act on; a stop goes before a takeover. */
  async next(): Promise<string> {
    for (;;) {
      const stop = this.#pending.find((s) => s !== 'SIGUSR2');
      const signal = stop ?? this.#pending[0];
      if (signal !== undefined) {
        this.#pending = this.#pending.filter((s) => s !== signal);
        return signal;
      }
      await new Promise<void>((resolve) => { this.#wake = resolve; });
    }
  }
  #push(signal: string): void {
    this.#pending.push(signal);
    const wake = this.#wake;
    this.#wake = undefined;
    wake?.();
  }
  dispose(): void {
    process.off('SIGINT', this.#handler);
    process.off('SIGTERM', this.#handler);
    process.off('SIGHUP', this.#hangup);
    process.off('SIGUSR2', this.#usr2);
  }
}
