// `onestack status [--json] [--watch [--count N]]`
import type { EngineStatus } from '@onestack/engine';
import { parseCommandArgs, parsePositiveInt, helpHint } from '../args.js';
import { usageError, type ExitCode } from '../errors.js';
import { HELP } from '../help.js';
import type { CliIo } from '../io.js';
import { renderStatus, sampleOps, type OpSample } from '../render.js';
import { CLIENT_OPTIONS, clientFor } from './common.js';

const WATCH_INTERVAL_MS = 1000;
const CLEAR_SCREEN = '\x1b[H\x1b[2J';
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
    io.stdout(json ? JSON.stringify(status, null, 2) + '\n' : renderStatus(status));
    return 0;
  }
  return watch(() => client.status(), io, json, count ?? FRAMES_MAX);
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
      if (json) {
        io.stdout(JSON.stringify(status) + '\n'); // one object per line (NDJSON)
      } else {
        const stamp = new Date(current.atMs).toISOString();
        const head = io.stdoutIsTty ? CLEAR_SCREEN : (frame > 0 ? '\n' : '');
        io.stdout(`${head}onestack status at ${stamp} (every 1s, Ctrl-C to stop)\n\n${renderStatus(status, previous, current)}`);
      }
      previous = current;
      if (frame + 1 >= frames) break;
      const waitMs = Math.max(0, WATCH_INTERVAL_MS - (Date.now() - startedMs));
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
