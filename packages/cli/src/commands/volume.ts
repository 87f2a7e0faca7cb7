// `onestack volume list | create NAME --layout L --element E... | delete NAME | grow NAME --size S
// | add-member NAME ELEMENT | remove-member NAME ELEMENT | reshape NAME --add E.. (reshape.ts) | scrub NAME (scrub.ts)
// | checkpoint, checkpoints, checkpoint-delete (checkpoint.ts)`
import type { CreateVolumeBody } from '../api/client.js';
import { helpHint, parseChoice, parseCommandArgs, parsePositiveInt, parseSize, closest, type OptionSpecs, type ParsedArgs } from '../args.js';
import { usageError, type ExitCode } from '../errors.js';
import { HELP } from '../help.js';
import type { CliIo } from '../io.js';
import { formatBytes, renderVolumeList } from '../render.js';
import { LAYOUTS, ORDERS } from '../api/validate.js';
import { CLIENT_OPTIONS, clientFor, groupHelp, isSubcommand } from './common.js';
import { scrubCommand } from './scrub.js';
import { reshapeCommand } from './reshape.js';
import { checkpointCommand } from './checkpoint.js';

const CHUNK_KIB_MAX = 1024 * 1024;
/** config/write-behind.ts WRITE_BEHIND_MAX_LAG_MIB (the daemon checks it too). */
const WRITE_BEHIND_MAX_LAG_MIB = 1024;
const ELEMENTS_MAX = 256;
const SUBCOMMANDS = ['list', 'create', 'delete', 'grow', 'add-member', 'remove-member', 'reshape', 'scrub', 'checkpoint', 'checkpoints', 'checkpoint-delete'];

const CREATE_OPTIONS: OptionSpecs = {
  ...CLIENT_OPTIONS,
  layout: { type: 'string' }, element: { type: 'string', multiple: true, greedy: true },
  'chunk-kib': { type: 'string' }, size: { type: 'string' }, order: { type: 'string' }, integrity: { type: 'boolean' },
  'write-behind': { type: 'string' },
};

export async function volumeCommand(argv: readonly string[], io: CliIo): Promise<ExitCode> {
  const sub = argv[0];
  if (!isSubcommand(sub)) return groupHelp('volume', sub, io);
  const rest = argv.slice(1);
  switch (sub) {
    case 'list': {
      const args = parseCommandArgs('volume list', rest, { ...CLIENT_OPTIONS, json: { type: 'boolean' } });
      if (args.values['help'] === true) { io.stdout(HELP['volume'] ?? ''); return 0; }
      expectPositionals('volume list', args, 0);
      const volumes = await clientFor(args.values, io).volumes();
      io.stdout(args.values['json'] === true ? JSON.stringify(volumes, null, 2) + '\n' : renderVolumeList(volumes));
      return 0;
    }
    case 'create': {
      const args = parseCommandArgs('volume create', rest, CREATE_OPTIONS);
      if (args.values['help'] === true) { io.stdout(HELP['volume'] ?? ''); return 0; }
      const body = createBody(args);
      const volume = await clientFor(args.values, io).createVolume(body);
      io.stdout(`created volume ${volume.name}: ${volume.layout}, ${formatBytes(volume.sizeBytes)}, ${volume.state}, ` +
        `elements ${volume.elements.map((e) => e.name).join(', ')}\n`);
      return 0;
    }
    case 'delete': {
      const args = parseCommandArgs('volume delete', rest, CLIENT_OPTIONS);
      if (args.values['help'] === true) { io.stdout(HELP['volume'] ?? ''); return 0; }
      const name = expectPositionals('volume delete', args, 1)[0] ?? '';
      await clientFor(args.values, io).deleteVolume(name);
      io.stdout(`deleted volume ${name}\n`);
      return 0;
    }
    case 'grow': {
      const args = parseCommandArgs('volume grow', rest, { ...CLIENT_OPTIONS, size: { type: 'string' }, json: { type: 'boolean' } });
      if (args.values['help'] === true) { io.stdout(HELP['volume'] ?? ''); return 0; }
      const name = expectPositionals('volume grow', args, 1)[0] ?? '';
      if (typeof args.values['size'] !== 'string') throw usageError('volume grow needs --size', 'volume grow', 'onestack volume grow NAME --size 2G');
      const sizeBytes = parseSize(args.values['size'], '--size');
      const volume = await clientFor(args.values, io).growVolume(name, sizeBytes);
      io.stdout(args.values['json'] === true ? JSON.stringify(volume, null, 2) + '\n' : `volume ${volume.name}: ${formatBytes(volume.sizeBytes)} (${volume.sizeBytes} bytes)\n`);
      return 0;
    }
    case 'add-member':
    case 'remove-member':
      return membersCommand(sub, rest, io);
    case 'reshape':
      return reshapeCommand(rest, io);
    case 'scrub':
      return scrubCommand(rest, io);
    case 'checkpoint':
    case 'checkpoints':
    case 'checkpoint-delete':
      return checkpointCommand(sub, rest, io);
    default:
      throw unknownSubcommand('volume', sub, SUBCOMMANDS);
  }
}

