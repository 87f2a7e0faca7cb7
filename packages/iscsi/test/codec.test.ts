// Pure codecs: PDUs, framing and reassembly, CRC32C, text keys, CHAP, SCSI CDBs and sense.

import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { chapResponse, decodeBinary, encodeBinary } from '../src/codec/chap.js';
import { crc32c, crc32cFinish, crc32cUpdate, CRC32C_INIT } from '../src/codec/crc32c.js';
import { framePdu, PduReassembler, type ReceivedPdu } from '../src/codec/frame.js';
import { BHS_BYTES, decodeBhs, encodeBhs, Opcode, padBytes, type Pdu } from '../src/codec/pdu.js';
import { lbaRunsToExtents } from '../src/client.js';
import {
  getLbaStatusCdb, parseLbaStatus, inquiryCdb, parseBlockLimitsVpd, parseLogicalBlockProvisioningVpd, parseReadCapacity16, parseStandardInquiry, readCapacity16Cdb,
  readWrite10Cdb, readWrite16Cdb, synchronizeCache16Cdb, unmapCommand,
} from '../src/codec/scsi.js';
import { classifyStatus, decodeSense } from '../src/codec/sense.js';
import { applyOperationalKeys, decodeText, encodeText, operationalOffer, RFC_DEFAULTS } from '../src/codec/text.js';
import { IscsiProtocolError } from '../src/errors.js';

const concat = (parts: Uint8Array[]): Uint8Array => new Uint8Array(Buffer.concat(parts));

describe('CRC32C', () => {
  it('matches the check value and the RFC 7143 appendix B.4 vectors', () => {
    expect(crc32c(new TextEncoder().encode('123456789'))).toBe(0xe3069283);
    expect(crc32c(new Uint8Array(32))).toBe(0x8a9136aa);
    expect(crc32c(new Uint8Array(32).fill(0xff))).toBe(0x62a8ab43);
    expect(crc32c(Uint8Array.from({ length: 32 }, (_, i) => i))).toBe(0x46dd794e);
    expect(crc32c(Uint8Array.from({ length: 32 }, (_, i) => 31 - i))).toBe(0x113fdb5c);
  });

  it('is the same computed in pieces of any size (slicing-by-8 and byte tail agree)', () => {
    const data = Uint8Array.from({ length: 1000 }, (_, i) => (i * 131 + 7) & 0xff);
    const whole = crc32c(data);
    for (const cut of [1, 3, 7, 8, 9, 500, 999]) {
      expect(crc32cFinish(crc32cUpdate(crc32cUpdate(CRC32C_INIT, data.subarray(0, cut)), data.subarray(cut)))).toBe(whole);
    }
  });
});

