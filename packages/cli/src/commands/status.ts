// `onestack status [--json] [--watch [--count N]]`
import type { EngineStatus } from '@onestack/engine';
import { parseCommandArgs, parsePositiveInt, helpHint } from '../args.js';
import { usageError, type ExitCode } from '../errors.js';
import { HELP } from '../help.js';
import type { CliIo } from '../io.js';
import { renderStatus, sampleOps, type OpSample } from '../render.js';
import { CLIENT_OPTIONS, clientFor } from './common.js';

const WATCH_INTERVAL_MS = 1000;
/** On a terminal while a rebuild or scrub runs: the engine reports progress every 250 ms. */
const WATCH_LIVE_INTERVAL_MS = 250;
const CURSOR_HOME = '\x1b[H';
const CLEAR_LINE_END = '\x1b[K';
const CLEAR_BELOW = '\x1b[J';
const FRAMES_MAX = 1_000_000;

export async function statusCommand(argv: readonly string[], io: CliIo): Promise<ExitCode> {
  const args = parseCommandArgs('status', argv, {
    ...CLIENT_OPTIONS, json: { type: 'boolean' }, watch: { type: 'boolean' }, count: { type: 'string' },
  });
  if (args.values['help'] === true) { io.stdout(HELP['status'] ?? ''); return 0; }
  if (args.positionals.length > 0) throw usageError(`unexpected argument "${args.positionals[0]}"`, 'status', helpHint('status'));
  const countText = args.values['count'];
  if (typeof countText === 'string' && args.values['watch'] !== true) {
    throw usageError('--count only makes sense with --watch', 'status', 'add --watch');
  }
  const count = typeof countText === 'string' ? parsePositiveInt(countText, '--count', FRAMES_MAX) : undefined;
  const json = args.values['json'] === true;
  const client = clientFor(args.values, io);
  if (args.values['watch'] !== true) {
    const status = await client.status();
    io.stdout(json ? JSON.stringify(status, null, 2) + '\n' : statusText(status));
    return 0;
  }
  return watch(() => client.status(), io, json, count ?? FRAMES_MAX);
}

/** renderStatus plus the bottom driver's I/O backend line (`io: io_uring (batch ≤32)`); older daemons have no io field. */
export function statusText(status: EngineStatus, previous?: OpSample, current?: OpSample): string {
  const text = renderStatus(status, previous, current);
  if (status.io === undefined) return text;
  const { copies, fastLane } = status.io;
  const copyLine = copies === undefined ? '' : `copies: ${copies.perRequest.toFixed(2)} per request (${copies.copies} copies, ${copies.bytesCopied} bytes over ${copies.requests} requests)\n`;
  const laneLine = fastLane === undefined ? '' : fastLane === null ? 'fast lane: off\n' : `fast lane: ${fastLane.hits} page-cache reads inline, ${fastLane.misses} sent to the queue\n`;
  return `${text}${status.io.summary}\n${copyLine}${laneLine}`;
}

/** Redraws every second until Ctrl-C or `frames` frames; IOPS come from consecutive samples. */
async function watch(fetchStatus: () => Promise<EngineStatus>, io: CliIo, json: boolean, frames: number): Promise<ExitCode> {
  let stopped = false;
  let wake: (() => void) | undefined;
  const onSignal = (): void => { stopped = true; wake?.(); };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  try {
    let previous: OpSample | undefined;
    for (let frame = 0; frame < frames && !stopped; frame++) {
      const startedMs = Date.now();
      const status = await fetchStatus();
      const current = sampleOps(status, Date.now());
      const live = io.stdoutIsTty && !json && status.volumes.some((v) => v.rebuild !== null);
      if (json) {
        io.stdout(JSON.stringify(status) + '\n'); // one object per line (NDJSON)
      } else {
        const stamp = new Date(current.atMs).toISOString();
        const text = `onestack status at ${stamp} (every ${live ? '0.25' : '1'}s, Ctrl-C to stop)\n\n${statusText(status, previous, current)}`;
        io.stdout(io.stdoutIsTty ? redrawInPlace(text) : `${frame > 0 ? '\n' : ''}${text}`);
      }
      // IOPS over at least a second: a live frame keeps the older sample.
      if (previous === undefined || current.atMs - previous.atMs >= WATCH_INTERVAL_MS) previous = current;
      if (frame + 1 >= frames) break;
      const waitMs = Math.max(0, (live ? WATCH_LIVE_INTERVAL_MS : WATCH_INTERVAL_MS) - (Date.now() - startedMs));
      await new Promise<void>((done) => {
        const timer = setTimeout(done, waitMs);
        wake = () => { clearTimeout(timer); done(); };
      });
    }
    return 0;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}

/** Overwrites the previous frame line by line (no clear-screen flash), then clears what is left below. */
export function redrawInPlace(text: string): string {
  const lines = text.endsWith('\n') ? text.slice(0, -1).split('\n') : text.split('\n');
  return CURSOR_HOME + lines.map((l) => l + CLEAR_LINE_END).join('\n') + '\n' + CLEAR_BELOW;
}
