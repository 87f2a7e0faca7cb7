// Data copies per request: the engine's status may carry `io.copies` = { requests, copies,
// bytesCopied } (cumulative). The bench reads it before and after each workload and reports the
// difference; a status without it (an older engine) gives "n/a", never an error.
import path from 'node:path';
import { runCommand } from './proc.js';

export interface CopyCounters {
  readonly requests: number;
  readonly copies: number;
  readonly bytesCopied: number;
}

/** Over one workload: copies and bytes copied per request. */
export interface CopyRates {
  readonly requests: number;
  readonly copiesPerRequest: number;
  readonly bytesCopiedPerRequest: number;
}

/** Where a daemon's API answers and where its token lies. */
export interface DaemonApi {
  readonly listen: string;
  readonly dataDir: string;
}

const STATUS_TIMEOUT_MS = 15_000;

function isCounters(x: unknown): x is CopyCounters {
  if (typeof x !== 'object' || x === null) return false;
  const o = x as Record<string, unknown>;
  return ['requests', 'copies', 'bytesCopied'].every((k) => typeof o[k] === 'number' && Number.isFinite(o[k]));
}

/** `status.io.copies` if the status has it in the expected shape, else null. */
export function copiesOf(status: unknown): CopyCounters | null {
  if (typeof status !== 'object' || status === null) return null;
  const io = (status as Record<string, unknown>)['io'];
  if (typeof io !== 'object' || io === null) return null;
  const copies = (io as Record<string, unknown>)['copies'];
  return isCounters(copies) ? copies : null;
}

export function copyRates(before: CopyCounters | null, after: CopyCounters | null): CopyRates | null {
  if (before === null || after === null) return null;
  const requests = after.requests - before.requests;
  if (!(requests > 0)) return null;
  return {
    requests,
    copiesPerRequest: (after.copies - before.copies) / requests,
    bytesCopiedPerRequest: (after.bytesCopied - before.bytesCopied) / requests,
  };
}

/** `onestack status --json` against a running daemon; null when it fails or lacks `io.copies`. */
export async function daemonCopies(repoRoot: string, api: DaemonApi): Promise<CopyCounters | null> {
  const main = path.join(repoRoot, 'packages/cli/dist/main.js');
  const r = await runCommand(process.execPath, [main, 'status', '--json', '--api', api.listen, '--data-dir', api.dataDir], STATUS_TIMEOUT_MS, repoRoot);
  if (r.code !== 0) {
    // Unlike a missing field, a failing status command is worth a line: "n/a" would hide it.
    process.stderr.write(`[bench] onestack status --json failed (exit ${String(r.code)}): ${r.stderr.split('\n')[0] ?? ''}\n`);
    return null;
  }
  try {
    return copiesOf(JSON.parse(r.stdout) as unknown);
  } catch {
    return null;
  }
}

export function formatCopies(c: CopyRates | null | undefined): string {
  if (c === null || c === undefined) return 'n/a';
  return `${c.copiesPerRequest.toFixed(2)} (${(c.bytesCopiedPerRequest / 1024).toFixed(1)} KiB)`;
}