const samples: Pdu[] = [
  { opcode: Opcode.NopOut, immediate: true, lun: 0, itt: 0x80000001, ttt: 0xffffffff, cmdSN: 5, expStatSN: 9, dataSegmentLength: 0 },
  { opcode: Opcode.ScsiCommand, immediate: false, final: true, read: true, write: false, attr: 1, lun: 3, itt: 0x10002, expectedDataTransferLength: 4096, cmdSN: 0xfffffffe, expStatSN: 1, cdb: new Uint8Array(16).fill(0x88, 0, 1), dataSegmentLength: 0 },
  { opcode: Opcode.LoginRequest, transit: true, cont: false, csg: 1, nsg: 3, versionMax: 0, versionMin: 0, isid: Uint8Array.of(0x80, 1, 2, 3, 4, 5), tsih: 0, itt: 7, cid: 0, cmdSN: 1, expStatSN: 0, dataSegmentLength: 100 },
  { opcode: Opcode.TextRequest, immediate: false, final: true, cont: false, lun: 0, itt: 8, ttt: 0xffffffff, cmdSN: 2, expStatSN: 3, dataSegmentLength: 16 },
  { opcode: Opcode.DataOut, final: true, lun: 300, itt: 9, ttt: 0x1234, expStatSN: 4, dataSN: 2, bufferOffset: 16384, dataSegmentLength: 8192 },
  { opcode: Opcode.LogoutRequest, immediate: true, reason: 0, itt: 10, cid: 0, cmdSN: 11, expStatSN: 12, dataSegmentLength: 0 },
  { opcode: Opcode.NopIn, lun: 0, itt: 0xffffffff, ttt: 0x55, statSN: 1, expCmdSN: 2, maxCmdSN: 130, dataSegmentLength: 0 },
  { opcode: Opcode.ScsiResponse, bidiOverflow: false, bidiUnderflow: false, overflow: false, underflow: true, response: 0, status: 2, itt: 11, snackTag: 0, statSN: 5, expCmdSN: 6, maxCmdSN: 7, expDataSN: 0, bidiResidualCount: 0, residualCount: 512, dataSegmentLength: 20 },
  { opcode: Opcode.LoginResponse, transit: true, cont: false, csg: 1, nsg: 3, versionMax: 0, versionActive: 0, isid: Uint8Array.of(0x80, 1, 2, 3, 4, 5), tsih: 0x1234, itt: 7, statSN: 0, expCmdSN: 1, maxCmdSN: 1, statusClass: 0, statusDetail: 0, dataSegmentLength: 40 },
  { opcode: Opcode.TextResponse, final: false, cont: true, lun: 0, itt: 8, ttt: 0x77, statSN: 3, expCmdSN: 3, maxCmdSN: 40, dataSegmentLength: 8 },
  { opcode: Opcode.DataIn, final: true, ack: false, overflow: false, underflow: false, hasStatus: true, status: 0, lun: 1, itt: 12, ttt: 0xffffffff, statSN: 8, expCmdSN: 9, maxCmdSN: 10, dataSN: 3, bufferOffset: 24576, residualCount: 0, dataSegmentLength: 8192 },
  { opcode: Opcode.LogoutResponse, response: 0, itt: 10, statSN: 13, expCmdSN: 14, maxCmdSN: 15, time2Wait: 2, time2Retain: 20, dataSegmentLength: 0 },
  { opcode: Opcode.R2T, lun: 1, itt: 13, ttt: 0x99, statSN: 14, expCmdSN: 15, maxCmdSN: 16, r2tSN: 1, bufferOffset: 65536, desiredDataTransferLength: 262144, dataSegmentLength: 0 },
  { opcode: Opcode.AsyncMessage, lun: 1, itt: 0xffffffff, statSN: 15, expCmdSN: 16, maxCmdSN: 17, asyncEvent: 1, asyncVCode: 0, parameter1: 0, parameter2: 2, parameter3: 20, dataSegmentLength: 0 },
  { opcode: Opcode.Reject, reason: 9, itt: 0xffffffff, statSN: 16, expCmdSN: 17, maxCmdSN: 18, dataSN: 0, dataSegmentLength: 48 },
];

describe('BHS codec', () => {
  it.each(samples.map((p) => [p.opcode.toString(16), p] as const))('round-trips opcode 0x%s', (_, pdu) => {
    const bytes = encodeBhs(pdu);
    expect(bytes.length).toBe(BHS_BYTES);
    expect(decodeBhs(bytes)).toEqual({ totalAhsWords: 0, ...pdu });
  });

  it('puts fields where RFC 7143 says', () => {
    const cmd = encodeBhs(samples[1]!);
    expect(cmd[0]).toBe(0x01);
    expect(cmd[1]).toBe(0x80 | 0x40 | 1); // F, R, SIMPLE
    expect(Buffer.from(cmd.subarray(8, 10)).toString('hex')).toBe('0003');
    expect(Buffer.from(cmd.subarray(20, 24)).toString('hex')).toBe('00001000');
    expect(cmd[32]).toBe(0x88);
    const login = encodeBhs(samples[2]!);
    expect(login[0]).toBe(0x43); // immediate + opcode 3
    expect(login[1]).toBe(0x87); // T, CSG 1, NSG 3
    expect(login[7]).toBe(100);
    expect(encodeBhs(samples[4]!).subarray(8, 10)).toEqual(Uint8Array.of(0x41, 0x2c)); // flat LUN 300
  });

  it('rejects unknown opcodes, short buffers and out-of-range fields with IscsiProtocolError', () => {
    const bad = new Uint8Array(48);
    bad[0] = 0x1c;
    expect(() => decodeBhs(bad)).toThrow(IscsiProtocolError);
    expect(() => decodeBhs(new Uint8Array(47))).toThrow(/48 bytes/);
    expect(() => encodeBhs({ ...samples[0]!, dataSegmentLength: 0x1000000 } as Pdu)).toThrow(IscsiProtocolError);
    expect(() => encodeBhs({ ...samples[0]!, lun: 20000 } as Pdu)).toThrow(/LUN/);
  });
});

