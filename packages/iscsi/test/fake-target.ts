// A small in-process iSCSI target over a memory disk, for behaviour tgtd does not show on demand:
// a tiny CmdSN window, Data-In without the S bit, many R2Ts per write, NOP-In pings, garbage,
// silence, and an async logout request. In addition to tgtd, never instead.

import { createServer, type Server, type Socket } from 'node:net';
import { framePdu, PduReassembler, type ReceivedPdu } from '../src/codec/frame.js';
import { Opcode, RESERVED_TAG, type LoginRequest, type ScsiCommand, type TargetPdu } from '../src/codec/pdu.js';
import { decodeText, encodeText } from '../src/codec/text.js';

export interface FakeBehaviour {
  /** Commands the target accepts before answering (MaxCmdSN - ExpCmdSN + 1 when idle). */
  window: number;
  /** Send status in the last Data-In (S bit) or in a separate SCSI Response. */
  statusInDataIn: boolean;
  /** Bytes per Data-In PDU. */
  dataInPieceBytes: number;
  /** Delay before answering each command, to let the window fill. */
  answerDelayMs: number;
  /** Ignore SCSI commands (never answer). */
  silent: boolean;
  /** Ignore the initiator's NOP-Out pings (a half-dead peer). */
  ignorePings: boolean;
}

export interface FakeStats { logins: number; commands: number; maxOutstanding: number; windowViolations: number; nopAnswers: number[]; logouts: number }

export interface FakeTarget {
  readonly port: number;
  readonly disk: Uint8Array;
  readonly behaviour: FakeBehaviour;
  readonly stats: FakeStats;
  /** Sends raw bytes on every open connection. */
  inject(bytes: Uint8Array): void;
  /** Sends a NOP-In ping with this TTT on every connection. */
  ping(ttt: number): void;
  /** Async Message event 1: "please log out". */
  requestLogout(): void;
  close(): Promise<void>;
}

const BLOCK = 512;
const MAX_BURST = 16384;
const NO_DIGESTS = { header: false, data: false };
const INVALID_OPCODE_SENSE = Uint8Array.of(0x70, 0, 5, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0x20, 0);

interface PendingWrite { readonly cmd: ScsiCommand; readonly data: Uint8Array; received: number; ttt: number }

class FakeConnection {
  private statSN = 100;
  private expCmdSN = 0;
  private outstanding = 0;
  private advertisedMax = 0;
  private readonly writes = new Map<number, PendingWrite>();

  constructor(private readonly sock: Socket, private readonly disk: Uint8Array, private readonly b: FakeBehaviour, private readonly stats: FakeStats) {
    const r = new PduReassembler({ dataSegmentBytesMax: 1 << 20, digests: NO_DIGESTS }, (p) => this.onPdu(p));
    sock.setNoDelay(true);
    sock.on('error', () => undefined);
    sock.on('data', (chunk: Buffer) => { try { r.push(chunk); } catch { sock.destroy(); } });
  }

  /** The window counts commands not yet answered, as a real target's queue does. */
  seq(advance: boolean): { statSN: number; expCmdSN: number; maxCmdSN: number } {
    const maxCmdSN = (this.expCmdSN + this.b.window - 1 - this.outstanding) >>> 0;
    if (((maxCmdSN - this.advertisedMax) | 0) > 0) this.advertisedMax = maxCmdSN;
    return { statSN: advance ? this.statSN++ : this.statSN, expCmdSN: this.expCmdSN, maxCmdSN };
  }

  send(pdu: TargetPdu, data: Uint8Array | null = null): void {
    if (!this.sock.destroyed) for (const p of framePdu(pdu, data, NO_DIGESTS)) this.sock.write(p);
  }

  private respond(cmd: ScsiCommand, status: number, sense: Uint8Array | null, residual = 0): void {
    this.outstanding--;
    const data = sense === null ? null : new Uint8Array([0, sense.length, ...sense]);
    this.send({
      opcode: Opcode.ScsiResponse, bidiOverflow: false, bidiUnderflow: false, overflow: false, underflow: residual > 0, response: 0, status,
      itt: cmd.itt, snackTag: 0, ...this.seq(true), expDataSN: 0, bidiResidualCount: 0, residualCount: residual, dataSegmentLength: data?.length ?? 0,
    }, data);
  }

