// Hands checked requests to the backend and routes each outcome to its reply slot. Split from
// request-loop.ts, which owns parsing and flow control; this file owns what the backend answers
// (block status replies are built in block-status.ts).

import { type NbdExport, NbdError, type NbdReadResult, type NbdWriteBuffer } from '../backend.js';
import type { NbdRequest } from '../codec/transmission.js';
import { Cmd, CmdFlag, Errno } from '../constants.js';
import { BlockStatusContractError, blockStatusReply } from './block-status.js';
import type { SelectedContext } from './meta-context.js';
import type { ReplySender } from './replies.js';

export class BackendDispatcher {
  private backendErrors = 0;
  private contractErrors = 0;

  constructor(
    private readonly exp: NbdExport,
    private readonly replies: ReplySender,
    /** Contexts selected for BLOCK_STATUS (checkRequest refuses it when there are none). */
    private readonly metaContexts: readonly SelectedContext[],
    /** Logs a backend failure: the first of each kind per connection, so a broken backend cannot flood the log. */
    private readonly logError: (message: string) => void,
  ) {}

  /** Every command but WRITE (whose payload the connection collects first) and DISC. */
  dispatch(slot: number, req: NbdRequest): void {
    const exp = this.exp;
    const fua = (req.flags & CmdFlag.FUA) !== 0;
    const off = req.offsetBytes;
    const len = req.lengthBytes;
    switch (req.type) {
      case Cmd.READ:
        invoke(() => exp.read(off, len)).then(
          (result) => this.onRead(slot, req, result),
          (err: unknown) => this.onFailed(slot, req, err),
        );
        return;
      case Cmd.FLUSH: return this.settle(slot, req, invoke(() => exp.flush()));
      case Cmd.TRIM: return this.settle(slot, req, invoke(() => exp.trim(off, len, { fua })));
      case Cmd.WRITE_ZEROES: {
        const noHole = (req.flags & CmdFlag.NO_HOLE) !== 0;
        return this.settle(slot, req, invoke(() => exp.writeZeroes(off, len, { fua, noHole })));
      }
      case Cmd.CACHE: return this.settle(slot, req, invoke(() => exp.cache(off, len)));
      case Cmd.BLOCK_STATUS:
        invoke(() => blockStatusReply(exp, this.metaContexts, req, this.replies.mode === 'extended')).then(
          (reply) => this.replies.sendOwned(slot, reply),
          (err: unknown) => this.onFailed(slot, req, err),
        );
        return;
      // checkRequest saw the hook; the export's sizeBytes says the new size once this resolves.
      case Cmd.RESIZE: return this.settle(slot, req, invoke(() => exp.resize!(off)));
      default: throw new Error(`dispatch of unchecked command ${req.type}`);
    }
  }

  /** A write whose payload is complete in `buffer`. */
  write(slot: number, req: NbdRequest, buffer: NbdWriteBuffer): void {
    const fua = (req.flags & CmdFlag.FUA) !== 0;
    this.settle(slot, req, invoke(() => this.exp.write(req.offsetBytes, buffer, { fua })));
  }

  /** NbdError carries its errno; anything else is a backend bug or I/O failure: EIO, logged once. */
  errnoOf(err: unknown): number {
    if (err instanceof NbdError) return Errno[err.errno] ?? Errno.EIO;
    const message = err instanceof Error ? err.message : String(err);
    if (err instanceof BlockStatusContractError) {
      if (++this.contractErrors === 1) this.logError(`backend broke the block status contract, replying EIO (further ones not logged): ${message}`);
    } else if (++this.backendErrors === 1) {
      this.logError(`backend error, replying EIO (further ones not logged): ${message}`);
    }
    return Errno.EIO;
  }

  private settle(slot: number, req: NbdRequest, done: Promise<void>): void {
    done.then(
      () => this.replies.sendDone(slot, req),
      (err: unknown) => this.onFailed(slot, req, err),
    );
  }

  private onRead(slot: number, req: NbdRequest, result: NbdReadResult): void {
    let totalBytes = 0;
    for (const chunk of result.chunks) totalBytes += chunk.length;
    if (totalBytes !== req.lengthBytes) {
      result.release();
      this.onFailed(slot, req, new Error(`backend read returned ${totalBytes} bytes, wanted ${req.lengthBytes}`));
      return;
    }
    this.replies.sendRead(slot, req, result, totalBytes);
  }

  private onFailed(slot: number, req: NbdRequest, err: unknown): void {
    this.replies.sendError(slot, req, this.errnoOf(err));
  }
}

/** Runs a backend call so that a synchronous throw becomes a rejection. */
export function invoke<T>(call: () => Promise<T>): Promise<T> {
  try {
    return call();
  } catch (err) {
    return Promise.reject(err);
  }
}