function reassemble(bytes: Uint8Array, chunk: number, digests = { header: false, data: false }, max = 1 << 20): ReceivedPdu[] {
  const out: ReceivedPdu[] = [];
  const r = new PduReassembler({ dataSegmentBytesMax: max, digests }, (p) => out.push(p));
  for (let at = 0; at < bytes.length; at += chunk) r.push(bytes.subarray(at, at + chunk));
  return out;
}

describe('framing and reassembly', () => {
  const data = Uint8Array.from({ length: 8191 }, (_, i) => i & 0xff);
  const dataIn = { ...samples[10]!, dataSegmentLength: data.length } as Pdu;
  const nop = samples[6]!;

  it.each([[false, false], [true, false], [false, true], [true, true]])('frames and reassembles with digests header=%s data=%s in any chunking', (header, dataDigest) => {
    const digests = { header, data: dataDigest };
    const wire = concat([...framePdu(dataIn, data, digests), ...framePdu(nop, null, digests)]);
    expect(wire.length).toBe(48 + (header ? 4 : 0) + 8191 + padBytes(8191) + (dataDigest ? 4 : 0) + 48 + (header ? 4 : 0));
    for (const chunk of [1, 5, 48, 4096, wire.length]) {
      const got = reassemble(wire, chunk, digests);
      expect(got.map((p) => p.bhs.opcode)).toEqual([Opcode.DataIn, Opcode.NopIn]);
      expect(Buffer.compare(Buffer.from(got[0]!.data), Buffer.from(data))).toBe(0);
      expect(got[1]!.data.length).toBe(0);
    }
  });

  it('lands data in the sink the caller chose', () => {
    const target = new Uint8Array(new SharedArrayBuffer(16384));
    const out: ReceivedPdu[] = [];
    const r = new PduReassembler({ dataSegmentBytesMax: 1 << 20, digests: { header: true, data: true }, sink: (bhs) => target.subarray(100, 100 + bhs.dataSegmentLength) }, (p) => out.push(p));
    r.push(concat(framePdu(dataIn, data, { header: true, data: true })));
    expect(target.subarray(100, 100 + data.length)).toEqual(data);
    expect(out[0]!.data.buffer).toBe(target.buffer);
  });

  it('detects a flipped bit with header and data digests', () => {
    const digests = { header: true, data: true };
    const wire = concat(framePdu(dataIn, data, digests));
    const h = wire.slice(); h[20] ^= 1;
    expect(() => reassemble(h, 100, digests)).toThrow(expect.objectContaining({ code: 'header-digest' }));
    const d = wire.slice(); d[1000] ^= 0x80;
    expect(() => reassemble(d, 100, digests)).toThrow(expect.objectContaining({ code: 'data-digest' }));
  });

  it('is bounded: a segment above the limit is refused before any data is buffered', () => {
    const big = encodeBhs({ ...samples[6]!, dataSegmentLength: 0xffffff } as Pdu);
    const r = new PduReassembler({ dataSegmentBytesMax: 65536, digests: { header: false, data: false } }, () => undefined);
    expect(() => r.push(big)).toThrow(expect.objectContaining({ code: 'segment-too-large' }));
    // After a failure the stream is dead: further bytes are refused, not misparsed.
    expect(() => r.push(new Uint8Array(48))).toThrow(expect.objectContaining({ code: 'reassembler-failed' }));
  });

  it('throws IscsiProtocolError on random garbage, never anything else', () => {
    let seed = 12345;
    const rand = (): number => { seed = (seed * 1103515245 + 12345) & 0x7fffffff; return seed & 0xff; };
    for (let round = 0; round < 200; round++) {
      const junk = Uint8Array.from({ length: 48 * 4 }, rand);
      const r = new PduReassembler({ dataSegmentBytesMax: 8192, digests: { header: round % 2 === 0, data: true } }, () => undefined);
      try { r.push(junk); } catch (err) { expect(err).toBeInstanceOf(IscsiProtocolError); }
    }
  });

  it('holds bytes while paused, so settings change on a PDU boundary', () => {
    const out: ReceivedPdu[] = [];
    const r: PduReassembler = new PduReassembler({ dataSegmentBytesMax: 1 << 20, digests: { header: false, data: false } }, (p) => { out.push(p); if (out.length === 1) r.pause(); });
    r.push(concat([...framePdu(nop, null, { header: false, data: false }), ...framePdu(nop, null, { header: true, data: false })]));
    expect(out.length).toBe(1);
    expect(r.heldBytes()).toBe(52);
    r.setDigests({ header: true, data: false });
    r.resume();
    expect(out.length).toBe(2);
  });
});