  private dataIn(cmd: ScsiCommand, payload: Uint8Array): void {
    const length = Math.min(payload.length, cmd.expectedDataTransferLength);
    const residual = cmd.expectedDataTransferLength - length;
    let dataSN = 0;
    for (let at = 0; at < length; at += this.b.dataInPieceBytes) {
      const n = Math.min(this.b.dataInPieceBytes, length - at);
      const withStatus = at + n === length && this.b.statusInDataIn;
      if (withStatus) this.outstanding--;
      this.send({
        opcode: Opcode.DataIn, final: at + n === length, ack: false, overflow: false, underflow: withStatus && residual > 0, hasStatus: withStatus, status: 0,
        lun: 0, itt: cmd.itt, ttt: RESERVED_TAG, ...this.seq(withStatus), dataSN: dataSN++, bufferOffset: at, residualCount: withStatus ? residual : 0, dataSegmentLength: n,
      }, payload.subarray(at, at + n));
      if (withStatus) return;
    }
    this.respond(cmd, 0, null, residual);
  }

  private r2t(w: PendingWrite): void {
    const want = Math.min(MAX_BURST, w.cmd.expectedDataTransferLength - w.received);
    this.send({ opcode: Opcode.R2T, lun: 0, itt: w.cmd.itt, ttt: ++w.ttt, ...this.seq(false), r2tSN: 0, bufferOffset: w.received, desiredDataTransferLength: want, dataSegmentLength: 0 });
  }

  private inquiry(cmd: ScsiCommand): void {
    const c = cmd.cdb;
    if ((c[1]! & 1) === 0) {
      const d = new Uint8Array(36);
      d[2] = 6;
      d.set(new TextEncoder().encode('FAKE    MEMDISK         0001'), 8);
      return this.dataIn(cmd, d);
    }
    if (c[2] === 0x00) return this.dataIn(cmd, Uint8Array.of(0, 0, 0, 2, 0x00, 0xb0));
    const limits = new Uint8Array(64);
    limits[1] = 0xb0; limits[3] = 0x3c; limits[11] = 64; // MAXIMUM TRANSFER LENGTH 64 blocks = 32 KiB
    return this.dataIn(cmd, limits);
  }

  private execute(cmd: ScsiCommand, immediate: Uint8Array): void {
    const c = cmd.cdb;
    const u32 = (at: number): number => ((c[at]! << 24) | (c[at + 1]! << 16) | (c[at + 2]! << 8) | c[at + 3]!) >>> 0;
    const lba = u32(2) * 2 ** 32 + u32(6);
    switch (c[0]) {
      case 0x00: case 0x35: case 0x91: return this.respond(cmd, 0, null);
      case 0x12: return this.inquiry(cmd);
      case 0x1a: return this.dataIn(cmd, Uint8Array.of(3, 0, 0x10, 0)); // DPOFUA
      case 0x9e: {
        const d = new Uint8Array(32);
        new DataView(d.buffer).setUint32(4, this.disk.length / BLOCK - 1);
        d[10] = 2; // 512-byte blocks
        return this.dataIn(cmd, d);
      }
      case 0x88: return this.dataIn(cmd, this.disk.subarray(lba * BLOCK, lba * BLOCK + u32(10) * BLOCK));
      case 0x8a: {
        const w: PendingWrite = { cmd, data: this.disk.subarray(lba * BLOCK, lba * BLOCK + cmd.expectedDataTransferLength), received: immediate.length, ttt: 0 };
        w.data.set(immediate);
        if (w.received === cmd.expectedDataTransferLength) return this.respond(cmd, 0, null);
        this.writes.set(cmd.itt, w);
        return this.r2t(w);
      }
      default: return this.respond(cmd, 2, INVALID_OPCODE_SENSE);
    }
  }

