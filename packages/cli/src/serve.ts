// `onestack serve`: open the engine, export its volumes over NBD, serve the API and page, print
// the banner and `onestack: ready`; on SIGINT/SIGTERM close everything within a bounded time.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Engine, NbdTlsMode } from '@onestack/engine';
import { startApiServer, type ApiServer } from './api/server.js';
import type { Log, LogLevel } from './api/engine-port.js';
import { formatHostPort, helpHint, parseCommandArgs, parseHostPort, type HostPort } from './args.js';
import { cliVersion } from './version.js';
import { CliError, usageError, type ExitCode } from './errors.js';
import { HELP } from './help.js';
import type { CliIo } from './io.js';
import { formatBytes } from './render.js';

const SHUTDOWN_MS_MAX = 15_000;
const API_CLOSE_MS = 1_000;

interface Running { engine?: Engine; nbd?: { close(): Promise<void> }; api?: ApiServer }

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
  if (nbdListen !== undefined) parseHostPort(nbdListen, '--nbd', true);
  if (apiListen !== undefined) parseHostPort(apiListen, '--api', true);

  const logger = new Logger(io);
  const signals = new Signals(logger);
  const running: Running = {};
  try {
    const { Engine, startNbdExport, ensureApiToken } = await import('@onestack/engine');
    const opts: Parameters<typeof Engine.open>[0] = { log: logger.log };
    const configPath = text('config');
    const dataDir = text('data-dir');
    if (configPath !== undefined) opts.configPath = configPath;
    if (dataDir !== undefined) opts.dataDir = dataDir;
    if (nbdListen !== undefined) opts.nbdListen = nbdListen;
    if (apiListen !== undefined) opts.apiListen = apiListen;
    running.engine = await Engine.open(opts);
    const engine = running.engine;
    const nbdAt = { ...engine.config.nbd.listen };
    running.nbd = await startNbdExport(engine, nbdAt, { log: logger.log }).catch((err: unknown) => { throw listenError(err, 'NBD', '--nbd', nbdAt); });
    const nbd = running.nbd as unknown as HostPort & { tls: NbdTlsMode };
    const token = ensureApiToken(engine.config.dataDir);
    logger.redact(token);
    const apiAt = { ...engine.config.api.listen };
    running.api = await startApiServer({ engine, token, log: logger.log, version: cliVersion() }, apiAt)
      .catch((err: unknown) => { throw listenError(err, 'API', '--api', apiAt); });
    io.stdout(banner(engine, { host: nbd.host, port: nbd.port, tls: nbd.tls }, running.api, token));
    io.stdout('onestack: ready\n');
    logger.log('info', `serving: NBD on ${formatHostPort(nbd)} (tls: ${nbd.tls}), API on ${formatHostPort(running.api)}`);
  } catch (err) {
    await closeAll(running, logger);
    signals.dispose();
    throw err;
  }
  const signal = await signals.first;
  logger.log('info', `${signal}: stopping (flushing volumes, closing exports)`);
  const timeout = new Promise<'timeout'>((resolve) => { setTimeout(() => { resolve('timeout'); }, SHUTDOWN_MS_MAX).unref(); });
  const outcome = await Promise.race([closeAll(running, logger), timeout]);
  signals.dispose();
  if (outcome === 'timeout') {
    logger.log('error', `stopping took longer than ${SHUTDOWN_MS_MAX / 1000} s; exiting without a clean stop`);
    return 1;
  }
  if (outcome === false) return 1;
  logger.log('info', 'stopped cleanly');
  return 0;
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

function listenError(err: unknown, what: string, flag: string, at: HostPort): unknown {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  if (code === 'EADDRINUSE' || code === 'EACCES' || code === 'EADDRNOTAVAIL') {
    const hint = code === 'EADDRINUSE'
      ? `is another onestack running? pass ${flag} HOST:PORT (port 0 picks a free one)`
      : `pass ${flag} HOST:PORT with an address this machine has and a port above 1023`;
    return new CliError(1, `cannot listen on ${formatHostPort(at)} for ${what}`, code, hint);
  }
  return err;
}

/** A URL host: wildcard listen addresses are reached through loopback. */
function urlHost(host: string): string {
  if (host === '0.0.0.0' || host === '' ) return '127.0.0.1';
  if (host === '::') return '[::1]';
  return host.includes(':') ? `[${host}]` : host;
}

function banner(engine: Engine, nbd: HostPort & { tls: NbdTlsMode }, api: HostPort, token: string): string {
  const status = engine.status();
  // nbds:// makes libnbd insist on TLS; only then would a plain nbd:// URI be refused.
  const nbdBase = `${nbd.tls === 'required' ? 'nbds' : 'nbd'}://${urlHost(nbd.host)}:${nbd.port}`;
  const guiBase = `http://${urlHost(api.host)}:${api.port}`;
  const boot = status.volumes.find((v) => v.boot) ?? status.volumes.find((v) => v.name === 'default') ?? status.volumes[0];
  const io = status.native.backend + (status.native.reason === undefined ? '' : ` (${status.native.reason})`);
  const lines = [
    `onestack ${cliVersion()} (engine ${engineVersion()}, node ${process.version}, io backend: ${io})`,
    `data dir: ${status.dataDir}`,
    status.volumes.length === 0 ? 'volumes:  none yet (create one with: onestack volume create)' : 'volumes:',
    ...status.volumes.map((v) => `  ${v.name}: ${v.layout}, ${formatBytes(v.sizeBytes)}, ${v.state}${v.boot ? ', boot' : ''}  ${nbdBase}/${encodeURIComponent(v.name)}`),
    `NBD:  ${nbdBase}/${boot === undefined ? '' : encodeURIComponent(boot.name)}  (tls: ${nbd.tls})`,
    `API:  ${guiBase}/api/v1  (Authorization: Bearer <token in ${join(status.dataDir, 'api-token')}>)`,
    'To open the GUI, copy and paste this URL into a browser:',
    `GUI:  ${guiBase}/?token=${token}`,
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
 * First SIGINT/SIGTERM starts a clean stop; a second one exits at once with status 1. SIGHUP
 * (a closed terminal, or someone expecting a config reload) would end the process uncleanly by
 * default: the config is read at start only, so it is ignored, with a warning.
 */
class Signals {
  readonly first: Promise<string>;
  #count = 0;
  readonly #handler: (signal: NodeJS.Signals) => void;
  readonly #hangup: () => void;
  constructor(logger: Logger) {
    this.#hangup = () => logger.log('warn', 'SIGHUP ignored: the config is read at start only (restart onestack to apply a changed config)');
    process.on('SIGHUP', this.#hangup);
    let resolveFirst: (signal: string) => void = () => undefined;
    this.first = new Promise((resolve) => { resolveFirst = resolve; });
    this.#handler = (signal) => {
      this.#count++;
      if (this.#count === 1) { resolveFirst(signal); return; }
      logger.log('error', `${signal} again: exiting now, without a clean stop`);
      process.exit(1);
    };
    process.on('SIGINT', this.#handler);
    process.on('SIGTERM', this.#handler);
  }
  dispose(): void {
    process.off('SIGINT', this.#handler);
    process.off('SIGTERM', this.#handler);
    process.off('SIGHUP', this.#hangup);
  }
}
