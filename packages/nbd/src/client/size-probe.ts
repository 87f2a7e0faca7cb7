// Learning an export's size now, without touching the connections in use: NBD has no way for a
// server to tell a connected client that the export grew (no server-initiated messages in the
// transmission phase), and the RESIZE extension only covers a client that resizes itself. So a
// short side connection asks NBD_OPT_INFO for NBD_INFO_EXPORT and then sends NBD_OPT_ABORT: any
// fixed-newstyle server answers it (proto.md), and nothing enters transmission.

import { encodeInfoOption, encodeOption } from '../codec/handshake.js';
import { Info, Opt, Rep } from '../constants.js';
import { asRemoteError } from './connect.js';
import { optionError, remoteError } from './errors.js';
import { explainHandshakeFailure, greet, readOptionReply } from './handshake.js';
import type { NbdClientOptions } from './types.js';
import { Wire } from './wire.js';

/** INFO replies carry a handful of items; more than this is a misbehaving server. */
const INFO_REPLIES_MAX = 64;
/** How long to wait for the server to close after NBD_OPT_ABORT. */
const ABORT_GRACE_MAX_MS = 1000;

export interface ExportSizeProbe {
  readonly sizeBytes: number;
  readonly transmissionFlags: number;
}

/** One side handshake: the export's size and transmission flags as the server states them now. */
export async function probeExportSize(opts: NbdClientOptions, where: string, signal?: AbortSignal): Promise<ExportSizeProbe> {
  const wire = Wire.open(opts, where, signal);
  try {
    await wire.waitConnected();
    await greet(wire, opts.tls, opts.host);
    wire.write(encodeInfoOption(Opt.INFO, opts.exportName, [Info.EXPORT]));
    let found: ExportSizeProbe | undefined;
    for (let i = 0; i < INFO_REPLIES_MAX; i++) {
      const reply = await readOptionReply(wire, Opt.INFO);
      if (reply.kind === 'info') {
        if (reply.info.info === 'export') found = { sizeBytes: reply.info.sizeBytes, transmissionFlags: reply.info.transmissionFlags };
        continue;
      }
      if (reply.kind === 'ack') {
        if (found === undefined) throw remoteError('EPROTO', 'the server finished NBD_OPT_INFO without NBD_INFO_EXPORT', where);
        wire.write(encodeOption(Opt.ABORT));
        await wire.end(Math.min(opts.timeoutMs, ABORT_GRACE_MAX_MS));
        return found;
      }
      if (reply.kind === 'error' && reply.replyType === Rep.ERR_UNSUP) {
        throw remoteError('ENOTSUP', 'the server does not support NBD_OPT_INFO, so the export size cannot be asked without a new connection', where);
      }
      if (reply.kind === 'error') throw optionError(reply.replyType, reply.message, `export ${JSON.stringify(opts.exportName)}`, where);
      throw remoteError('EPROTO', 'unexpected reply to NBD_OPT_INFO', where);
    }
    throw remoteError('EPROTO', `more than ${INFO_REPLIES_MAX} replies to NBD_OPT_INFO`, where);
  } catch (err) {
    const failure = explainHandshakeFailure(asRemoteError(err, where), wire, opts.tls);
    wire.fail(failure);
    throw failure;
  }
}
