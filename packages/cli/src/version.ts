// The CLI's version, from packages/cli/package.json (dist/ sits next to it).
import { readFileSync } from 'node:fs';

let version: string | undefined;

export function cliVersion(): string {
  if (version !== undefined) return version;
  try {
    const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version?: unknown };
    version = typeof pkg.version === 'string' ? pkg.version : 'unknown';
  } catch {
    version = 'unknown';
  }
  return version;
}
