// Argument parsing on node:util parseArgs, with our own checks so every mistake gets a usage
// error (exit 2) that names the flag, suggests the nearest known one and points at --help.
import { parseArgs } from 'node:util';
import { usageError } from './errors.js';

export interface OptionSpec {
  readonly type: 'string' | 'boolean';
  readonly multiple?: boolean;
  readonly short?: string;
  /** Positionals after this (multiple string) option are more of its values: `--element a b`. */
  readonly greedy?: boolean;
}
export type OptionSpecs = Readonly<Record<string, OptionSpec>>;

export type OptionValue = string | boolean | string[];
export interface ParsedArgs {
  readonly values: Readonly<Record<string, OptionValue | undefined>>;
  readonly positionals: readonly string[];
}

const ARGS_MAX = 1024;

/** Parses `argv` for `command` (e.g. "volume create"); throws a usage error on any mistake. */
export function parseCommandArgs(command: string, argv: readonly string[], specs: OptionSpecs): ParsedArgs {
  if (argv.length > ARGS_MAX) throw usageError(`too many arguments (${argv.length}, at most ${ARGS_MAX})`, command);
  const options: Record<string, { type: 'string' | 'boolean'; multiple?: boolean; short?: string }> = {};
  for (const [name, spec] of Object.entries(specs)) {
    options[name] = spec.short === undefined ? { type: spec.type } : { type: spec.type, short: spec.short };
  }
  const { tokens } = parseArgs({ args: [...argv], options, strict: false, allowPositionals: true, tokens: true });
  const values: Record<string, OptionValue | undefined> = {};
  const positionals: string[] = [];
  let greedy: string | undefined;
  for (const token of tokens) {
    if (token.kind === 'option-terminator') { greedy = undefined; continue; }
    if (token.kind === 'positional') {
      const list = greedy === undefined ? undefined : values[greedy];
      if (Array.isArray(list)) list.push(token.value); else positionals.push(token.value);
      continue;
    }
    const spec = specs[token.name];
    if (spec === undefined) throw unknownOption(command, token.rawName, Object.keys(specs));
    greedy = spec.greedy === true && token.inlineValue !== true ? token.name : undefined;
    if (spec.type === 'boolean') {
      if (token.value !== undefined) throw usageError(`option ${token.rawName} takes no value`, command, helpHint(command));
      values[token.name] = true;
      continue;
    }
    const value = checkStringValue(command, token.rawName, token.value, token.inlineValue);
    if (spec.multiple === true) {
      const list = values[token.name];
      values[token.name] = Array.isArray(list) ? [...list, value] : [value];
    } else {
      if (values[token.name] !== undefined) throw usageError(`option ${token.rawName} given twice`, command, helpHint(command));
      values[token.name] = value;
    }
  }
  return { values, positionals };
}

function checkStringValue(command: string, rawName: string, value: string | undefined, inline: boolean | undefined): string {
  if (value === undefined) throw usageError(`option ${rawName} needs a value`, command, helpHint(command));
  // `--layout --element x` would otherwise take "--element" as the layout.
  if (inline !== true && value.startsWith('-') && value.length > 1 && !/^-\d/.test(value)) {
    throw usageError(`option ${rawName} needs a value, got option ${value}`, command, `write ${rawName}=${value} if that is really the value`);
  }
  return value;
}

function unknownOption(command: string, rawName: string, known: readonly string[]): Error {
  const name = rawName.replace(/^-+/, '');
  const guess = closest(name, known);
  const hint = guess === undefined ? helpHint(command) : `did you mean --${guess}? (see: onestack ${command} --help)`;
  return usageError(`unknown option ${rawName}`, command, hint);
}

export function helpHint(command: string): string {
  return `see: onestack ${command} --help`;
}

/** The nearest candidate within edit distance 2 (or a unique prefix match), if any. */
export function closest(word: string, candidates: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = 3;
  for (const candidate of candidates) {
    const d = editDistance(word.toLowerCase(), candidate.toLowerCase());
    if (d < bestDistance) { best = candidate; bestDistance = d; }
  }
  if (best !== undefined) return best;
  const prefixed = word.length >= 2 ? candidates.filter((c) => c.startsWith(word)) : [];
  return prefixed.length === 1 ? prefixed[0] : undefined;
}

