// `onestack rdma [--json]`: this host's RDMA devices as the addon's libibverbs probe sees them.
// Local only (no daemon): it answers "could RDMA work here?" before any transport is configured.
import { helpHint, parseCommandArgs } from '../args.js';
import { usageError, type ExitCode } from '../errors.js';
import { HELP } from '../help.js';
import type { CliIo } from '../io.js';

export async function rdmaCommand(argv: readonly string[], io: CliIo): Promise<ExitCode> {
  const args = parseCommandArgs('rdma', argv, { json: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } });
  if (args.values['help'] === true) { io.stdout(HELP['rdma'] ?? ''); return 0; }
  if (args.positionals.length > 0) throw usageError(`unexpected argument "${args.positionals[0]}"`, 'rdma', helpHint('rdma'));
  // Loaded here, not at start-up: the other client commands stay fast.
  const { formatRdmaLine, rdmaProbe } = await import('@onestack/engine');
  const probe = rdmaProbe();
  const line = formatRdmaLine(probe);
  // "No device" is an answer, not a failure: exit 0 either way.
  io.stdout(args.values['json'] === true ? JSON.stringify({ ...probe, summary: line }, null, 2) + '\n' : line + '\n');
  return 0;
}
