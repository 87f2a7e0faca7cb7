// A small in-process iSCSI target over a memory disk, for behaviour tgtd does not show on demand:
// a tiny CmdSN window, Data-In without the S bit, many R2Ts per write, NOP-In pings, garbage,
// silence, and an async logout request. In addition to tgtd, never instead.

import { createServer, type Server, type Socket } from 'node:net';
import { framePdu, PduReassembler, type ReceivedPdu } from '../src/codec/frame.js';
import { Opcode, RESERVED_TAG, type LoginRequest, type ScsiCommand, type TargetPdu } from '../src/codec/pdu.js';
import { decodeText, encodeText } from '../src/codec/text.js';

export interface FakeBehaviour {
  /** MaxCmdSN - ExpCmdSN + 1. */
  window: number;
  /** Send status in the last Data-In (S bit) or in a separate SCSI Response. */
  statusInDataIn: boolean;
  /** Bytes per Data-In PDU. */
  dataInPieceBytes: number;
  /** Delay before answering each command, to let the window fill. */
  answerDelayMs: number;
  /** Ignore SCSI commands (never answer). */
  silent: boolean;
}

export interface FakeTarget {
  readonly port: number;
  readonly disk: Uint8Array;
  readonly behaviour: FakeBehaviour;
  readonly stats: { logins: number; commands: number; maxOutstanding: number; windowViolations: number; nopAnswers: number[]; logouts: number };
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

export async function createFakeTarget(diskBytes: number, behaviour: Partial<FakeBehaviour> = {}): Promise<FakeTarget> {
  const disk = new Uint8Array(diskBytes);
  const b: FakeBehaviour = { window: 4, statusInDataIn: false, dataInPieceBytes: 4096, answerDelayMs: 2, silent: false, ...behaviour };
  const stats = { logins: 0, commands: 0, maxOutstanding: 0, windowViolations: 0, nopAnswers: [] as number[], logouts: 0 };
  const sockets = new Set<Socket>();
  const seqs = new Map<Socket, () => { statSN: number; expCmdSN: number; maxCmdSN: number }>();

  const server: Server = createServer((sock) => {
    sockets.add(sock);
    sock.setNoDelay(true);
    sock.on('close', () => sockets.delete(sock));
    sock.on('error', () => undefined);
    let statSN = 100;
    let expCmdSN = 0;
    let outstanding = 0;
    let advertisedMax = 0;
    const writes = new Map<number, { cmd: ScsiCommand; data: Uint8Array; received: number; ttt: number }>();
    // The window counts commands not yet answered, as a real target's queue does.
    const seq = (advance: boolean): { statSN: number; expCmdSN: number; maxCmdSN: number } => {
      const maxCmdSN = (expCmdSN + b.window - 1 - outstanding) >>> 0;
      if (((maxCmdSN - advertisedMax) | 0) > 0) advertisedMax = maxCmdSN;
      return { statSN: advance ? statSN++ : statSN, expCmdSN, maxCmdSN };
    };
    seqs.set(sock, () => seq(false));
    const send = (pdu: TargetPdu, data: Uint8Array | null = null): void => { if (!sock.destroyed) for (const p of framePdu(pdu, data, NO_DIGESTS)) sock.write(p); };

    const respond = (cmd: ScsiCommand, status: number, sense: Uint8Array | null, residual = 0): void => {
      outstanding--;
      const data = sense === null ? null : new Uint8Array([0, sense.length, ...sense]);
      send({ opcode: Opcode.ScsiResponse, bidiOverflow: false, bidiUnderflow: false, overflow: false, underflow: residual > 0, response: 0, status, itt: cmd.itt, snackTag: 0, ...seq(true), expDataSN: 0, bidiResidualCount: 0, residualCount: residual, dataSegmentLength: data?.length ?? 0 }, data);
    };

    const dataIn = (cmd: ScsiCommand, payload: Uint8Array): void => {
      const length = Math.min(payload.length, cmd.expectedDataTransferLength);
      const residual = cmd.expectedDataTransferLength - length;
      let dataSN = 0;
      for (let at = 0; at < length; at += b.dataInPieceBytes) {
        const n = Math.min(b.dataInPieceBytes, length - at);
        const last = at + n === length;
        const withStatus = last && b.statusInDataIn;
        if (withStatus) outstanding--;
        send({ opcode: Opcode.DataIn, final: last, ack: false, overflow: false, underflow: withStatus && residual > 0, hasStatus: withStatus, status: 0, lun: 0, itt: cmd.itt, ttt: RESERVED_TAG, ...seq(withStatus), dataSN: dataSN++, bufferOffset: at, residualCount: withStatus ? residual : 0, dataSegmentLength: n }, payload.subarray(at, at + n));
        if (withStatus) return;
      }
      respond(cmd, 0, null, residual);
    };

    const r2t = (w: { cmd: ScsiCommand; received: number; ttt: number }): void => {
      const want = Math.min(MAX_BURST, w.cmd.expectedDataTransferLength - w.received);
      send({ opcode: Opcode.R2T, lun: 0, itt: w.cmd.itt, ttt: ++w.ttt, ...seq(false), r2tSN: 0, bufferOffset: w.received, desiredDataTransferLength: want, dataSegmentLength: 0 });
    };

    const execute = (cmd: ScsiCommand, immediate: Uint8Array): void => {
      const c = cmd.cdb;
      const u32 = (at: number): number => ((c[at]! << 24) | (c[at + 1]! << 16) | (c[at + 2]! << 8) | c[at + 3]!) >>> 0;
      const lba = u32(2) * 2 ** 32 + u32(6);
      switch (c[0]) {
        case 0x00: case 0x35: case 0x91: return respond(cmd, 0, null);
        case 0x12: {
          if ((c[1]! & 1) === 0) { const d = new Uint8Array(36); d[2] = 6; d.set(new TextEncoder().encode('FAKE    MEMDISK         0001'), 8); return dataIn(cmd, d); }
          if (c[2] === 0x00) return dataIn(cmd, Uint8Array.of(0, 0, 0, 2, 0x00, 0xb0));
          const bl = new Uint8Array(64); bl[1] = 0xb0; bl[3] = 0x3c; bl[11] = 64; // MAXIMUM TRANSFER LENGTH 64 blocks = 32 KiB
          return dataIn(cmd, bl);
        }
        case 0x9e: { const d = new Uint8Array(32); const last = disk.length / BLOCK - 1; d[4] = last >>> 24; d[5] = (last >>> 16) & 0xff; d[6] = (last >>> 8) & 0xff; d[7] = last & 0xff; d[10] = 2; return dataIn(cmd, d); }
        case 0x1a: return dataIn(cmd, Uint8Array.of(3, 0, 0x10, 0));
        case 0x88: return dataIn(cmd, disk.subarray(lba * BLOCK, lba * BLOCK + u32(10) * BLOCK));
        case 0x8a: {
          const w = { cmd, data: disk.subarray(lba * BLOCK, lba * BLOCK + cmd.expectedDataTransferLength), received: immediate.length, ttt: 0 };
          w.data.set(immediate);
          if (w.received === cmd.expectedDataTransferLength) return respond(cmd, 0, null);
          writes.set(cmd.itt, w);
          return r2t(w);
        }
        default: return respond(cmd, 2, Uint8Array.of(0x70, 0, 5, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0x20, 0));
      }
    };

    const onPdu = ({ bhs, data }: ReceivedPdu): void => {
      switch (bhs.opcode) {
        case Opcode.LoginRequest: return login(bhs, data);
        case Opcode.ScsiCommand: {
          stats.commands++;
          if (((bhs.cmdSN - advertisedMax) | 0) > 0) stats.windowViolations++;
          expCmdSN = (bhs.cmdSN + 1) >>> 0;
          outstanding++;
          stats.maxOutstanding = Math.max(stats.maxOutstanding, outstanding);
          if (b.silent) return;
          const imm = data.slice();
          setTimeout(() => execute(bhs, imm), b.answerDelayMs);
          return;
        }
        case Opcode.DataOut: {
          const w = writes.get(bhs.itt);
          if (w === undefined) return;
          w.data.set(data, bhs.bufferOffset);
          w.received = Math.max(w.received, bhs.bufferOffset + data.length);
          if (!bhs.final) return;
          if (w.received < w.cmd.expectedDataTransferLength) return r2t(w);
          writes.delete(bhs.itt);
          return respond(w.cmd, 0, null);
        }
        case Opcode.NopOut:
          if (bhs.itt === RESERVED_TAG) { stats.nopAnswers.push(bhs.ttt); return; }
          return send({ opcode: Opcode.NopIn, lun: 0, itt: bhs.itt, ttt: RESERVED_TAG, ...seq(true), dataSegmentLength: 0 });
        case Opcode.LogoutRequest:
          stats.logouts++;
          send({ opcode: Opcode.LogoutResponse, response: 0, itt: bhs.itt, ...seq(true), time2Wait: 0, time2Retain: 0, dataSegmentLength: 0 });
          sock.end();
          return;
        default:
          return;
      }
    };

    const login = (req: LoginRequest, data: Uint8Array): void => {
      const keys = decodeText(data);
      const answers: Array<[string, string]> = [];
      if (req.csg === 0) answers.push(['AuthMethod', 'None']);
      else {
        stats.logins++;
        const fixed: Record<string, string> = { HeaderDigest: 'None', DataDigest: 'None', InitialR2T: 'Yes', ImmediateData: 'Yes', FirstBurstLength: '65536', MaxBurstLength: String(MAX_BURST), DefaultTime2Retain: '0' };
        for (const [k, v] of keys) answers.push([k, fixed[k] ?? (k === 'MaxRecvDataSegmentLength' ? '8192' : v)]);
      }
      expCmdSN = req.cmdSN;
      advertisedMax = (req.cmdSN - 1) >>> 0;
      const text = encodeText(answers);
      send({ opcode: Opcode.LoginResponse, transit: true, cont: false, csg: req.csg, nsg: req.nsg, versionMax: 0, versionActive: 0, isid: req.isid, tsih: req.csg === 1 ? 7 : 0, itt: req.itt, ...seq(true), statusClass: 0, statusDetail: 0, dataSegmentLength: text.length }, text);
    };

    const r = new PduReassembler({ dataSegmentBytesMax: 1 << 20, digests: NO_DIGESTS }, onPdu);
    sock.on('data', (chunk: Buffer) => { try { r.push(chunk); } catch { sock.destroy(); } });
  });

  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const addr = server.address();
  const port = typeof addr === 'object' && addr !== null ? addr.port : 0;
  const each = (f: (s: Socket, seq: { statSN: number; expCmdSN: number; maxCmdSN: number }) => void): void => {
    for (const s of sockets) f(s, seqs.get(s)!());
  };
  return {
    port, disk, behaviour: b, stats,
    inject: (bytes) => each((s) => s.write(bytes)),
    ping: (ttt) => each((s, q) => { for (const p of framePdu({ opcode: Opcode.NopIn, lun: 0, itt: RESERVED_TAG, ttt, ...q, dataSegmentLength: 0 }, null, NO_DIGESTS)) s.write(p); }),
    requestLogout: () => each((s, q) => { for (const p of framePdu({ opcode: Opcode.AsyncMessage, lun: 0, itt: RESERVED_TAG, ...q, asyncEvent: 1, asyncVCode: 0, parameter1: 0, parameter2: 0, parameter3: 0, dataSegmentLength: 0 }, null, NO_DIGESTS)) s.write(p); }),
    close: async () => { for (const s of sockets) s.destroy(); await new Promise<void>((resolve) => server.close(() => resolve())); },
  };
}
