// `onestack volume reshape NAME --add E1[,E2..] [--layout raid5|raid6|raid10] [--max-mib-per-sec N] [--watch]`, or
// `onestack volume reshape NAME --resume [--max-mib-per-sec N]` (a paused one again at once):
// starts an online reshape in the daemon (engine durable/reshape*.ts, docs/reshape.md); --watch
// follows it through GET /volumes/NAME until the volume's reshape is gone.
import type { ApiClient } from '../api/client.js';
import { parseChoice, parseCommandArgs, type OptionSpecs } from '../args.js';
import { CliError, usageError, type ExitCode } from '../errors.js';
import { HELP } from '../help.js';
import type { CliIo } from '../io.js';
import { formatBytes } from '../render.js';
import { reshapeLine } from '../render-reshape.js';
import { CLIENT_OPTIONS, clientFor } from './common.js';
import { pollWatch } from './poll-watch.js';
import { expectPositionals } from './volume.js';

const OPTIONS: OptionSpecs = {
  ...CLIENT_OPTIONS,
  add: { type: 'string', multiple: true, greedy: true }, layout: { type: 'string' }, 'max-mib-per-sec': { type: 'string' },
  watch: { type: 'boolean' }, json: { type: 'boolean' }, resume: { type: 'boolean' },
};
const TARGET_LAYOUTS = ['linear', 'raid0', 'raid5', 'raid6', 'raid10'] as const;
const POLL_MS = 500;
const MIB_PER_SEC_MAX = 1_000_000;

export async function reshapeCommand(argv: readonly string[], io: CliIo): Promise<ExitCode> {
  const args = parseCommandArgs('volume reshape', argv, OPTIONS);
  const v = args.values;
  if (v['help'] === true) { io.stdout(HELP['volume'] ?? ''); return 0; }
  const name = expectPositionals('volume reshape', args, 1)[0] ?? '';
  const add = (Array.isArray(v['add']) ? v['add'] : []).flatMap((e) => e.split(',')).map((e) => e.trim()).filter((e) => e !== '');
  const resume = v['resume'] === true;
  if (resume && (add.length > 0 || typeof v['layout'] === 'string')) throw usageError('--resume takes no --add nor --layout', 'volume reshape', 'onestack volume reshape NAME --resume');
  if (!resume && add.length === 0 && typeof v['layout'] !== 'string') throw usageError('volume reshape needs --add (or --layout, or --resume)', 'volume reshape', 'onestack volume reshape NAME --add E1[,E2..]');
  const body: { add: string[]; layout?: string; maxMiBPerSec?: number; resume?: boolean } = { add };
  if (resume) body.resume = true;
  if (typeof v['layout'] === 'string') body.layout = parseChoice(v['layout'], '--layout', TARGET_LAYOUTS);
  if (typeof v['max-mib-per-sec'] === 'string') {
    const text = v['max-mib-per-sec'];
    const rate = Number(text);
    if (text.trim() === '' || !Number.isFinite(rate) || rate < 0 || rate > MIB_PER_SEC_MAX) {
      throw usageError(`--max-mib-per-sec must be a number from 0 (unthrottled) to ${MIB_PER_SEC_MAX}`, '--max-mib-per-sec', `got "${text}"`);
    }
    body.maxMiBPerSec = rate;
  }
  const client = clientFor(v, io);
  const volume = await client.reshapeVolume(name, body);
  if (v['json'] === true && v['watch'] !== true) { io.stdout(JSON.stringify(volume, null, 2) + '\n'); return 0; }
  const r = volume.reshape ?? null;
  io.stdout(r === null
    ? `volume ${volume.name}: ${volume.layout}, ${volume.elements.length} elements, ${formatBytes(volume.sizeBytes)} (${volume.sizeBytes} bytes)\n`
    : `volume ${volume.name}: ${reshapeLine(r)}; follow it with: onestack status --watch\n`);
  if (v['watch'] !== true) return 0;
  return watch(client, name, io);
}

/** Polls until the reshape is gone (finished) or stopped with an error. */
async function watch(client: ApiClient, name: string, io: CliIo): Promise<ExitCode> {
  const result = await pollWatch(io, POLL_MS, false, async (out): Promise<ExitCode | undefined> => {
    const volume = await client.volume(name);
    const r = volume.reshape ?? null;
    if (r === null) {
      out.clear();
      io.stdout(`volume ${name}: reshaped: ${volume.layout}, ${volume.elements.length} elements, ${formatBytes(volume.sizeBytes)} (${volume.sizeBytes} bytes)\n`);
      return 0;
    }
    if (r.error !== undefined) throw new CliError(1, `the reshape of volume ${name} stopped: ${r.error}`, 'volume reshape', r.retryAtMs !== undefined ? 'it retries by itself; or now: onestack volume reshape NAME --resume' : 'resume it with onestack volume reshape NAME --resume; see the daemon log');
    out.progress(reshapeLine(r));
    return undefined;
  });
  if (result !== undefined) return result;
  throw new CliError(1, `stopped watching; the reshape of volume ${name} goes on in the daemon`, 'volume reshape', 'follow it with onestack status --watch');
}