  private onPdu({ bhs, data }: ReceivedPdu): void {
    switch (bhs.opcode) {
      case Opcode.LoginRequest: return this.login(bhs, data);
      case Opcode.ScsiCommand: {
        this.stats.commands++;
        if (((bhs.cmdSN - this.advertisedMax) | 0) > 0) this.stats.windowViolations++;
        this.expCmdSN = (bhs.cmdSN + 1) >>> 0;
        this.stats.maxOutstanding = Math.max(this.stats.maxOutstanding, ++this.outstanding);
        if (this.b.silent) return;
        const imm = data.slice();
        setTimeout(() => this.execute(bhs, imm), this.b.answerDelayMs);
        return;
      }
      case Opcode.DataOut: {
        const w = this.writes.get(bhs.itt);
        if (w === undefined) return;
        w.data.set(data, bhs.bufferOffset);
        w.received = Math.max(w.received, bhs.bufferOffset + data.length);
        if (!bhs.final) return;
        if (w.received < w.cmd.expectedDataTransferLength) return this.r2t(w);
        this.writes.delete(bhs.itt);
        return this.respond(w.cmd, 0, null);
      }
      case Opcode.NopOut:
        if (bhs.itt === RESERVED_TAG) { this.stats.nopAnswers.push(bhs.ttt); return; }
        if (this.b.ignorePings) return;
        return this.send({ opcode: Opcode.NopIn, lun: 0, itt: bhs.itt, ttt: RESERVED_TAG, ...this.seq(true), dataSegmentLength: 0 });
      case Opcode.LogoutRequest:
        this.stats.logouts++;
        this.send({ opcode: Opcode.LogoutResponse, response: 0, itt: bhs.itt, ...this.seq(true), time2Wait: 0, time2Retain: 0, dataSegmentLength: 0 });
        this.sock.end();
        return;
      default:
        return;
    }
  }

  /** Accepts anyone: AuthMethod=None, then our fixed answers (small bursts force R2T chains). */
  private login(req: LoginRequest, data: Uint8Array): void {
    const answers: Array<[string, string]> = [];
    if (req.csg === 0) answers.push(['AuthMethod', 'None']);
    else {
      this.stats.logins++;
      const fixed: Record<string, string> = {
        HeaderDigest: 'None', DataDigest: 'None', InitialR2T: 'Yes', ImmediateData: 'Yes', FirstBurstLength: '65536',
        MaxBurstLength: String(MAX_BURST), DefaultTime2Retain: '0', MaxRecvDataSegmentLength: '8192',
      };
      for (const [k, v] of decodeText(data)) answers.push([k, fixed[k] ?? v]);
    }
    this.expCmdSN = req.cmdSN;
    this.advertisedMax = (req.cmdSN - 1) >>> 0;
    const text = encodeText(answers);
    this.send({
      opcode: Opcode.LoginResponse, transit: true, cont: false, csg: req.csg, nsg: req.nsg, versionMax: 0, versionActive: 0, isid: req.isid,
      tsih: req.csg === 1 ? 7 : 0, itt: req.itt, ...this.seq(true), statusClass: 0, statusDetail: 0, dataSegmentLength: text.length,
    }, text);
  }
}

export async function createFakeTarget(diskBytes: number, behaviour: Partial<FakeBehaviour> = {}): Promise<FakeTarget> {
  const disk = new Uint8Array(diskBytes);
  const b: FakeBehaviour = { window: 4, statusInDataIn: false, dataInPieceBytes: 4096, answerDelayMs: 2, silent: false, ignorePings: false, ...behaviour };
  const stats: FakeStats = { logins: 0, commands: 0, maxOutstanding: 0, windowViolations: 0, nopAnswers: [], logouts: 0 };
  const conns = new Map<Socket, FakeConnection>();
  const server: Server = createServer((sock) => {
    conns.set(sock, new FakeConnection(sock, disk, b, stats));
    sock.on('close', () => conns.delete(sock));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const addr = server.address();
  const port = typeof addr === 'object' && addr !== null ? addr.port : 0;
  return {
    port, disk, behaviour: b, stats,
    inject: (bytes) => { for (const s of conns.keys()) s.write(bytes); },
    ping: (ttt) => { for (const c of conns.values()) c.send({ opcode: Opcode.NopIn, lun: 0, itt: RESERVED_TAG, ttt, ...c.seq(false), dataSegmentLength: 0 }); },
    requestLogout: () => {
      for (const c of conns.values()) {
        c.send({ opcode: Opcode.AsyncMessage, lun: 0, itt: RESERVED_TAG, ...c.seq(false), asyncEvent: 1, asyncVCode: 0, parameter1: 0, parameter2: 0, parameter3: 0, dataSegmentLength: 0 });
      }
    },
    close: async () => { for (const s of conns.keys()) s.destroy(); await new Promise<void>((resolve) => server.close(() => resolve())); },
  };
}
