// Option haggling as a socket-free state machine: the connection feeds it bytes and writes
// whatever it queues in `output`. The outcome says what to do next: wait, close, enter
// transmission, or upgrade the socket to TLS (STARTTLS) and keep feeding the same machine.

import type { NbdExport, NbdExportProvider } from '../backend.js';
import { ByteAccumulator } from '../codec/accumulator.js';
import { view } from '../codec/bytes.js';
import {
  type NbdOption, decodeClientFlags, decodeOption, decodeOptionHeader, encodeExportNameReply, encodeInfoBlockSize,
  encodeInfoExport, encodeInfoString, encodeOptionError, encodeOptionReply, encodeServerEntry,
} from '../codec/handshake.js';
import { ClientFlag, Info, Opt, Rep, Size, TransmissionFlag } from '../constants.js';
import { MetaContextNegotiation, type SelectedContext } from './meta-context.js';

export interface HandshakeConfig {
  readonly provider: NbdExportProvider;
  readonly optionDataMaxBytes: number;
  /** Bounds the haggling loop; a client needs a handful of options. */
  readonly optionsMax: number;
  /**
   * proto.md's server modes. 'none' (NOTLS): STARTTLS gets ERR_UNSUP. 'optional' (SELECTIVETLS,
   * no export TLS-only): STARTTLS is ACKed, everything works either way. 'required' (FORCEDTLS):
   * before STARTTLS every option but ABORT gets ERR_TLS_REQD, and EXPORT_NAME closes.
   */
  readonly tls: TlsMode;
}

export type TlsMode = 'none' | 'optional' | 'required';

export interface TransmissionSetup {
  readonly export: NbdExport;
  /** True also when extended headers are on (they imply structured replies). */
  readonly structuredReplies: boolean;
  /** 32-byte requests and reply headers (NBD_OPT_EXTENDED_HEADERS). */
  readonly extendedHeaders: boolean;
  /** What NBD_OPT_SET_META_CONTEXT selected for this export; empty: BLOCK_STATUS is refused. */
  readonly metaContexts: readonly SelectedContext[];
  readonly transmissionFlags: number;
}

export type HandshakeStep =
  | { readonly kind: 'need-more' }
  | { readonly kind: 'close'; readonly reason: string; readonly level: 'info' | 'warn' }
  | { readonly kind: 'transmission'; readonly setup: TransmissionSetup }
  | { readonly kind: 'starttls' };

/** Handshake flags we advertise: fixed newstyle, and no 124 zero bytes if the client agrees. */
export const SERVER_HANDSHAKE_FLAGS = 0b11;

export function transmissionFlagsFor(exp: NbdExport, structuredReplies: boolean): number {
  let flags: number = TransmissionFlag.HAS_FLAGS;
  if (exp.readOnly) flags |= TransmissionFlag.READ_ONLY;
  if (exp.canFlush) flags |= TransmissionFlag.SEND_FLUSH;
  if (exp.canFua && !exp.readOnly) flags |= TransmissionFlag.SEND_FUA;
  if (exp.canTrim && !exp.readOnly) flags |= TransmissionFlag.SEND_TRIM;
  if (exp.canWriteZeroes && !exp.readOnly) flags |= TransmissionFlag.SEND_WRITE_ZEROES;
  // Reads always go out as one chunk, so "don't fragment" is free once chunks exist at all
  // (extended headers imply structured replies: callers pass true for them too).
  if (structuredReplies) flags |= TransmissionFlag.SEND_DF;
  if (exp.canMultiConn) flags |= TransmissionFlag.CAN_MULTI_CONN;
  if (exp.canCache) flags |= TransmissionFlag.SEND_CACHE;
  if (exp.resize !== undefined && !exp.readOnly) flags |= TransmissionFlag.SEND_RESIZE;
  return flags;
}

export class ServerHandshake {
  /** Bytes to send, in order; the driver drains it after every advance(). */
  readonly output: Uint8Array[] = [];
  private phase: 'client-flags' | 'options' | 'done' = 'client-flags';
  private noZeroes = false;
  private structuredReplies = false;
  private extendedHeaders = false;
  private readonly meta = new MetaContextNegotiation();
  private optionsSeen = 0;
  private tlsActive = false;

