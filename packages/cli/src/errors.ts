// CLI errors: one line `onestack: error: WHAT (WHERE)` plus a hint line, and an exit status
// (SPEC: 0 ok, 1 runtime failure, 2 usage or configuration error).
import type { EngineError } from '@onestack/engine';

export type ExitCode = 0 | 1 | 2;

export class CliError extends Error {
  readonly exitCode: 1 | 2;
  readonly where?: string;
  readonly hint?: string;
  constructor(exitCode: 1 | 2, message: string, where?: string, hint?: string) {
    super(message);
    this.name = 'CliError';
    this.exitCode = exitCode;
    if (where !== undefined && where !== '') this.where = where;
    if (hint !== undefined && hint !== '') this.hint = hint;
  }
}

/** A usage error: bad flag, missing argument, bad value. Exit status 2. */
export function usageError(message: string, where?: string, hint?: string): CliError {
  return new CliError(2, message, where, hint);
}

/** The two lines printed for an error, newline-terminated. */
export function formatError(err: CliError): string {
  const where = err.where === undefined ? '' : ` (${err.where})`;
  const hint = err.hint === undefined ? '' : `onestack: hint: ${err.hint}\n`;
  return `onestack: error: ${oneLine(err.message)}${where}\n${hint}`;
}

/**
 * Turns anything thrown into a CliError. EngineError 'config' is a configuration error (exit 2);
 * every other failure is a runtime failure (exit 1).
 */
export function toCliError(err: unknown): CliError {
  if (err instanceof CliError) return err;
  if (isEngineError(err)) {
    return new CliError(err.code === 'config' ? 2 : 1, err.message, err.where, err.hint);
  }
  if (err instanceof Error) {
    const code = (err as NodeJS.ErrnoException).code;
    return new CliError(1, err.message, typeof code === 'string' ? code : undefined);
  }
  return new CliError(1, String(err));
}

/** A duck check, so client commands need not load the engine module at all. */
export function isEngineError(err: unknown): err is EngineError {
  return err instanceof Error && err.name === 'EngineError' && typeof (err as { code?: unknown }).code === 'string';
}

function oneLine(text: string): string {
  return text.replace(/\s*\n\s*/g, '; ');
}
