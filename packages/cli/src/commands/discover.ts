// `onestack discover URI [--secret-file FILE] [--tls-ca FILE] [--tls-cert FILE] [--tls-key FILE]
// [--json] [--local]`: what an NBD server (NBD_OPT_LIST) or an iSCSI portal (SendTargets) offers,
// with the element URI to give `onestack element add`. Asks through the daemon by default (the
// daemon is what will connect later, so its view of the network is the one that matters);
// --local asks from this process, without a daemon.
import { readFileSync, statSync } from 'node:fs';
import { resolve } from 'node:path';
import type { DiscoverResult } from '@onestack/engine';
import type { DiscoverBody } from '../api/client.js';
import { parseCommandArgs, type OptionSpecs, type ParsedArgs } from '../args.js';
import { CliError, isEngineError, toCliError, usageError, type ExitCode } from '../errors.js';
import { HELP } from '../help.js';
import type { CliIo } from '../io.js';
import { table } from '../render.js';
import { maskUriSecrets, redact, splitInlineSecret } from '../uri-secret.js';
import { CLIENT_OPTIONS, clientFor } from './common.js';
import { expectPositionals } from './volume.js';

const OPTIONS: OptionSpecs = {
  ...CLIENT_OPTIONS,
  'secret-file': { type: 'string' },
  'tls-ca': { type: 'string' }, 'tls-cert': { type: 'string' }, 'tls-key': { type: 'string' },
  json: { type: 'boolean' }, local: { type: 'boolean' },
};
/** Flags people reach for; a secret in argv shows in `ps` and shell history, so it is refused by name. */
const SECRET_FLAG_RE = /^--?(secret|password|passwd|chap-secret|chap-password)(=|$)/i;
const SCHEME_RE = /^(nbds?(\+unix)?|iscsi):\/\//i;
const URI_HINT = 'like nbd://HOST[:PORT], nbds://HOST[:PORT], nbd+unix:///?socket=PATH or iscsi://[USER@]HOST[:PORT]';
const SECRET_FILE_BYTES_MAX = 4096;

export async function discoverCommand(argv: readonly string[], io: CliIo): Promise<ExitCode> {
  const secretFlag = argv.find((a) => SECRET_FLAG_RE.test(a));
  if (secretFlag !== undefined) {
    throw usageError(`option ${secretFlag.split('=')[0] ?? ''} is not accepted: secrets are never taken on the command line`, 'discover',
      'put the secret in a file (mode 0600) and pass --secret-file FILE');
  }
  const args = parseCommandArgs('discover', argv, OPTIONS);
  if (args.values['help'] === true) { io.stdout(HELP['discover'] ?? ''); return 0; }
  const local = args.values['local'] === true;
  if (local && (args.values['api'] !== undefined || args.values['data-dir'] !== undefined)) {
    throw usageError('--local asks the remote from this process: --api and --data-dir do not apply', 'discover', 'drop --local to ask through the daemon');
  }
  const body = requestOf(args);
  let result: DiscoverResult;
  try {
    result = local ? await discoverHere(body) : await clientFor(args.values, io).discover(body);
  } catch (err) {
    throw cleanError(err, body.secret);
  }
  const text = args.values['json'] === true ? JSON.stringify(result, null, 2) + '\n' : renderDiscover(result);
  io.stdout(redact(text, body.secret));
  return 0;
}