  constructor(private readonly config: HandshakeConfig) {
    if (config.optionsMax <= 0 || config.optionDataMaxBytes < Size.OPTION_HEADER) throw new RangeError('bad handshake config');
  }

  /** Consumes as many whole messages from `acc` as it can. */
  advance(acc: ByteAccumulator): HandshakeStep {
    if (this.phase === 'done') throw new Error('handshake already finished');
    if (this.phase === 'client-flags') {
      const flags = decodeClientFlags(acc.peek(Math.min(acc.length, Size.CLIENT_FLAGS)), ClientFlag.FIXED_NEWSTYLE | ClientFlag.NO_ZEROES);
      if (flags.kind === 'need') return { kind: 'need-more' };
      if (flags.kind === 'error') return this.finish({ kind: 'close', reason: flags.error.message, level: 'warn' });
      acc.consume(flags.consumedBytes);
      // proto.md: TLS needs fixed newstyle; without it the server must not offer TLS at all.
      if (this.config.tls === 'required' && (flags.value & ClientFlag.FIXED_NEWSTYLE) === 0) {
        return this.finish({ kind: 'close', reason: 'client lacks fixed newstyle, and TLS is required', level: 'warn' });
      }
      this.noZeroes = (flags.value & ClientFlag.NO_ZEROES) !== 0;
      this.phase = 'options';
    }
    // Bounded by optionsMax over the connection's lifetime.
    while (this.optionsSeen < this.config.optionsMax) {
      const header = decodeOptionHeader(acc.peek(Math.min(acc.length, Size.OPTION_HEADER)), this.config.optionDataMaxBytes);
      if (header.kind === 'need') return { kind: 'need-more' };
      if (header.kind === 'error') {
        if (header.error.code === 'option-too-large') {
          // Reply so the client learns why, then close: skipping an unbounded payload is not worth it.
          const option = view(acc.peek(Size.OPTION_HEADER)).getUint32(8);
          this.output.push(encodeOptionError(option, Rep.ERR_TOO_BIG, 'option data too large'));
        }
        return this.finish({ kind: 'close', reason: header.error.message, level: 'warn' });
      }
      const totalBytes = Size.OPTION_HEADER + header.value.dataBytes;
      if (acc.length < totalBytes) return { kind: 'need-more' };
      const decoded = decodeOption(acc.peek(totalBytes), this.config.optionDataMaxBytes);
      if (decoded.kind !== 'value') throw new Error('option decode disagrees with its header');
      acc.consume(decoded.consumedBytes);
      this.optionsSeen += 1;
      const option = decoded.value;
      const step = this.waitsForTls(option) ? this.refuseBeforeTls(option) : this.handle(option, acc);
      if (step !== undefined) return step.kind === 'starttls' ? step : this.finish(step);
    }
    return this.finish({ kind: 'close', reason: `more than ${this.config.optionsMax} options`, level: 'warn' });
  }

  private finish(step: HandshakeStep): HandshakeStep {
    this.phase = 'done';
    return step;
  }

  /** FORCEDTLS before the upgrade: only STARTTLS and ABORT get through. */
  private waitsForTls(option: NbdOption): boolean {
    if (this.config.tls !== 'required' || this.tlsActive) return false;
    return option.type !== 'abort' && option.type !== 'starttls' && !(option.type === 'invalid' && option.option === Opt.STARTTLS);
  }

  private refuseBeforeTls(option: NbdOption): HandshakeStep | undefined {
    // EXPORT_NAME cannot carry an error, so the spec says to end the session.
    if (option.type === 'export-name' || (option.type === 'invalid' && option.option === Opt.EXPORT_NAME)) {
      return { kind: 'close', reason: 'NBD_OPT_EXPORT_NAME before NBD_OPT_STARTTLS, and TLS is required', level: 'warn' };
    }
    this.output.push(encodeOptionError(optionCode(option), Rep.ERR_TLS_REQD, 'TLS is required: send NBD_OPT_STARTTLS first'));
    return undefined;
  }

