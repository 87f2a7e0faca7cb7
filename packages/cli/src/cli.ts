// The dispatcher: `onestack COMMAND ...` → a command function → exit status. Every error ends
// here as one `onestack: error:` line plus a hint; nothing is thrown past run().
import { closest } from './args.js';
import { statusCommand } from './commands/status.js';
import { elementCommand } from './commands/element.js';
import { volumeCommand } from './commands/volume.js';
import { discoverCommand } from './commands/discover.js';
import { rdmaCommand } from './commands/rdma.js';
import { benchCommand } from './commands/bench.js';
import { formatError, toCliError, usageError, type ExitCode } from './errors.js';
import { NOT_YET, TOP_HELP } from './help.js';
import type { CliIo } from './io.js';
import { cliVersion } from './version.js';

type Command = (argv: readonly string[], io: CliIo) => Promise<ExitCode>;

const COMMANDS: Readonly<Record<string, Command>> = {
  // serve, init (and rdma) load the engine; the other commands only need HTTP, so they start fast.
  serve: async (argv, io) => (await import('./serve.js')).serveCommand(argv, io),
  init: async (argv, io) => (await import('./commands/init.js')).initCommand(argv, io),
  status: statusCommand,
  volume: volumeCommand,
  element: elementCommand,
  discover: discoverCommand,
  rdma: rdmaCommand,
  bench: benchCommand,
};

export async function run(argv: readonly string[], io: CliIo): Promise<ExitCode> {
  try {
    return await dispatch(argv, io);
  } catch (err) {
    const cliError = toCliError(err);
    io.stderr(formatError(cliError));
    return cliError.exitCode;
  }
}

async function dispatch(argv: readonly string[], io: CliIo): Promise<ExitCode> {
  const name = argv[0];
  if (name === undefined) { io.stderr(TOP_HELP); return 2; }
  if (name === '--help' || name === '-h' || name === 'help') { io.stdout(TOP_HELP); return 0; }
  if (name === '--version' || name === '-V' || name === 'version') { io.stdout(`onestack ${cliVersion()}\n`); return 0; }
  const command = COMMANDS[name];
  if (command !== undefined) return command(argv.slice(1), io);
  const later = NOT_YET[name];
  if (later !== undefined) {
    throw usageError(`onestack ${name} is not yet available in this version (${later})`, name, 'see: onestack --help');
  }
  const known = [...Object.keys(COMMANDS), ...Object.keys(NOT_YET).filter((n) => !n.includes(' '))];
  const guess = closest(name, known);
  const hint = guess === undefined ? 'see: onestack --help' : `did you mean: onestack ${guess}?`;
  throw usageError(name.startsWith('-') ? `unknown option ${name}` : `unknown command "${name}"`, 'onestack', hint);
}