/** Checks the URI and flags locally, so mistakes fail fast (exit 2) before anything is asked. */
function requestOf(args: ParsedArgs): DiscoverBody {
  const raw = (expectPositionals('discover', args, 1)[0] ?? '').trim();
  if (!SCHEME_RE.test(raw)) throw usageError(`cannot discover "${maskUriSecrets(raw)}": not an NBD or iSCSI URI`, 'discover', URI_HINT);
  const split = splitInlineSecret(raw);
  if (split.secret !== undefined) {
    throw usageError(`the URI ${maskUriSecrets(raw)} carries a secret: secrets are never taken on the command line`, 'discover',
      'write iscsi://USER@HOST and pass --secret-file FILE (one line, mode 0600)');
  }
  const scheme = raw.slice(0, raw.indexOf(':')).toLowerCase();
  const body: DiscoverBody = { uri: split.uri };
  const secretFile = stringFlag(args, 'secret-file');
  if (secretFile !== undefined) {
    if (scheme !== 'iscsi') throw usageError('--secret-file only applies to iscsi:// URIs (a CHAP secret)', '--secret-file');
    if (split.user === '') throw usageError('--secret-file needs the CHAP user in the URI', '--secret-file', 'write iscsi://USER@HOST[:PORT]');
    body.secret = readSecretFile(secretFile);
  }
  const [ca, cert, key] = (['tls-ca', 'tls-cert', 'tls-key'] as const).map((f) => stringFlag(args, f));
  if (ca !== undefined || cert !== undefined || key !== undefined) {
    if (!scheme.startsWith('nbds')) throw usageError('--tls-* only apply to nbds:// URIs', 'discover', 'write nbds://HOST[:PORT]');
    if ((cert === undefined) !== (key === undefined)) throw usageError('--tls-cert and --tls-key go together', 'discover');
    // Absolute paths: the daemon reads them, from its own working directory.
    body.tls = {
      ...(ca !== undefined ? { ca: resolve(ca) } : {}), ...(cert !== undefined ? { cert: resolve(cert) } : {}), ...(key !== undefined ? { key: resolve(key) } : {}),
    };
  }
  return body;
}

function stringFlag(args: ParsedArgs, name: string): string | undefined {
  const value = args.values[name];
  return typeof value === 'string' ? value : undefined;
}

/**
 * Read here rather than by the daemon: the file belongs to whoever runs the command, and the
 * daemon may run as another user or from another directory. Only its first line counts.
 */
function readSecretFile(file: string): string {
  let text: string;
  try {
    const sizeBytes = statSync(file).size;
    if (sizeBytes > SECRET_FILE_BYTES_MAX) {
      throw usageError(`--secret-file ${file} is larger than ${SECRET_FILE_BYTES_MAX} bytes`, '--secret-file', 'it holds one line: the CHAP secret');
    }
    text = readFileSync(file, 'utf8');
  } catch (err) {
    if (err instanceof CliError) throw err;
    const code = (err as NodeJS.ErrnoException).code ?? 'error';
    throw usageError(`cannot read --secret-file ${file}: ${code}`, '--secret-file', 'a file whose first line is the CHAP secret');
  }
  const secret = (text.split(/\r?\n/)[0] ?? '').trim();
  if (secret === '') throw usageError(`--secret-file ${file} has no secret on its first line`, '--secret-file');
  return secret;
}

/** The engine's discover in this process; loaded lazily, as only --local needs it. */
async function discoverHere(body: DiscoverBody): Promise<DiscoverResult> {
  const { discover } = await import('@onestack/engine');
  const { uri, ...opts } = body;
  return discover(uri, opts);
}

/** A bad URI is a usage error (2) also when the engine finds it; nothing shown carries the secret. */
function cleanError(err: unknown, secret: string | undefined): CliError {
  const e = toCliError(err);
  const exitCode = isEngineError(err) && (err.code === 'invalid' || err.code === 'config') ? 2 : e.exitCode;
  const clean = (text: string | undefined): string | undefined => (text === undefined ? undefined : redact(text, secret));
  return new CliError(exitCode, clean(e.message) ?? '', clean(e.where), clean(e.hint));
}

export function renderDiscover(result: DiscoverResult): string {
  const what = result.kind === 'nbd' ? 'NBD export' : 'iSCSI target';
  const count = result.items.length;
  if (count === 0) return `no ${what}s at ${result.where}\n`;
  const rows = result.items.map((i) => [i.name === '' ? '""' : i.name, i.uri, i.description ?? '-']);
  return `${count} ${what}${count === 1 ? '' : 's'} at ${result.where}:\n${table(['NAME', 'URI', 'DESCRIPTION'], rows)}` +
    '\nadd one as an element with: onestack element add URI [--name N]\n';
}