  private startTls(acc: ByteAccumulator): HandshakeStep | undefined {
    if (this.config.tls === 'none') {
      this.output.push(encodeOptionError(Opt.STARTTLS, Rep.ERR_UNSUP, 'TLS is not configured on this server'));
      return undefined;
    }
    if (this.tlsActive) {
      this.output.push(encodeOptionError(Opt.STARTTLS, Rep.ERR_INVALID, 'TLS is already active'));
      return undefined;
    }
    // Bytes behind STARTTLS came in plaintext before our reply; reading them after the upgrade
    // would let a man in the middle inject options into the protected session (nbdkit CVE-2021-3716).
    if (acc.length > 0) return { kind: 'close', reason: 'data sent after NBD_OPT_STARTTLS before its reply', level: 'warn' };
    this.output.push(encodeOptionReply(Opt.STARTTLS, Rep.ACK));
    this.tlsActive = true;
    // Nothing negotiated in plaintext survives the upgrade (as nbdkit and qemu-nbd do).
    this.structuredReplies = false;
    this.extendedHeaders = false;
    this.meta.reset();
    return { kind: 'starttls' };
  }

  /** Answers one option; returns a step only when haggling ends. */
  private handle(option: NbdOption, acc: ByteAccumulator): HandshakeStep | undefined {
    switch (option.type) {
      case 'export-name':
        return this.exportName(option.name);
      case 'abort':
        this.output.push(encodeOptionReply(Opt.ABORT, Rep.ACK));
        return { kind: 'close', reason: 'client sent NBD_OPT_ABORT', level: 'info' };
      case 'list':
        for (const entry of this.config.provider.list()) this.output.push(encodeServerEntry(Opt.LIST, entry.name, entry.description));
        this.output.push(encodeOptionReply(Opt.LIST, Rep.ACK));
        return undefined;
      case 'starttls':
        return this.startTls(acc);
      case 'structured-reply':
        if (this.extendedHeaders) {
          // Asking for the weaker mode after the stronger one: the spec's dedicated error.
          this.output.push(encodeOptionError(Opt.STRUCTURED_REPLY, Rep.ERR_EXT_HEADER_REQD, 'extended headers are already negotiated'));
          return undefined;
        }
        this.structuredReplies = true;
        this.output.push(encodeOptionReply(Opt.STRUCTURED_REPLY, Rep.ACK));
        return undefined;
      case 'extended-headers':
        this.negotiateExtendedHeaders();
        return undefined;
      case 'list-meta-context':
      case 'set-meta-context':
        this.metaContext(option.type, option.name, option.queries);
        return undefined;
      case 'info':
      case 'go':
        return this.infoOrGo(option.type, option.name, option.infoRequests);
      case 'invalid':
        if (option.option === Opt.EXPORT_NAME) return { kind: 'close', reason: option.reason, level: 'warn' };
        this.output.push(encodeOptionError(option.option, Rep.ERR_INVALID, option.reason));
        return undefined;
      case 'unsupported':
        this.output.push(encodeOptionError(option.option, Rep.ERR_UNSUP, `option ${option.option} is not supported`));
        return undefined;
    }
  }

  private negotiateExtendedHeaders(): void {
    if (this.extendedHeaders) {
      this.output.push(encodeOptionError(Opt.EXTENDED_HEADERS, Rep.ERR_INVALID, 'extended headers are already negotiated'));
      return;
    }
    this.extendedHeaders = true;
    this.structuredReplies = true; // implied: every reply is a chunk from here on
    // Contexts were selected for the old header mode; the client selects again in the new one.
    this.meta.reset();
    this.output.push(encodeOptionReply(Opt.EXTENDED_HEADERS, Rep.ACK));
  }