/** Levenshtein distance; inputs are flag and command names, so quadratic time is fine. */
export function editDistance(a: string, b: string): number {
  if (a.length > 64 || b.length > 64) return Math.max(a.length, b.length);
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      const substitution = (previous[j - 1] ?? 0) + (a[i - 1] === b[j - 1] ? 0 : 1);
      current.push(Math.min((previous[j] ?? 0) + 1, (current[j - 1] ?? 0) + 1, substitution));
    }
    previous = current;
  }
  return previous[b.length] ?? 0;
}

export interface HostPort { readonly host: string; readonly port: number }

/** Parses `HOST:PORT` (`[::1]:PORT` for IPv6). `allowZero` lets `serve` pick a free port. */
export function parseHostPort(text: string, flag: string, allowZero: boolean): HostPort {
  const match = /^(?:\[([0-9a-fA-F:.]+)\]|([^\s:[\]]+)):(\d{1,5})$/.exec(text);
  const port = match === null ? NaN : Number(match[3]);
  const min = allowZero ? 0 : 1;
  if (match === null || !(port >= min && port <= 65535)) {
    throw usageError(`${flag} wants HOST:PORT, got "${text}"`, flag, `for example: ${flag} 127.0.0.1:${flag === '--nbd' ? 10809 : 9090}`);
  }
  return { host: match[1] ?? match[2] ?? '', port };
}

/** `serve --nbd`: HOST:PORT, or unix:PATH for a Unix socket (the engine resolves and checks the path). */
export function checkNbdListenFlag(text: string): void {
  const hint = 'for example: --nbd 127.0.0.1:10809 or --nbd unix:/run/onestack/nbd.sock';
  if (text.startsWith('unix:')) {
    if (text.length === 'unix:'.length) throw usageError('--nbd unix: needs a socket path', '--nbd', hint);
    return;
  }
  if (!/^(?:\[[0-9a-fA-F:.]+\]|[^\s:[\]]+):\d{1,5}$/.test(text)) throw usageError(`--nbd wants HOST:PORT or unix:PATH, got "${text}"`, '--nbd', hint);
  parseHostPort(text, '--nbd', true); // the port range
}

export function formatHostPort(address: HostPort): string {
  return address.host.includes(':') ? `[${address.host}]:${address.port}` : `${address.host}:${address.port}`;
}

const SIZE_UNITS: Readonly<Record<string, number>> = { '': 1, k: 2 ** 10, m: 2 ** 20, g: 2 ** 30, t: 2 ** 40 };

/** Bytes, optionally with a binary suffix: 1073741824, 1G, 1GiB, 512M. */
export function parseSize(text: string, flag: string): number {
  const match = /^(\d+)\s*([kmgt]?)(?:i?b)?$/i.exec(text.trim());
  const unit = match === null ? undefined : SIZE_UNITS[(match[2] ?? '').toLowerCase()];
  const bytes = match === null || unit === undefined ? NaN : Number(match[1]) * unit;
  if (!Number.isSafeInteger(bytes) || bytes <= 0) {
    throw usageError(`${flag} wants a positive size in bytes, got "${text}"`, flag, `for example: ${flag} 1073741824 or ${flag} 1G`);
  }
  return bytes;
}

/** A positive integer flag value bounded by `max`. */
export function parsePositiveInt(text: string, flag: string, max: number): number {
  const value = /^\d+$/.test(text) ? Number(text) : NaN;
  if (!Number.isSafeInteger(value) || value <= 0 || value > max) {
    throw usageError(`${flag} wants a whole number from 1 to ${max}, got "${text}"`, flag);
  }
  return value;
}

/** One of a fixed set of words, with a did-you-mean. */
export function parseChoice<T extends string>(text: string, flag: string, choices: readonly T[]): T {
  const found = choices.find((c) => c === text);
  if (found !== undefined) return found;
  const guess = closest(text, choices);
  const hint = guess === undefined ? `one of: ${choices.join(', ')}` : `did you mean ${guess}? (one of: ${choices.join(', ')})`;
  throw usageError(`${flag} does not accept "${text}"`, flag, hint);
}