describe('text codec', () => {
  it('round-trips key=value pairs and refuses malformed text', () => {
    const pairs: Array<[string, string]> = [['InitiatorName', 'iqn.2026-11.dev.onestack:x'], ['AuthMethod', 'CHAP,None'], ['Empty', '']];
    const bytes = encodeText(pairs);
    expect(new TextDecoder().decode(bytes)).toBe('InitiatorName=iqn.2026-11.dev.onestack:x\0AuthMethod=CHAP,None\0Empty=\0');
    expect(decodeText(bytes)).toEqual(pairs);
    expect(decodeText(new Uint8Array([...bytes, 0, 0]))).toEqual(pairs); // NUL padding
    for (const bad of ['NoEquals\0', '=v\0', 'a=b', 'bad key=1\0', `${'k'.repeat(64)}=1\0`]) {
      expect(() => decodeText(new TextEncoder().encode(bad)), bad).toThrow(IscsiProtocolError);
    }
    expect(() => decodeText(Uint8Array.of(0xff, 0x3d, 0x31, 0))).toThrow(/UTF-8/);
    expect(() => decodeText(new Uint8Array(70000))).toThrow(expect.objectContaining({ code: 'text-too-large' }));
    expect(() => encodeText([['a', 'x\0y']])).toThrow(IscsiProtocolError);
  });

  it('negotiates by the RFC rules: list, AND, OR, min, max, declarative', () => {
    const ours = { ...RFC_DEFAULTS, headerDigest: true, initialR2T: false, immediateData: true, firstBurstLength: 262144, maxBurstLength: 1048576, defaultTime2Wait: 2 };
    const offer = operationalOffer(ours, false);
    expect(offer).toContainEqual(['HeaderDigest', 'CRC32C,None']);
    const offered = new Set(offer.map(([k]) => k));
    const target: Array<[string, string]> = [
      ['HeaderDigest', 'CRC32C'], ['DataDigest', 'None'], ['InitialR2T', 'Yes'], ['ImmediateData', 'No'], ['FirstBurstLength', '65536'],
      ['MaxBurstLength', '262144'], ['DefaultTime2Wait', '5'], ['MaxRecvDataSegmentLength', '8192'], ['TargetPortalGroupTag', '1'], ['X-vendor', '1'],
    ];
    const { params, answers } = applyOperationalKeys(RFC_DEFAULTS, ours, target, offered, false);
    expect(params).toMatchObject({ headerDigest: true, dataDigest: false, initialR2T: true, immediateData: false, firstBurstLength: 65536, maxBurstLength: 262144, defaultTime2Wait: 5, targetMaxRecvDataSegmentLength: 8192 });
    expect(answers).toEqual([['X-vendor', 'NotUnderstood']]);
    // A target offer we did not make gets our computed answer.
    expect(applyOperationalKeys(RFC_DEFAULTS, ours, [['MaxBurstLength', '4194304'], ['IFMarker', 'Yes']], new Set(), false).answers).toEqual([['MaxBurstLength', '1048576'], ['IFMarker', 'No']]);
    // Answers that break the rules are protocol errors.
    expect(() => applyOperationalKeys(RFC_DEFAULTS, ours, [['MaxBurstLength', '9999999']], offered, false)).toThrow(IscsiProtocolError);
    expect(() => applyOperationalKeys(RFC_DEFAULTS, { ...ours, dataDigest: false }, [['DataDigest', 'CRC32C']], offered, false)).toThrow(/did not offer/);
    expect(() => applyOperationalKeys(RFC_DEFAULTS, ours, [['FirstBurstLength', 'lots']], offered, false)).toThrow(/not a number/);
  });
});

describe('CHAP', () => {
  it('computes MD5(id || secret || challenge) and encodes binaries both ways', () => {
    const challenge = Uint8Array.from({ length: 16 }, (_, i) => i * 3);
    const want = createHash('md5').update(Buffer.concat([Buffer.of(42), Buffer.from('s3cret-s3cret'), Buffer.from(challenge)])).digest();
    expect(Buffer.from(chapResponse(42, 's3cret-s3cret', challenge))).toEqual(want);
    // Fixed vector (computed independently with Python's hashlib): id 1, secret "secret", challenge 00..0f.
    expect(encodeBinary(chapResponse(1, 'secret', Uint8Array.from({ length: 16 }, (_, i) => i)))).toBe('0x740e86463bda3a4d7017d6e0fba0699d');
    expect(decodeBinary('0x0aff')).toEqual(Uint8Array.of(0x0a, 0xff));
    expect(decodeBinary('0bAAEC')).toEqual(Uint8Array.of(0, 1, 2));
    expect(decodeBinary('0xabc')).toEqual(Uint8Array.of(0x0a, 0xbc));
    for (const bad of ['abc', '0x', '0xzz', '0b!!', '0x' + '00'.repeat(2000)]) expect(() => decodeBinary(bad)).toThrow(IscsiProtocolError);
  });
});