  private metaContext(kind: 'list-meta-context' | 'set-meta-context', name: string, queries: readonly string[]): void {
    const option = kind === 'list-meta-context' ? Opt.LIST_META_CONTEXT : Opt.SET_META_CONTEXT;
    if (kind === 'set-meta-context') this.meta.reset(); // a SET replaces the selection, also when it fails
    if (kind === 'set-meta-context' && !this.structuredReplies) {
      this.output.push(encodeOptionError(option, Rep.ERR_INVALID, 'NBD_OPT_SET_META_CONTEXT needs structured replies first'));
      return;
    }
    const exp = this.config.provider.open(name);
    if (exp === undefined) {
      this.output.push(encodeOptionError(option, Rep.ERR_UNKNOWN, `unknown export ${JSON.stringify(name)}`));
      return;
    }
    this.output.push(...(kind === 'list-meta-context' ? this.meta.list(exp, queries) : this.meta.set(exp, queries)));
    this.output.push(encodeOptionReply(option, Rep.ACK));
  }

  private setup(exp: NbdExport, transmissionFlags: number): TransmissionSetup {
    return {
      export: exp, structuredReplies: this.structuredReplies, extendedHeaders: this.extendedHeaders,
      metaContexts: this.meta.forExport(exp), transmissionFlags,
    };
  }

  private exportName(name: string): HandshakeStep {
    const exp = this.config.provider.open(name);
    // EXPORT_NAME cannot carry an error: the spec says to drop the connection.
    if (exp === undefined) return { kind: 'close', reason: `NBD_OPT_EXPORT_NAME for unknown export ${JSON.stringify(name)}`, level: 'info' };
    const transmissionFlags = transmissionFlagsFor(exp, this.structuredReplies);
    this.output.push(encodeExportNameReply(exp.sizeBytes, transmissionFlags, this.noZeroes));
    return { kind: 'transmission', setup: this.setup(exp, transmissionFlags) };
  }

  private infoOrGo(kind: 'info' | 'go', name: string, infoRequests: readonly number[]): HandshakeStep | undefined {
    const option = kind === 'go' ? Opt.GO : Opt.INFO;
    const exp = this.config.provider.open(name);
    if (exp === undefined) {
      this.output.push(encodeOptionError(option, Rep.ERR_UNKNOWN, `unknown export ${JSON.stringify(name)}`));
      return undefined;
    }
    const wantsBlockSize = infoRequests.includes(Info.BLOCK_SIZE);
    if (!wantsBlockSize && exp.blockSize.minimumBytes > 1 && kind === 'go') {
      this.output.push(encodeOptionError(option, Rep.ERR_BLOCK_SIZE_REQD, 'this export needs block size negotiation'));
      return undefined;
    }
    const transmissionFlags = transmissionFlagsFor(exp, this.structuredReplies);
    this.output.push(encodeInfoExport(option, exp.sizeBytes, transmissionFlags));
    if (infoRequests.includes(Info.NAME)) this.output.push(encodeInfoString(option, Info.NAME, exp.name));
    if (infoRequests.includes(Info.DESCRIPTION) && exp.description !== undefined) {
      this.output.push(encodeInfoString(option, Info.DESCRIPTION, exp.description));
    }
    if (wantsBlockSize) {
      const bs = exp.blockSize;
      this.output.push(encodeInfoBlockSize(option, bs.minimumBytes, bs.preferredBytes, bs.maximumBytes));
    }
    this.output.push(encodeOptionReply(option, Rep.ACK));
    if (kind === 'info') return undefined;
    return { kind: 'transmission', setup: this.setup(exp, transmissionFlags) };
  }
}

/** The wire number of a decoded option, for error replies. */
function optionCode(option: NbdOption): number {
  switch (option.type) {
    case 'export-name': return Opt.EXPORT_NAME;
    case 'abort': return Opt.ABORT;
    case 'list': return Opt.LIST;
    case 'starttls': return Opt.STARTTLS;
    case 'info': return Opt.INFO;
    case 'go': return Opt.GO;
    case 'structured-reply': return Opt.STRUCTURED_REPLY;
    case 'extended-headers': return Opt.EXTENDED_HEADERS;
    case 'list-meta-context': return Opt.LIST_META_CONTEXT;
    case 'set-meta-context': return Opt.SET_META_CONTEXT;
    case 'invalid':
    case 'unsupported': return option.option;
  }
}
