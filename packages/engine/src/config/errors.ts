// Config errors: one EngineError('config') per problem, naming the field path. The loader later
// rewrites `where` to "FILE:LINE:COL field.path" once it knows where the field was written.
import { EngineError } from '../api-types.js';

/** An EngineError for field `field`; the message starts with the field path. */
export function configError(field: string, message: string, hint?: string): EngineError {
  const what = field === '' ? message : `${field}: ${message}`;
  return new EngineError('config', what, field === '' ? undefined : field, hint ?? 'fix the configuration and start again');
}

/** The field path of a config error (the `where` as raised by the normalizers). */
export function errorField(error: EngineError): string {
  const where = error.where ?? '';
  const space = where.lastIndexOf(' ');
  return space < 0 ? where : where.slice(space + 1);
}

/** Levenshtein distance, bounded: both strings are short config words. */
function distance(a: string, b: string): number {
  if (a.length > 64 || b.length > 64) return Math.max(a.length, b.length);
  let previous = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      current.push(Math.min((previous[j] ?? 0) + 1, (current[j - 1] ?? 0) + 1, (previous[j - 1] ?? 0) + cost));
    }
    previous = current;
  }
  return previous[b.length] ?? 0;
}

/** The closest candidate to `word` if it is close enough to be a typo, else undefined. */
export function didYouMean(word: string, candidates: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const candidate of candidates) {
    const d = distance(word.toLowerCase(), candidate.toLowerCase());
    if (d < bestDistance) {
      best = candidate;
      bestDistance = d;
    }
  }
  const limit = Math.max(1, Math.floor(word.length / 3));
  return bestDistance <= limit ? best : undefined;
}

/** Quotes a value for an error message, bounded so a huge value cannot flood a log line. */
export function show(value: unknown): string {
  let text: string;
  if (typeof value === 'string') text = JSON.stringify(value);
  else if (value === null || value === undefined) text = String(value);
  else if (Array.isArray(value)) text = 'a list';
  else if (typeof value === 'object') text = 'a mapping';
  else text = String(value);
  return text.length > 80 ? `${text.slice(0, 77)}...` : text;
}
