// Moving a command's data (RFC 7143 section 4.2.5, 11.7): the SCSI Command PDU with immediate
// data, unsolicited Data-Out up to FirstBurstLength when InitialR2T=No, and Data-Out answering
// each R2T in pieces of the target's MaxRecvDataSegmentLength. Data is sent as views of the
// caller's buffer, never copied.

import { Opcode, RESERVED_TAG, type DataOut, type R2T, type ScsiCommand, type ScsiResponse } from './codec/pdu.js';
import type { OperationalParams } from './codec/text.js';
import { IscsiProtocolError } from './errors.js';
import type { IscsiConnection } from './connection.js';
import type { ScsiResult, Task } from './tasks.js';

const ATTR_SIMPLE = 1;
const SENSE_LENGTH_BYTES = 2;

export interface SendContext {
  readonly conn: IscsiConnection;
  readonly params: OperationalParams;
  readonly lun: number;
  readonly expStatSN: number;
}

/** Sends the command and whatever data may go before an R2T. */
export function sendCommand(ctx: SendContext, task: Task): void {
  const { params } = ctx;
  const dataIn = task.request.dataIn;
  const dataOut = task.request.dataOut;
  if (dataIn !== undefined && dataOut !== undefined) throw new RangeError('bidirectional commands are not supported');
  const expected = dataIn?.length ?? dataOut?.length ?? 0;
  let immediateBytes = 0;
  let unsolicitedBytes = 0;
  if (dataOut !== undefined) {
    const firstBurst = Math.min(expected, params.firstBurstLength);
    immediateBytes = params.immediateData ? Math.min(firstBurst, params.targetMaxRecvDataSegmentLength) : 0;
    unsolicitedBytes = params.initialR2T ? immediateBytes : firstBurst;
  }
  const cdb = new Uint8Array(16);
  cdb.set(task.request.cdb);
  const cmd: ScsiCommand = {
    opcode: Opcode.ScsiCommand, immediate: false, final: unsolicitedBytes === immediateBytes, read: dataIn !== undefined,
    write: dataOut !== undefined, attr: ATTR_SIMPLE, lun: ctx.lun, itt: task.itt, expectedDataTransferLength: expected,
    cmdSN: task.cmdSN, expStatSN: ctx.expStatSN, cdb, dataSegmentLength: immediateBytes,
  };
  ctx.conn.send(cmd, immediateBytes > 0 ? dataOut!.subarray(0, immediateBytes) : null);
  if (unsolicitedBytes > immediateBytes) sendDataOut(ctx, task, RESERVED_TAG, immediateBytes, unsolicitedBytes - immediateBytes);
}

/** Answers an R2T with Data-Out; throws IscsiProtocolError when it asks for bytes we do not have. */
export function answerR2T(ctx: SendContext, task: Task, r2t: R2T): void {
  const dataOut = task.request.dataOut;
  if (dataOut === undefined) throw new IscsiProtocolError('bad-field', `R2T for ITT 0x${r2t.itt.toString(16)}, which is not a write`);
  const end = r2t.bufferOffset + r2t.desiredDataTransferLength;
  if (r2t.desiredDataTransferLength === 0 || end > dataOut.length) {
    throw new IscsiProtocolError('bad-field', `R2T asks for bytes ${r2t.bufferOffset}..${end} of a ${dataOut.length}-byte write`);
  }
  if (r2t.desiredDataTransferLength > ctx.params.maxBurstLength) {
    throw new IscsiProtocolError('bad-field', `R2T of ${r2t.desiredDataTransferLength} bytes exceeds MaxBurstLength ${ctx.params.maxBurstLength}`);
  }
  sendDataOut(ctx, task, r2t.ttt, r2t.bufferOffset, r2t.desiredDataTransferLength);
}

function sendDataOut(ctx: SendContext, task: Task, ttt: number, offset: number, length: number): void {
  const dataOut = task.request.dataOut!;
  const piece = ctx.params.targetMaxRecvDataSegmentLength;
  const end = offset + length;
  let dataSN = 0;
  for (let at = offset; at < end; at += piece) {
    const n = Math.min(piece, end - at);
    const pdu: DataOut = {
      opcode: Opcode.DataOut, final: at + n === end, lun: ctx.lun, itt: task.itt, ttt, expStatSN: ctx.expStatSN,
      dataSN: dataSN++, bufferOffset: at, dataSegmentLength: n,
    };
    ctx.conn.send(pdu, dataOut.subarray(at, at + n));
  }
}

/** Where a Data-In segment goes: the read buffer at its offset. Throws when it would overrun. */
export function dataInView(task: Task, bufferOffset: number, length: number): Uint8Array {
  const dataIn = task.request.dataIn;
  if (dataIn === undefined) throw new IscsiProtocolError('bad-field', `Data-In for ITT 0x${task.itt.toString(16)}, which is not a read`);
  if (bufferOffset + length > dataIn.length) {
    throw new IscsiProtocolError('bad-field', `Data-In bytes ${bufferOffset}..${bufferOffset + length} overrun a ${dataIn.length}-byte read`);
  }
  return dataIn.subarray(bufferOffset, bufferOffset + length);
}

/** The outcome carried by a SCSI Response PDU. A non-zero iSCSI response code is a target failure. */
export function responseResult(pdu: ScsiResponse, data: Uint8Array): ScsiResult | { failure: string } {
  if (pdu.response !== 0) return { failure: `target failure (iSCSI response 0x${pdu.response.toString(16)})` };
  let sense: Uint8Array | null = null;
  if (data.length >= SENSE_LENGTH_BYTES) {
    const senseLength = (data[0]! << 8) | data[1]!;
    if (senseLength > 0) sense = data.slice(SENSE_LENGTH_BYTES, SENSE_LENGTH_BYTES + Math.min(senseLength, data.length - SENSE_LENGTH_BYTES));
  }
  return { status: pdu.status, sense, residualBytes: pdu.underflow ? pdu.residualCount : 0 };
}
