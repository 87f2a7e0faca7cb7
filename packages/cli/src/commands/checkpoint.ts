// `onestack volume checkpoint VOLUME [--name N] | checkpoints VOLUME [--json] |
// checkpoint-delete VOLUME NAME`: dirty bitmaps for incremental backup. A checkpoint records the
// regions written since it started; NBD clients read it as the meta context
// qemu:dirty-bitmap:NAME (docs/checkpoints.md).
import { parseCommandArgs } from '../args.js';
import { usageError, type ExitCode } from '../errors.js';
import { HELP } from '../help.js';
import type { CliIo } from '../io.js';
import { formatBytes, renderCheckpointList } from '../render.js';
import { CLIENT_OPTIONS, clientFor } from './common.js';
import { expectPositionals } from './volume.js';

const NAME_RE = /^[A-Za-z0-9._-]{1,64}$/;

function checkName(name: string, command: string): string {
  if (!NAME_RE.test(name)) throw usageError(`invalid checkpoint name "${name.slice(0, 80)}"`, command, '1 to 64 characters: letters, digits, ".", "_" and "-"');
  return name;
}

export async function checkpointCommand(sub: 'checkpoint' | 'checkpoints' | 'checkpoint-delete', argv: readonly string[], io: CliIo): Promise<ExitCode> {
  const command = `volume ${sub}`;
  const options = sub === 'checkpoint' ? { ...CLIENT_OPTIONS, name: { type: 'string' as const }, json: { type: 'boolean' as const } }
    : sub === 'checkpoints' ? { ...CLIENT_OPTIONS, json: { type: 'boolean' as const } } : CLIENT_OPTIONS;
  const args = parseCommandArgs(command, argv, options);
  if (args.values['help'] === true) { io.stdout(HELP['volume'] ?? ''); return 0; }
  const json = args.values['json'] === true;
  if (sub === 'checkpoint-delete') {
    const [volume = '', name = ''] = expectPositionals(command, args, 2);
    await clientFor(args.values, io).deleteCheckpoint(volume, checkName(name, command));
    io.stdout(`deleted checkpoint ${name} of volume ${volume}\n`);
    return 0;
  }
  const volume = expectPositionals(command, args, 1)[0] ?? '';
  const client = clientFor(args.values, io);
  if (sub === 'checkpoints') {
    const list = await client.checkpoints(volume);
    io.stdout(json ? JSON.stringify(list, null, 2) + '\n' : renderCheckpointList(list));
    return 0;
  }
  const wanted = args.values['name'];
  const created = await client.createCheckpoint(volume, typeof wanted === 'string' ? checkName(wanted, command) : undefined);
  io.stdout(json ? JSON.stringify(created, null, 2) + '\n'
    : `checkpoint ${created.name} of volume ${volume} started (${formatBytes(created.regionBytes)} regions); NBD meta context qemu:dirty-bitmap:${created.name}\n`);
  return 0;
}
