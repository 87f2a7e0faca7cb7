// Typed readers for raw config values. Each takes the field path it reads so that errors name
// it; none of them accepts a value of the wrong type silently.
import { configError, didYouMean, show } from './errors.js';

export type RawMap = Readonly<Record<string, unknown>>;

/** Requires a mapping whose keys are all in `allowed` (an unknown key is an error with did-you-mean). */
export function readMap(raw: unknown, field: string, allowed: readonly string[]): RawMap {
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
    throw configError(field, `expected a mapping, got ${show(raw)}`);
  }
  const map = raw as RawMap;
  for (const key of Object.keys(map)) {
    if (allowed.includes(key)) continue;
    const guess = didYouMean(key, allowed);
    const keyField = field === '' ? key : `${field}.${key}`;
    const hint = guess !== undefined ? `did you mean "${guess}"?` : `known keys: ${allowed.join(', ')}`;
    throw configError(keyField, `unknown key "${key}"${guess !== undefined ? ` (did you mean "${guess}"?)` : ''}`, hint);
  }
  return map;
}

export function join(field: string, key: string): string {
  return field === '' ? key : `${field}.${key}`;
}

export function readList(raw: unknown, field: string, maxItems: number): readonly unknown[] {
  if (!Array.isArray(raw)) throw configError(field, `expected a list, got ${show(raw)}`);
  if (raw.length > maxItems) throw configError(field, `too many entries (${raw.length}; at most ${maxItems})`);
  // An inline object may be a sparse array ([a, , b]): map() would keep the hole for later code to trip on.
  for (let i = 0; i < raw.length; i++) if (!(i in raw)) throw configError(`${field}[${i}]`, 'missing (an empty slot in the list)');
  return raw;
}

export function readString(raw: unknown, field: string, maxLength = 4096): string {
  if (typeof raw !== 'string') throw configError(field, `expected a string, got ${show(raw)}`);
  if (raw.length === 0) throw configError(field, 'must not be empty');
  if (raw.length > maxLength) throw configError(field, `too long (${raw.length} characters; at most ${maxLength})`);
  return raw;
}

export function readBool(raw: unknown, field: string): boolean {
  if (typeof raw !== 'boolean') throw configError(field, `expected true or false, got ${show(raw)}`);
  return raw;
}

export function readInt(raw: unknown, field: string, min: number, max: number): number {
  if (typeof raw !== 'number' || !Number.isInteger(raw)) throw configError(field, `expected an integer, got ${show(raw)}`);
  if (raw < min || raw > max) throw configError(field, `${raw} is out of range (${min}..${max})`);
  return raw;
}

export function readEnum<T extends string>(raw: unknown, field: string, what: string, allowed: readonly T[]): T {
  if (typeof raw === 'string' && (allowed as readonly string[]).includes(raw)) return raw as T;
  const guess = typeof raw === 'string' ? didYouMean(raw, allowed) : undefined;
  const hint = guess !== undefined ? `did you mean "${guess}"?` : `use one of ${allowed.join(', ')}`;
  throw configError(field, `unknown ${what} ${show(raw)} (expected ${allowed.join(', ')})`, hint);
}

const SIZE_UNITS: Readonly<Record<string, number>> = {
  '': 1, b: 1,
  k: 1024, kib: 1024, m: 1024 ** 2, mib: 1024 ** 2, g: 1024 ** 3, gib: 1024 ** 3, t: 1024 ** 4, tib: 1024 ** 4,
  kb: 1000, mb: 1000 ** 2, gb: 1000 ** 3, tb: 1000 ** 4,
};

/** Longer text is no size; the pattern below would also backtrack quadratically over a long run of spaces. */
const SIZE_TEXT_MAX_CHARS = 64;

/** A byte count: an integer, or a string like "1GiB", "512M", "10 GB". */
export function readSizeBytes(raw: unknown, field: string, minBytes: number): number {
  let bytes: number | undefined;
  if (typeof raw === 'number') bytes = raw;
  else if (typeof raw === 'string' && raw.length <= SIZE_TEXT_MAX_CHARS) {
    const match = /^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$/.exec(raw);
    const unit = match?.[2]?.toLowerCase() ?? '';
    const scale = SIZE_UNITS[unit];
    if (match !== null && scale !== undefined) bytes = Math.floor(Number(match[1]) * scale);
  }
  if (bytes === undefined || !Number.isSafeInteger(bytes)) {
    throw configError(field, `expected a size in bytes (like 1073741824 or "1GiB"), got ${show(raw)}`);
  }
  if (bytes < minBytes) throw configError(field, `${bytes} bytes is too small (at least ${minBytes})`);
  if (bytes % 4096 !== 0) throw configError(field, `${bytes} bytes is not a multiple of 4096`);
  return bytes;
}

/** Element and volume names: short, printable, safe in URLs, file names and NBD export names. */
export function readName(raw: unknown, field: string): string {
  const name = readString(raw, field, 64);
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(name)) {
    throw configError(field, `invalid name ${show(name)}`, 'use letters, digits, ".", "_" and "-" (starting with a letter or digit), at most 64 characters');
  }
  return name;
}