describe('SCSI CDBs and data', () => {
  it('builds the 16- and 10-byte forms with FUA', () => {
    const w = readWrite16Cdb(true, 2 ** 33 + 5, 8, true);
    expect(Buffer.from(w).toString('hex')).toBe('8a08' + '0000000200000005' + '00000008' + '0000');
    expect(Buffer.from(readWrite10Cdb(false, 1000, 16, false)).toString('hex')).toBe('28000000' + '03e8' + '00' + '0010' + '00');
    expect(readCapacity16Cdb().subarray(0, 2)).toEqual(Uint8Array.of(0x9e, 0x10));
    expect(inquiryCdb(255, 0xb0)).toEqual(Uint8Array.of(0x12, 1, 0xb0, 0, 255, 0));
    expect(synchronizeCache16Cdb()[0]).toBe(0x91);
    expect(() => readWrite10Cdb(false, 2 ** 32, 1, false)).toThrow(IscsiProtocolError);
  });

  it('builds UNMAP parameter lists', () => {
    const { cdb, parameters } = unmapCommand([{ lba: 2048, blocks: 4096 }, { lba: 2 ** 40, blocks: 1 }]);
    expect(cdb[0]).toBe(0x42);
    expect((cdb[7]! << 8) | cdb[8]!).toBe(40);
    expect(Buffer.from(parameters).toString('hex')).toBe('0026' + '0020' + '00000000' + '0000000000000800' + '00001000' + '00000000' + '0000010000000000' + '00000001' + '00000000');
    expect(() => unmapCommand([])).toThrow(IscsiProtocolError);
  });

  it('parses INQUIRY, VPD and READ CAPACITY(16) data and refuses short data', () => {
    const inq = new Uint8Array(36);
    inq[0] = 0x00; inq[2] = 5; inq.set(new TextEncoder().encode('IET     VIRTUAL-DISK    0001'), 8);
    expect(parseStandardInquiry(inq)).toMatchObject({ peripheralQualifier: 0, deviceType: 0, vendor: 'IET', product: 'VIRTUAL-DISK', revision: '0001' });
    const rc = Uint8Array.from(Buffer.from('000000000001ffff' + '00000200' + '00' + '03' + 'c000' + '00'.repeat(16), 'hex'));
    expect(parseReadCapacity16(rc)).toEqual({ lastLba: 131071, blockSizeBytes: 512, logicalPerPhysicalExponent: 3, lbpme: true, lbprz: true });
    const bl = new Uint8Array(64); bl[1] = 0xb0; bl[3] = 0x3c; bl[11] = 0x80; bl[23] = 0x10;
    expect(parseBlockLimitsVpd(bl)).toMatchObject({ maxTransferLengthBlocks: 128, maxUnmapLbaCount: 16 });
    expect(parseLogicalBlockProvisioningVpd(Uint8Array.of(0, 0xb2, 0, 4, 0, 0xe4, 2, 0))).toMatchObject({ lbpu: true, lbpws: true, lbpws10: true, lbprz: true, provisioningType: 2 });
    expect(() => parseStandardInquiry(new Uint8Array(10))).toThrow(IscsiProtocolError);
    expect(() => parseReadCapacity16(new Uint8Array(8))).toThrow(IscsiProtocolError);
  });

  it('builds GET LBA STATUS and parses its descriptors, never past the declared or returned length', () => {
    const cdb = getLbaStatusCdb(2 ** 33 + 5, 4088);
    expect(Buffer.from(cdb).toString('hex')).toBe('9e12' + '0000000200000005' + '00000ff8' + '0000');
    const desc = (lba: number, blocks: number, status: number): string => lba.toString(16).padStart(16, '0') + blocks.toString(16).padStart(8, '0') + status.toString(16).padStart(2, '0') + '000000';
    const data = Uint8Array.from(Buffer.from('00000024' + '00000000' + desc(0, 16, 1) + desc(16, 8, 0), 'hex'));
    expect(parseLbaStatus(data)).toEqual([{ lba: 0, blocks: 16, provisioning: 1 }, { lba: 16, blocks: 8, provisioning: 0 }]);
    // Declared length covers one descriptor only; a truncated second one is ignored.
    const short = Uint8Array.from(Buffer.from('00000014' + '00000000' + desc(0, 16, 1) + desc(16, 8, 0), 'hex'));
    expect(parseLbaStatus(short)).toHaveLength(1);
    expect(parseLbaStatus(data.subarray(0, 30))).toHaveLength(1);
    expect(() => parseLbaStatus(new Uint8Array(4))).toThrow(IscsiProtocolError);
  });

  it('turns LBA runs into extents: contiguous from the asked LBA, clipped, merged, hole flags as given', () => {
    const runs = [{ lba: 0, blocks: 16, provisioning: 1 }, { lba: 16, blocks: 8, provisioning: 2 }, { lba: 24, blocks: 100, provisioning: 0 }];
    expect(lbaRunsToExtents(runs, 4, 40, 512, 3, 'x')).toEqual([{ lengthBytes: 20 * 512, flags: 3 }, { lengthBytes: 20 * 512, flags: 0 }]);
    // A gap ends the answer; a first run that does not hold the asked LBA is a protocol error.
    expect(lbaRunsToExtents([{ lba: 0, blocks: 8, provisioning: 0 }, { lba: 9, blocks: 8, provisioning: 1 }], 0, 64, 512, 1, 'x')).toEqual([{ lengthBytes: 4096, flags: 0 }]);
    expect(() => lbaRunsToExtents([{ lba: 8, blocks: 8, provisioning: 0 }], 0, 64, 512, 1, 'x')).toThrow(/did not describe LBA 0/);
    expect(() => lbaRunsToExtents([{ lba: 0, blocks: 0, provisioning: 0 }], 0, 64, 512, 1, 'x')).toThrow(/did not describe/);
  });
});

