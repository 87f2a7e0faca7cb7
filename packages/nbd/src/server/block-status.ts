// NBD_CMD_BLOCK_STATUS: asks the backend about every selected meta context, checks each answer
// against the contract in backend.ts (a wrong answer could make a client skip data it must copy,
// so it becomes EIO, never a malformed or misleading reply), and builds the reply: one chunk per
// context, the last flagged DONE, in one buffer owned by this reply.

import type { NbdExport, NbdExtent } from '../backend.js';
import { blockStatusChunkBytes, encodeBlockStatusChunk } from '../codec/block-status.js';
import type { NbdRequest } from '../codec/transmission.js';
import { CmdFlag } from '../constants.js';
import type { SelectedContext } from './meta-context.js';

/** Extents per request, shared among the selected contexts: bounds a reply to ~128 KiB. */
export const BLOCK_STATUS_EXTENTS_MAX = 8192;
/** The requested length is a hint; we ask the backend about at most this much at once. */
const COMPACT_LENGTH_MAX = 0xffffffff;
const EXTENDED_LENGTH_MAX = 2 ** 52;
const U32_MAX = 0xffffffff;

export interface BlockStatusQuery {
  readonly lengthBytes: number;
  readonly extentsMax: number;
}

/** What to ask the backend for a checked request (inside the export, length > 0). */
export function blockStatusQuery(req: NbdRequest, minimumBytes: number, contextCount: number, extended: boolean): BlockStatusQuery {
  if (contextCount <= 0) throw new RangeError('block status without a selected context');
  const extentsMax = (req.flags & CmdFlag.REQ_ONE) !== 0 ? 1 : Math.max(1, Math.floor(BLOCK_STATUS_EXTENTS_MAX / contextCount));
  const cap = extended ? EXTENDED_LENGTH_MAX : COMPACT_LENGTH_MAX;
  // Clamped to whole minimum blocks, so extents the backend aligns stay aligned.
  const capAligned = Math.max(minimumBytes, Math.floor(cap / minimumBytes) * minimumBytes);
  return { lengthBytes: Math.min(req.lengthBytes, capAligned), extentsMax };
}

/** Why a backend answer breaks the contract, or undefined when it is usable. */
export function extentsProblem(extents: unknown, lengthBytes: number, extentsMax: number): string | undefined {
  if (!Array.isArray(extents)) return 'not an array';
  if (extents.length === 0) return 'no extents';
  if (extents.length > extentsMax) return `${extents.length} extents, at most ${extentsMax} allowed`;
  let totalBytes = 0;
  for (let i = 0; i < extents.length; i++) {
    const e = extents[i] as Partial<NbdExtent> | null;
    const len = e?.lengthBytes;
    const flags = e?.flags;
    if (typeof len !== 'number' || !Number.isSafeInteger(len) || len <= 0) return `extent ${i} has length ${String(len)}`;
    if (typeof flags !== 'number' || !Number.isInteger(flags) || flags < 0 || flags > U32_MAX) return `extent ${i} has flags ${String(flags)}`;
    totalBytes += len;
  }
  if (totalBytes > lengthBytes) return `extents cover ${totalBytes} bytes, more than the ${lengthBytes} asked for`;
  return undefined;
}

/** A backend answer that breaks the contract; replied to with EIO and logged. */
export class BlockStatusContractError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'BlockStatusContractError';
  }
}

/**
 * Queries every context and returns the encoded reply. Rejects with the backend's own error
 * (NbdError keeps its errno) or with BlockStatusContractError.
 */
export async function blockStatusReply(
  exp: NbdExport, contexts: readonly SelectedContext[], req: NbdRequest, extended: boolean,
): Promise<Uint8Array> {
  const meta = exp.metaContexts;
  if (meta === undefined) throw new BlockStatusContractError('export offers no meta contexts');
  const q = blockStatusQuery(req, exp.blockSize.minimumBytes, contexts.length, extended);
  const answers = await Promise.all(contexts.map((c) => meta.blockStatus(c.name, req.offsetBytes, q.lengthBytes, q.extentsMax)));
  let totalBytes = 0;
  answers.forEach((extents, i) => {
    const problem = extentsProblem(extents, q.lengthBytes, q.extentsMax);
    const name = (contexts[i] as SelectedContext).name;
    if (problem !== undefined) {
      throw new BlockStatusContractError(`block status of ${JSON.stringify(name)} at ${req.offsetBytes}+${q.lengthBytes}: ${problem}`);
    }
    totalBytes += blockStatusChunkBytes(extents.length, extended);
  });
  const out = new Uint8Array(totalBytes);
  let at = 0;
  answers.forEach((extents, i) => {
    const done = i === answers.length - 1;
    at += encodeBlockStatusChunk(out, at, req, (contexts[i] as SelectedContext).id, extents, done, extended);
  });
  if (at !== totalBytes) throw new Error(`block status reply invariant: wrote ${at} of ${totalBytes} bytes`);
  return out;
}
