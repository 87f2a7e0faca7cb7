// `onestack volume scrub NAME [--repair] [--wait] [--max-mib-per-sec N] [--json] | --cancel`:
// compare a mirror's legs (and rewrite the odd ones with --repair; on an integrity volume the ones
// failing their checksums, named per element in the summary). The daemon runs the scrub;
// --wait follows it through GET /volumes/NAME until the volume's last scrub is this run.
import type { ScrubStatus } from '@onestack/engine';
import type { ApiClient, ScrubBody, ScrubStartedBody } from '../api/client.js';
import { parseCommandArgs, type OptionSpecs } from '../args.js';
import { CliError, usageError, type ExitCode } from '../errors.js';
import { HELP } from '../help.js';
import type { CliIo } from '../io.js';
import { formatBytes, progressLine, scrubSummary } from '../render.js';
import { CLIENT_OPTIONS, clientFor } from './common.js';
import { pollWatch } from './poll-watch.js';
import { expectPositionals } from './volume.js';

const OPTIONS: OptionSpecs = {
  ...CLIENT_OPTIONS,
  repair: { type: 'boolean' }, wait: { type: 'boolean' }, cancel: { type: 'boolean' }, json: { type: 'boolean' },
  'max-mib-per-sec': { type: 'string' },
};
const POLL_MS = 250;
const MIB_PER_SEC_MAX = 1_000_000;

export async function scrubCommand(argv: readonly string[], io: CliIo): Promise<ExitCode> {
  const args = parseCommandArgs('volume scrub', argv, OPTIONS);
  if (args.values['help'] === true) { io.stdout(HELP['volume'] ?? ''); return 0; }
  const name = expectPositionals('volume scrub', args, 1)[0] ?? '';
  const v = args.values;
  const client = clientFor(v, io);
  if (v['cancel'] === true) {
    if (v['repair'] === true || v['wait'] === true || v['max-mib-per-sec'] !== undefined) {
      throw usageError('--cancel takes no other scrub option', 'volume scrub', 'onestack volume scrub NAME --cancel');
    }
    const { cancelled } = await client.cancelScrub(name);
    io.stdout(cancelled ? `cancelled the scrub of volume ${name}\n` : `volume ${name} had no scrub running\n`);
    return 0;
  }
  const body: ScrubBody = { repair: v['repair'] === true };
  if (typeof v['max-mib-per-sec'] === 'string') body.maxMiBPerSec = parseRate(v['max-mib-per-sec']);
  const started = await client.startScrub(name, body);
  const json = v['json'] === true;
  if (v['wait'] !== true) {
    io.stdout(json ? JSON.stringify(started, null, 2) + '\n'
      : `started ${started.kind} of volume ${name} (${formatBytes(started.progress.totalBytes)}); follow it with: onestack status --watch\n`);
    return 0;
  }
  if (!json) io.stdout(`${started.kind} of volume ${name} (${formatBytes(started.progress.totalBytes)})...\n`);
  const result = await waitForScrub(client, started, io, !json);
  io.stdout(json ? JSON.stringify(result, null, 2) + '\n' : scrubSummary(result, name) + '\n');
  return verdict(result, name);
}

function parseRate(text: string): number {
  const rate = Number(text);
  if (text.trim() === '' || !Number.isFinite(rate) || rate < 0 || rate > MIB_PER_SEC_MAX) {
    throw usageError(`--max-mib-per-sec must be a number from 0 (unthrottled) to ${MIB_PER_SEC_MAX}`, '--max-mib-per-sec', `got "${text}"`);
  }
  return rate;
}

/** Exit 0 only when every unit compared agrees now; a mismatch left in place, a cancel or a failure is 1. */
function verdict(result: ScrubStatus, name: string): ExitCode {
  if (result.outcome !== 'done') {
    throw new CliError(1, `the scrub of volume ${name} ${result.outcome === 'cancelled' ? 'was cancelled' : 'failed'}${result.message === undefined ? '' : `: ${result.message}`}`, 'volume scrub');
  }
  const left = result.mismatchedUnits - result.repairedUnits;
  const lost = (result.byElement ?? []).filter((b) => b.unrecoverableBlocks > 0);
  if (lost.length > 0) {
    const where = lost.map((b) => `element ${b.element}: ${b.unrecoverableBlocks}`).join(', ');
    throw new CliError(1, `volume ${name}: blocks failed their checksums on every copy, unrecoverable, left as found (${where})`, 'volume scrub',
      'restore those blocks from a backup; the daemon log names the elements');
  }
  if (left > 0) {
    throw new CliError(1, `volume ${name}: ${left} mismatched unit${left === 1 ? '' : 's'} left as found`, 'volume scrub',
      result.kind === 'check' ? `repair with: onestack volume scrub ${name} --repair` : 'see the daemon log for the legs that failed');
  }
  return 0;
}

/** Polls until the volume's last scrub is this run; shows progress (in place on a terminal). */
async function waitForScrub(client: ApiClient, started: ScrubStartedBody, io: CliIo, showProgress: boolean): Promise<ScrubStatus> {
  const name = started.volume;
  const result = await pollWatch(io, POLL_MS, !showProgress, async (out): Promise<ScrubStatus | undefined> => {
    const volume = await client.volume(name);
    const last = volume.scrub ?? null;
    if (last !== null && last.startedMs === started.startedMs) {
      out.clear();
      return last;
    }
    const r = volume.rebuild;
    const ours = r !== null && (r.kind === 'check' || r.kind === 'repair');
    if (!ours && (last === null || last.startedMs < started.startedMs)) {
      throw new CliError(1, `the scrub of volume ${name} is no longer running and left no result`, 'volume scrub', 'did the daemon restart? see its log');
    }
    if (!ours) throw new CliError(1, `a newer scrub of volume ${name} replaced this one's result`, 'volume scrub');
    out.progress(progressLine(r, name));
    return undefined;
  });
  if (result !== undefined) return result;
  throw new CliError(1, `stopped waiting; the scrub of volume ${name} goes on in the daemon`, 'volume scrub',
    `follow it with onestack status --watch, or cancel it with: onestack volume scrub ${name} --cancel`);
}
