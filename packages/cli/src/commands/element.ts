// `onestack element list | add URI [--name N] [--cache C] [--secret-file F] | remove N | fail N | replace OLD NEW [--volume V]`
import * as path from 'node:path';
import type { AddElementBody } from '../api/client.js';
import { hasInlineSecret, maskUriSecrets } from '../uri-secret.js';
import { parseChoice, parseCommandArgs } from '../args.js';
import { CliError, usageError, type ExitCode } from '../errors.js';
import { HELP } from '../help.js';
import type { CliIo } from '../io.js';
import { formatBytes, renderElementList } from '../render.js';
import { CLIENT_OPTIONS, clientFor, groupHelp, isSubcommand } from './common.js';
import { expectPositionals, unknownSubcommand } from './volume.js';

const SUBCOMMANDS = ['list', 'add', 'remove', 'fail', 'replace'];
import { CACHES } from '../api/validate.js';

export async function elementCommand(argv: readonly string[], io: CliIo): Promise<ExitCode> {
  const sub = argv[0];
  if (!isSubcommand(sub)) return groupHelp('element', sub, io);
  const rest = argv.slice(1);
  switch (sub) {
    case 'list': {
      const args = parseCommandArgs('element list', rest, { ...CLIENT_OPTIONS, json: { type: 'boolean' } });
      if (args.values['help'] === true) { io.stdout(HELP['element'] ?? ''); return 0; }
      expectPositionals('element list', args, 0);
      const elements = await clientFor(args.values, io).elements();
      io.stdout(args.values['json'] === true ? JSON.stringify(elements, null, 2) + '\n' : renderElementList(elements));
      return 0;
    }
    case 'add': {
      const args = parseCommandArgs('element add', rest, { ...CLIENT_OPTIONS, name: { type: 'string' }, cache: { type: 'string' }, 'secret-file': { type: 'string' } });
      if (args.values['help'] === true) { io.stdout(HELP['element'] ?? ''); return 0; }
      const uri = expectPositionals('element add', args, 1)[0] ?? '';
      if (uri.trim() === '') throw usageError('element add needs a URI', 'element add');
      // A secret in argv shows in `ps` and shell history: refused, as `discover` does.
      if (hasInlineSecret(uri)) {
        throw usageError(`the URI ${maskUriSecrets(uri)} carries a secret: secrets are never taken on the command line`, 'element add',
          'write iscsi://USER@HOST/IQN/LUN and pass --secret-file FILE (one line, mode 0600; the daemon reads it)');
      }
      const body: AddElementBody = { uri };
      // The daemon reads the file itself (a path, resolved here so its working directory does not matter).
      if (typeof args.values['secret-file'] === 'string') body.secretFile = path.resolve(args.values['secret-file']);
      if (typeof args.values['name'] === 'string') body.name = args.values['name'];
      if (typeof args.values['cache'] === 'string') body.cache = parseChoice(args.values['cache'], '--cache', CACHES);
      const element = await clientFor(args.values, io).addElement(body);
      io.stdout(`added element ${element.name}: ${element.kind}, ${formatBytes(element.sizeBytes)}, ${element.state}, ${element.uri}\n`);
      return 0;
    }
    case 'remove':
    case 'fail': {
      const command = `element ${sub}`;
      const args = parseCommandArgs(command, rest, CLIENT_OPTIONS);
      if (args.values['help'] === true) { io.stdout(HELP['element'] ?? ''); return 0; }
      const name = expectPositionals(command, args, 1)[0] ?? '';
      const client = clientFor(args.values, io);
      if (sub === 'remove') {
        await client.removeElement(name);
        io.stdout(`removed element ${name}\n`);
      } else {
        const element = await client.failElement(name);
        io.stdout(`marked element ${element.name} failed (state ${element.state}${element.volume === null ? '' : `, volume ${element.volume}`})\n`);
      }
      return 0;
    }
    case 'replace':
      return replace(rest, io);
    default:
      throw unknownSubcommand('element', sub, SUBCOMMANDS);
  }
}

/** Replaces OLD by NEW in OLD's volume (or --volume V); the daemon rebuilds onto NEW in the background. */
async function replace(argv: readonly string[], io: CliIo): Promise<ExitCode> {
  const args = parseCommandArgs('element replace', argv, { ...CLIENT_OPTIONS, volume: { type: 'string' } });
  if (args.values['help'] === true) { io.stdout(HELP['element'] ?? ''); return 0; }
  const [oldName = '', newName = ''] = expectPositionals('element replace', args, 2);
  if (oldName === newName) throw usageError(`element replace needs two different elements (got ${oldName} twice)`, 'element replace', 'onestack element replace OLD NEW');
  const client = clientFor(args.values, io);
  let volume = typeof args.values['volume'] === 'string' ? args.values['volume'] : undefined;
  if (volume === undefined) {
    const old = (await client.elements()).find((e) => e.name === oldName);
    if (old === undefined) throw new CliError(1, `no element named ${oldName}`, 'element replace', 'list them with: onestack element list');
    if (old.volume === null) throw new CliError(1, `element ${oldName} is not part of any volume`, 'element replace', 'nothing to replace: it is a spare or unused');
    volume = old.volume;
  }
  const status = await client.replaceElement(volume, oldName, newName);
  const progress = status.rebuild === null ? '' : ` (${status.rebuild.kind} ${status.rebuild.percent.toFixed(1)}%)`;
  io.stdout(`replacing element ${oldName} with ${newName} in volume ${volume}: ${status.state}${progress}; follow it with: onestack status --watch\n`);
  return 0;
}