/** `volume add-member NAME ELEMENT` (rebuild in the background) and `volume remove-member NAME ELEMENT`. */
async function membersCommand(sub: 'add-member' | 'remove-member', rest: readonly string[], io: CliIo): Promise<ExitCode> {
  const command = `volume ${sub}`;
  const args = parseCommandArgs(command, rest, { ...CLIENT_OPTIONS, json: { type: 'boolean' } });
  if (args.values['help'] === true) { io.stdout(HELP['volume'] ?? ''); return 0; }
  const [name = '', element = ''] = expectPositionals(command, args, 2);
  const client = clientFor(args.values, io);
  const volume = sub === 'add-member' ? await client.addMember(name, element) : await client.removeMember(name, element);
  const legs = volume.elements.map((e) => `${e.name} ${e.state}`).join(', ');
  io.stdout(args.values['json'] === true ? JSON.stringify(volume, null, 2) + '\n'
    : `volume ${volume.name}: ${sub === 'add-member' ? `added ${element}` : `removed ${element}`}; ${volume.elements.length} legs: ${legs}\n`);
  return 0;
}

/** Validates `volume create` locally so typos fail fast, before the daemon is asked. */
export function createBody(args: ParsedArgs): CreateVolumeBody {
  const v = args.values;
  const elementFlags = Array.isArray(v['element']) ? v['element'] : [];
  const named = args.positionals;
  if (named.length === 0) throw usageError('volume create needs a NAME', 'volume create', 'onestack volume create NAME --layout L --element E...');
  if (named.length > 1) throw usageError(`unexpected argument "${named[1]}"`, 'volume create', helpHint('volume create'));
  if (typeof v['layout'] !== 'string') throw usageError('volume create needs --layout', 'volume create', `one of: ${LAYOUTS.join(', ')}`);
  const elements = elementFlags.flatMap((e) => e.split(',')).map((e) => e.trim()).filter((e) => e !== '');
  if (elements.length === 0) throw usageError('volume create needs --element', 'volume create', 'name the elements in role order: --element d0 --element d1');
  if (elements.length > ELEMENTS_MAX) throw usageError(`too many elements (${elements.length}, at most ${ELEMENTS_MAX})`, '--element');
  const duplicate = elements.find((e, i) => elements.indexOf(e) !== i);
  if (duplicate !== undefined) throw usageError(`element ${duplicate} named twice`, '--element');
  const body: CreateVolumeBody = { name: named[0] ?? '', layout: parseChoice(v['layout'], '--layout', LAYOUTS), elements };
  if (typeof v['chunk-kib'] === 'string') body.chunkKiB = parsePositiveInt(v['chunk-kib'], '--chunk-kib', CHUNK_KIB_MAX);
  if (typeof v['size'] === 'string') body.sizeBytes = parseSize(v['size'], '--size');
  if (typeof v['order'] === 'string') body.order = parseChoice(v['order'], '--order', ORDERS);
  if (v['integrity'] === true) {
    if (body.layout === 'linear' || body.layout === 'raid0') {
      throw usageError(`--integrity needs a layout that can repair a bad block (raid1, raid10, raid5 or raid6); this volume is ${body.layout}`, '--integrity', 'drop --integrity, or use --layout raid1, raid10, raid5 or raid6');
    }
    body.integrity = true;
  }
  if (typeof v['write-behind'] === 'string') body.writeBehind = parseWriteBehind(v['write-behind'], body.layout, elements);
  return body;
}

/** `--write-behind ELEMENT[:maxLagMiB]`: a leg of this raid1/raid10 written after the acknowledgement (docs/durability.md). */
export function parseWriteBehind(text: string, layout: string, elements: readonly string[]): { element: string; maxLagMiB?: number } {
  const flag = '--write-behind';
  if (layout !== 'raid1' && layout !== 'raid10') throw usageError(`${flag} is for raid1 and raid10 volumes (this one is ${layout})`, flag, 'drop it, or use --layout raid1 or raid10');
  const m = /^([^:]+)(?::(.*))?$/.exec(text.trim());
  const element = m?.[1]?.trim() ?? '';
  if (element === '') throw usageError(`${flag} needs an element name`, flag, `${flag} ELEMENT[:maxLagMiB], e.g. ${flag} ${elements.at(-1) ?? 'r0'}:64`);
  if (!elements.includes(element)) throw usageError(`${flag}: ${element} is not one of this volume's elements`, flag, `one of ${elements.join(', ')}`);
  if (elements.length < 2) throw usageError(`${flag}: the write-behind leg cannot be the only leg`, flag);
  const lag = m?.[2];
  return lag === undefined ? { element } : { element, maxLagMiB: parsePositiveInt(lag, `${flag} maxLagMiB`, WRITE_BEHIND_MAX_LAG_MIB) };
}

export function expectPositionals(command: string, args: ParsedArgs, count: number): readonly string[] {
  const p = args.positionals;
  if (p.length < count) throw usageError(`${command} needs ${count === 1 ? 'an argument' : `${count} arguments`}`, command, helpHint(command));
  if (p.length > count) throw usageError(`unexpected argument "${p[count]}"`, command, helpHint(command));
  return p;
}

export function unknownSubcommand(command: string, sub: string, known: readonly string[]): Error {
  const guess = closest(sub, known);
  const hint = guess === undefined ? `one of: ${known.join(', ')}` : `did you mean: onestack ${command} ${guess}?`;
  return usageError(`unknown command "${command} ${sub}"`, command, hint);
}