describe('sense decoding', () => {
  const fixed = (key: number, asc: number, ascq: number): Uint8Array => { const s = new Uint8Array(18); s[0] = 0x70; s[2] = key; s[7] = 10; s[12] = asc; s[13] = ascq; return s; };
  const descriptor = (key: number, asc: number, ascq: number): Uint8Array => Uint8Array.of(0x72, key, asc, ascq, 0, 0, 0, 0);

  it('reads fixed and descriptor formats', () => {
    expect(decodeSense(fixed(5, 0x21, 0))).toMatchObject({ key: 5, asc: 0x21, ascq: 0 });
    expect(decodeSense(descriptor(3, 0x11, 0))).toMatchObject({ key: 3, asc: 0x11, ascq: 0 });
    expect(decodeSense(Uint8Array.of(0x12))).toBeNull();
    expect(decodeSense(Uint8Array.of(0x40, 0, 0))).toBeNull();
  });

  it('maps sense to clear errors with errno codes', () => {
    expect(classifyStatus(2, fixed(5, 0x21, 0), true)).toMatchObject({ code: 'ENOSPC', text: expect.stringContaining('logical block address out of range') });
    expect(classifyStatus(2, fixed(5, 0x21, 0), false)).toMatchObject({ code: 'EINVAL' });
    expect(classifyStatus(2, descriptor(3, 0x11, 0), false)).toMatchObject({ code: 'EIO', text: expect.stringContaining('MEDIUM ERROR, unrecovered read error') });
    expect(classifyStatus(2, fixed(7, 0x27, 0), true)).toMatchObject({ code: 'EPERM', text: expect.stringContaining('write protected') });
    expect(classifyStatus(2, fixed(2, 0x04, 0x03), false)).toMatchObject({ code: 'EIO', text: expect.stringContaining('NOT READY'), retry: 'no' });
    expect(classifyStatus(2, fixed(6, 0x29, 0), false)).toMatchObject({ retry: 'once', text: expect.stringContaining('power on') });
    expect(classifyStatus(2, fixed(5, 0x20, 0), false)).toMatchObject({ code: 'ENOTSUP' });
    expect(classifyStatus(2, fixed(5, 0x25, 0), false)).toMatchObject({ code: 'ENOENT' });
    expect(classifyStatus(2, fixed(1, 0x17, 0), false)).toBeNull(); // recovered
    expect(classifyStatus(0, null, false)).toBeNull();
    expect(classifyStatus(0x08, null, false)).toMatchObject({ retry: 'busy' });
    expect(classifyStatus(2, null, false)).toMatchObject({ code: 'EIO', text: expect.stringContaining('without readable sense') });
  });
});
