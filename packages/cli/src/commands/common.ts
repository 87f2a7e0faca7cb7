// Options and set-up shared by the commands that talk to the daemon over the API.
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { ApiClient, TIMEOUT_MS_MAX } from '../api/client.js';
import { parseHostPort, parsePositiveInt, type OptionSpecs, type ParsedArgs } from '../args.js';
import { CliError } from '../errors.js';
import type { ExitCode } from '../errors.js';
import { HELP } from '../help.js';
import type { CliIo } from '../io.js';

export const API_DEFAULT = '127.0.0.1:9090';
export const DATA_DIR_DEFAULT = './data';
const TOKEN_BYTES_MAX = 4096;

export const CLIENT_OPTIONS: OptionSpecs = {
  api: { type: 'string' },
  'data-dir': { type: 'string' },
  timeout: { type: 'string' },
  help: { type: 'boolean', short: 'h' },
};

export function dataDirOf(values: ParsedArgs['values'], io: CliIo): string {
  const flag = values['data-dir'];
  if (typeof flag === 'string') return flag;
  const env = io.env['ONESTACK_DATA_DIR'];
  return env !== undefined && env !== '' ? env : DATA_DIR_DEFAULT;
}

/** The client for --api, with the token from ONESTACK_TOKEN or the data dir's api-token. */
export function clientFor(values: ParsedArgs['values'], io: CliIo): ApiClient {
  const apiText = typeof values['api'] === 'string' ? values['api'] : API_DEFAULT;
  const api = parseHostPort(apiText, '--api', false);
  // --timeout SEC bounds every request; without it the client picks per request (10 s, or 120 s
  // for element add, volume create and the other operations that open elements).
  const timeout = typeof values['timeout'] === 'string' ? { timeoutMs: parsePositiveInt(values['timeout'], '--timeout', TIMEOUT_MS_MAX / 1000) * 1000 } : {};
  const envToken = io.env['ONESTACK_TOKEN'];
  if (envToken !== undefined && envToken.trim() !== '') {
    return new ApiClient({ api, token: envToken.trim(), tokenSource: 'ONESTACK_TOKEN', ...timeout });
  }
  const path = resolve(join(dataDirOf(values, io), 'api-token'));
  const token = readToken(path);
  // No token: still ask, so "daemon not running" is reported before "no token".
  return token === undefined ? new ApiClient({ api, tokenSource: path, ...timeout }) : new ApiClient({ api, token, tokenSource: path, ...timeout });
}

function readToken(path: string): string | undefined {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return undefined;
    throw new CliError(1, `cannot read the API token`, `${path}: ${code ?? 'error'}`, 'run as the user that runs onestack serve, or set ONESTACK_TOKEN');
  }
  const token = text.trim();
  if (token === '' || token.length > TOKEN_BYTES_MAX) return undefined;
  return token;
}

/** False for no subcommand or a request for help: then call groupHelp. */
export function isSubcommand(sub: string | undefined): sub is string {
  return sub !== undefined && sub !== '--help' && sub !== '-h' && sub !== 'help';
}

/**
 * `onestack GROUP` alone prints the group's help to stderr (exit 2, it is a usage error);
 * `help`, `--help` or `-h` print it to stdout (exit 0).
 */
export function groupHelp(group: string, sub: string | undefined, io: CliIo): ExitCode {
  (sub === undefined ? io.stderr : io.stdout)(HELP[group] ?? '');
  return sub === undefined ? 2 : 0;
}
