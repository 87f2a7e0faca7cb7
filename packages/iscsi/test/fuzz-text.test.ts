// Fuzzing of the iSCSI text-level codecs (issue 8): key=value text, operational-key negotiation,
// CHAP binary values, sense data, SCSI parameter data and CDBs, SendTargets, and the login state
// machine against a hostile target. Fixed seed in CI; FUZZ_SEED / FUZZ_RUNS override.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { chapResponse, decodeBinary, encodeBinary } from '../src/codec/chap.js';
import { Opcode, type LoginResponse } from '../src/codec/pdu.js';
import {
  cdbName, parseBlockLimitsVpd, parseLogicalBlockProvisioningVpd, parseModeSense6Header, parseReadCapacity10, parseReadCapacity16,
  parseStandardInquiry, parseSupportedVpdPages, readWrite10Cdb, readWrite16Cdb, unmapCommand,
} from '../src/codec/scsi.js';
import { classifyStatus, decodeSense } from '../src/codec/sense.js';
import {
  applyOperationalKeys, decodeText, encodeText, finishParams, RFC_DEFAULTS, TEXT_BYTES_MAX, TEXT_KEY_BYTES_MAX, TEXT_PAIRS_MAX, TEXT_VALUE_BYTES_MAX,
  type OperationalParams,
} from '../src/codec/text.js';
import { parseSendTargets } from '../src/discovery.js';
import { IscsiProtocolError } from '../src/errors.js';
import { LoginNegotiator, type LoginConfig, type LoginStep } from '../src/login.js';
import { applyMutations, embedded, mutations, randomBytes, surround } from '../../../test/lib/fuzz-bytes.js';
import { fuzz, onlyTyped } from '../../../test/lib/fuzz-run.js';

const enc = new TextEncoder();
const KEY_RE = /^[A-Za-z0-9.\-+@_]+$/;
const OPERATIONAL_KEYS = [
  'HeaderDigest', 'DataDigest', 'InitialR2T', 'ImmediateData', 'DataPDUInOrder', 'DataSequenceInOrder', 'FirstBurstLength', 'MaxBurstLength',
  'MaxOutstandingR2T', 'DefaultTime2Wait', 'DefaultTime2Retain', 'ErrorRecoveryLevel', 'MaxConnections', 'MaxRecvDataSegmentLength', 'IFMarker',
  'OFMarker', 'TargetAlias', 'TargetPortalGroupTag', 'X-com.example.unknown',
];

/** Text-ish bytes: mostly keys, '=', values and NULs, so decoders get past their first check. */
const textish = fc.array(fc.oneof(
  fc.constantFrom('=', '\0', 'Key', 'HeaderDigest', 'CRC32C,None', 'Yes', 'No', '65536', '0x10', '', 'a.b-c+d@e_f'),
  fc.string({ maxLength: 12 }),
  fc.string({ unit: 'binary', maxLength: 4 }),
), { maxLength: 40 }).map((parts) => enc.encode(parts.join('')));

const keyArb = fc.oneof(fc.constantFrom(...OPERATIONAL_KEYS), fc.stringMatching(/^[A-Za-z0-9.\-+@_]{1,63}$/));
const valueArb = fc.oneof(
  fc.constantFrom('Yes', 'No', 'None', 'CRC32C', 'CRC32C,None', 'None,CRC32C', 'Reject', 'Irrelevant', 'NotUnderstood', '0', '1', '511', '512',
    '65536', '262144', '16777215', '16777216', '0x200', '0xffffff', '99999999999999999999', '-1', '1e3', ''),
  fc.nat({ max: 0x1ffffff }).map(String),
  fc.string({ maxLength: 20 }).filter((s) => !s.includes('\0')),
);
const pairsArb = fc.array(fc.tuple(keyArb, valueArb), { maxLength: 20 });

describe('fuzz: iSCSI text', () => {
  it('decodeText of any bytes: bounded pairs of valid keys, or IscsiProtocolError; no read past its input', () => {
    fuzz('iscsi decodeText random', fc.property(fc.oneof(textish, randomBytes(64, 300)), surround(), fc.constantFrom(16, 1024, TEXT_BYTES_MAX), (bytes, s, max) => {
      let pairs: Array<[string, string]> | string;
      try {
        pairs = decodeText(bytes, max);
      } catch (err) {
        onlyTyped(err, IscsiProtocolError);
        pairs = (err as IscsiProtocolError).code;
      }
      let again: Array<[string, string]> | string;
      try { again = decodeText(embedded(bytes, s), max); } catch (err) { again = (err as IscsiProtocolError).code; }
      expect(again).toEqual(pairs);
      if (typeof pairs === 'string') {
        expect(['bad-text', 'text-too-large']).toContain(pairs);
        return;
      }
      expect(bytes.length).toBeLessThanOrEqual(max);
      expect(pairs.length).toBeLessThanOrEqual(TEXT_PAIRS_MAX);
      for (const [k, v] of pairs) {
        expect(k.length <= TEXT_KEY_BYTES_MAX && KEY_RE.test(k)).toBe(true);
        expect(v.length).toBeLessThanOrEqual(TEXT_VALUE_BYTES_MAX);
      }
    }), 4000);
  });

  it('decodeText(encodeText(pairs)) == pairs; mutated encodings decode or throw IscsiProtocolError', () => {
    const value = fc.string({ unit: 'binary', maxLength: 40 }).filter((v) => !v.includes('\0'));
    fuzz('iscsi text round trip', fc.property(fc.array(fc.tuple(keyArb, value), { maxLength: 30 }), mutations(3), (pairs, muts) => {
      const bytes = encodeText(pairs);
      expect(decodeText(bytes)).toEqual(pairs);
      try {
        decodeText(applyMutations(bytes, muts));
      } catch (err) {
        onlyTyped(err, IscsiProtocolError);
      }
    }), 3000);
  });

  it('operational negotiation: any keys give parameters within RFC 7143 ranges, or IscsiProtocolError', () => {
    const ours = fc.record({
      headerDigest: fc.boolean(), dataDigest: fc.boolean(), initialR2T: fc.boolean(), immediateData: fc.boolean(),
      firstBurstLength: fc.integer({ min: 512, max: 0xffffff }), maxBurstLength: fc.integer({ min: 512, max: 0xffffff }),
      maxRecvDataSegmentLength: fc.integer({ min: 512, max: 0xffffff }),
    }).map((o) => ({ ...RFC_DEFAULTS, ...o }));
    fuzz('iscsi applyOperationalKeys', fc.property(ours, pairsArb, fc.subarray(OPERATIONAL_KEYS), fc.boolean(), (mine, pairs, offered, discovery) => {
      let params: OperationalParams;
      let answers: Array<[string, string]>;
      try {
        ({ params, answers } = applyOperationalKeys(RFC_DEFAULTS, mine, pairs, new Set(offered), discovery));
      } catch (err) {
        onlyTyped(err, IscsiProtocolError);
        return;
      }
      const p = finishParams(params);
      expect(p.firstBurstLength).toBeLessThanOrEqual(p.maxBurstLength);
      for (const [field, lo, hi] of [['firstBurstLength', 512, 0xffffff], ['maxBurstLength', 512, 0xffffff], ['maxOutstandingR2T', 1, 65535],
        ['defaultTime2Wait', 0, 3600], ['defaultTime2Retain', 0, 3600], ['errorRecoveryLevel', 0, 2], ['maxConnections', 1, 65535],
        ['targetMaxRecvDataSegmentLength', 512, 0xffffff]] as const) {
        expect(Number.isSafeInteger(p[field]) && p[field] >= lo && p[field] <= hi, `${field} = ${p[field]}`).toBe(true);
      }
      // What we answer can always be sent, and answers only keys the target raised.
      expect(() => encodeText(answers)).not.toThrow();
      for (const [k] of answers) expect(pairs.some(([pk]) => pk === k)).toBe(true);
      if (!mine.headerDigest) expect(p.headerDigest).toBe(false);
      if (!mine.dataDigest) expect(p.dataDigest).toBe(false);
    }), 4000);
  });
});

describe('fuzz: CHAP values, sense, SCSI data and CDBs', () => {
  it('decodeBinary: bytes within 1..max or IscsiProtocolError; encodeBinary round-trips', () => {
    const candidate = fc.oneof(
      fc.uint8Array({ minLength: 1, maxLength: 1100 }).map(encodeBinary),
      fc.uint8Array({ minLength: 1, maxLength: 1100 }).map((b) => `0b${Buffer.from(b).toString('base64')}`),
      fc.string({ maxLength: 40 }), fc.constantFrom('0x', '0b', '0X0', '0xg', '0b====', '0b=A', '0xABC'),
    );
    fuzz('iscsi decodeBinary', fc.property(candidate, fc.constantFrom(16, 1024), fc.uint8Array({ minLength: 1, maxLength: 64 }), (text, max, bytes) => {
      try {
        const out = decodeBinary(text, max);
        expect(out.length >= 1 && out.length <= max).toBe(true);
      } catch (err) {
        onlyTyped(err, IscsiProtocolError);
      }
      expect(decodeBinary(encodeBinary(bytes), 64)).toEqual(bytes);
    }), 3000);
  });

  it('sense data: any bytes give a sense or null; any status is classified without throwing', () => {
    fuzz('iscsi sense', fc.property(randomBytes(18, 60), fc.nat({ max: 255 }), fc.boolean(), surround(), (bytes, status, write, s) => {
      const sense = decodeSense(bytes);
      expect(decodeSense(embedded(bytes, s))).toEqual(sense);
      if (sense !== null) {
        expect(sense.key >= 0 && sense.key <= 15 && sense.asc <= 255 && sense.ascq <= 255).toBe(true);
        if (sense.information !== null) expect(sense.information >= 0 && sense.information <= 0xffffffff).toBe(true);
      }
      const failure = classifyStatus(status, bytes, write);
      if (failure !== null) {
        expect(typeof failure.text).toBe('string');
        expect(['once', 'busy', 'no']).toContain(failure.retry);
      }
    }), 4000);
  });

  it('SCSI parameter data parsers: a value or IscsiProtocolError("short-buffer"), never reading past the data', () => {
    const parsers = [parseStandardInquiry, parseSupportedVpdPages, parseBlockLimitsVpd, parseLogicalBlockProvisioningVpd, parseReadCapacity16,
      parseReadCapacity10, parseModeSense6Header, cdbName] as Array<(d: Uint8Array) => unknown>;
    fuzz('iscsi scsi parsers', fc.property(randomBytes(36, 120), surround(), (bytes, s) => {
      for (const parse of parsers) {
        let out: unknown;
        try {
          out = parse(bytes);
        } catch (err) {
          onlyTyped(err, IscsiProtocolError);
          expect((err as IscsiProtocolError).code).toBe('short-buffer');
          continue;
        }
        expect(parse(embedded(bytes, s))).toEqual(out);
      }
      if (bytes.length >= 4) {
        const pages = parseSupportedVpdPages(bytes);
        expect(pages.length).toBeLessThanOrEqual(bytes.length - 4);
      }
      if (bytes.length >= 36) {
        const inquiry = parseStandardInquiry(bytes);
        for (const text of [inquiry.vendor, inquiry.product, inquiry.revision]) expect(/^[\x20-\x7e]*$/.test(text)).toBe(true);
      }
    }), 4000);
  });

  it('CDB builders: the fields read back from the CDB, or IscsiProtocolError for values that do not fit', () => {
    const n = fc.oneof(fc.constantFrom(-1, 0, 1, 0xffff, 0x10000, 0xffffffff, 2 ** 32, Number.MAX_SAFE_INTEGER, 2 ** 53, 0.5, NaN), fc.nat({ max: Number.MAX_SAFE_INTEGER }));
    fuzz('iscsi cdbs', fc.property(fc.boolean(), n, n, fc.boolean(), fc.array(fc.record({ lba: n, blocks: n }), { maxLength: 5 }), (write, lba, blocks, fua, extents) => {
      const dv = (b: Uint8Array): DataView => new DataView(b.buffer, b.byteOffset, b.byteLength);
      try {
        const c = readWrite16Cdb(write, lba, blocks, fua);
        expect(dv(c).getUint32(2) * 2 ** 32 + dv(c).getUint32(6)).toBe(lba);
        expect(dv(c).getUint32(10)).toBe(blocks);
        expect(c[0]).toBe(write ? 0x8a : 0x88);
      } catch (err) { onlyTyped(err, IscsiProtocolError); }
      try {
        const c = readWrite10Cdb(write, lba, blocks, fua);
        expect(dv(c).getUint32(2)).toBe(lba);
        expect(dv(c).getUint16(7)).toBe(blocks);
      } catch (err) { onlyTyped(err, IscsiProtocolError); }
      try {
        const { cdb, parameters } = unmapCommand(extents);
        expect(dv(cdb).getUint16(7)).toBe(parameters.length);
        extents.forEach((e, i) => {
          expect(dv(parameters).getUint32(8 + 16 * i) * 2 ** 32 + dv(parameters).getUint32(12 + 16 * i)).toBe(e.lba);
          expect(dv(parameters).getUint32(16 + 16 * i)).toBe(e.blocks);
        });
      } catch (err) { onlyTyped(err, IscsiProtocolError); }
    }), 4000);
  });

  it('SendTargets text: targets with at least one portal each, or IscsiProtocolError', () => {
    const sendTargets = fc.array(fc.oneof(
      fc.tuple(fc.constant('TargetName'), fc.string({ maxLength: 30 })),
      fc.tuple(fc.constant('TargetAddress'), fc.oneof(fc.constant('10.0.0.1:3260,1'), fc.string({ maxLength: 30 }))),
      fc.tuple(keyArb, valueArb),
    ), { maxLength: 20 }).map((pairs) => { try { return encodeText(pairs.map(([k, v]) => [k, v.replace(/\0/g, '')])); } catch { return new Uint8Array(0); } });
    fuzz('iscsi parseSendTargets', fc.property(fc.oneof(sendTargets, textish), mutations(2), fc.boolean(), (bytes, muts, mutate) => {
      try {
        const targets = parseSendTargets(mutate ? applyMutations(bytes, muts) : bytes, '127.0.0.1:3260');
        for (const t of targets) expect(t.portals.length).toBeGreaterThan(0);
      } catch (err) {
        onlyTyped(err, IscsiProtocolError);
      }
    }), 3000);
  });
});

// ---- the login state machine against a hostile target ---------------------------------------

const INITIATOR_SECRET = 'initiator-secret-1';
const TARGET_SECRET = 'target-secret-2';
const WRONG_SECRET = 'a-guess';

function loginConfig(chap: LoginConfig['chap']): LoginConfig {
  return {
    initiatorName: 'iqn.2026-11.dev.onestack:fuzz', targetName: 'iqn.2026-11.dev.onestack:t', chap,
    ours: { ...RFC_DEFAULTS, headerDigest: true, maxRecvDataSegmentLength: 262144 }, isid: Uint8Array.of(0x80, 0, 0, 1, 0, 0),
    tsih: 0, cid: 0, itt: 0x80000003, cmdSN: 1, portal: '127.0.0.1:3260',
  };
}

/** One target move: flags, status, and keys built from what the initiator last sent (echoes included). */
interface Move {
  readonly transit: boolean; readonly cont: boolean; readonly csg: number; readonly nsg: number; readonly tsih: number;
  readonly statusClass: number; readonly statusDetail: number; readonly versionActive: number;
  readonly keys: ReadonlyArray<readonly [string, string | 'echo-response' | 'echo-challenge' | 'wrong-response' | 'right-response' | 'challenge']>;
  readonly id: number;
  readonly challenge: Uint8Array;
}

const chapKey = fc.oneof(
  fc.constantFrom<[string, Move['keys'][number][1]]>(
    ['AuthMethod', 'CHAP'], ['AuthMethod', 'None'], ['AuthMethod', 'Reject'], ['AuthMethod', 'CHAP,None'], ['CHAP_A', '5'], ['CHAP_A', '7'],
    ['CHAP_I', '7'], ['CHAP_I', '256'], ['CHAP_I', 'x'], ['CHAP_C', 'challenge'], ['CHAP_C', '0x'], ['CHAP_C', 'echo-challenge'],
    ['CHAP_N', 'tgt'], ['CHAP_N', 'someone'], ['CHAP_R', 'echo-response'], ['CHAP_R', 'wrong-response'], ['CHAP_R', '0x00'],
    ['HeaderDigest', 'CRC32C'], ['HeaderDigest', 'None'], ['DataDigest', 'None'], ['MaxRecvDataSegmentLength', '65536'], ['TargetPortalGroupTag', '1'],
  ),
  fc.tuple(keyArb, valueArb),
);
const move: fc.Arbitrary<Move> = fc.record({
  transit: fc.boolean(), cont: fc.nat({ max: 7 }).map((n) => n === 0), csg: fc.nat({ max: 3 }), nsg: fc.constantFrom(0, 1, 3, 3, 2),
  tsih: fc.constantFrom(0, 1, 0x1234), statusClass: fc.constantFrom(0, 0, 0, 0, 0, 0, 1, 2, 3), statusDetail: fc.nat({ max: 10 }),
  versionActive: fc.constantFrom(0, 0, 0, 0, 0, 0, 0, 1), keys: fc.array(chapKey, { maxLength: 6 }), id: fc.nat({ max: 255 }),
  challenge: fc.uint8Array({ minLength: 1, maxLength: 32 }),
});

/** A target that follows the CHAP script (offer, challenge, then a forged answer) before going random. */
const calm = { cont: false, statusClass: 0, statusDetail: 0, versionActive: 0 };
const scripted: fc.Arbitrary<Move[]> = fc.tuple(move, move, move, fc.array(chapKey, { maxLength: 2 }),
  fc.subarray<Move['keys'][number]>([['CHAP_N', 'tgt'], ['CHAP_R', 'echo-response']], { minLength: 0 }),
  fc.constantFrom<Move['keys'][number][1]>('echo-response', 'wrong-response', 'challenge', '0x00', 'echo-challenge'), fc.array(move, { maxLength: 4 }))
  .map(([m1, m2, m3, extra, attack, forged, rest]) => [
    { ...m1, ...calm, transit: false, keys: [['AuthMethod', 'CHAP']] },
    { ...m2, ...calm, transit: false, keys: [['CHAP_A', '5'], ['CHAP_I', String(m2.id)], ['CHAP_C', 'challenge']] },
    { ...m3, ...calm, keys: [...attack, ['CHAP_N', 'tgt'], ['CHAP_R', forged], ...extra] },
    ...rest,
  ]);

/** Plays `moves` against a negotiator; returns every step it took. */
function playLogin(n: LoginNegotiator, moves: readonly Move[]): LoginStep[] {
  const steps: LoginStep[] = [n.start()];
  for (const m of moves) {
    const last = steps[steps.length - 1]!;
    if (last.kind !== 'send') break;
    const sentKeys = decodeText(last.request.data);
    const ourValue = (k: string): string => sentKeys.find(([key]) => key === k)?.[1] ?? '0x00';
    const keys = m.keys.map(([k, v]): [string, string] => {
      if (v === 'echo-response') return [k, ourValue('CHAP_R')];
      if (v === 'echo-challenge') return [k, ourValue('CHAP_C')];
      if (v === 'challenge') return [k, encodeBinary(m.challenge)];
      if (v === 'wrong-response' || v === 'right-response') {
        const ours = decodeBinaryOr(ourValue('CHAP_C'));
        return [k, encodeBinary(chapResponse(Number(ourValue('CHAP_I')) & 0xff, v === 'right-response' ? TARGET_SECRET : WRONG_SECRET, ours))];
      }
      return [k, v];
    });
    let data: Uint8Array;
    try { data = encodeText(keys); } catch { data = new Uint8Array(0); }
    const resp: LoginResponse = {
      opcode: Opcode.LoginResponse, transit: m.transit, cont: m.cont, csg: m.csg, nsg: m.nsg, versionMax: 0, versionActive: m.versionActive,
      isid: Uint8Array.of(0x80, 0, 0, 1, 0, 0), tsih: m.tsih, itt: 0x80000003, statSN: m.id, expCmdSN: 1, maxCmdSN: 64,
      statusClass: m.statusClass, statusDetail: m.statusDetail, dataSegmentLength: data.length,
    };
    const step = n.onResponse(resp, data);
    steps.push(step);
    if (step.kind === 'send') expect(() => decodeText(step.request.data)).not.toThrow();
  }
  return steps;
}

function decodeBinaryOr(text: string): Uint8Array {
  try { return decodeBinary(text); } catch { return new Uint8Array(1); }
}

describe('fuzz: iSCSI login against a hostile target', () => {
  it('mutual CHAP: a target that does not know the target secret never completes the login', () => {
    const chap = { user: 'alice', secret: INITIATOR_SECRET, targetUser: 'tgt', targetSecret: TARGET_SECRET };
    fuzz('iscsi login mutual chap', fc.property(fc.oneof(scripted, fc.array(move, { minLength: 1, maxLength: 10 })), (moves) => {
      const steps = playLogin(new LoginNegotiator(loginConfig(chap)), moves);
      expect(steps.some((s) => s.kind === 'done')).toBe(false);
    }), 3000);
  });

  it('control: the same script with the right target secret does complete the login', () => {
    const chap = { user: 'alice', secret: INITIATOR_SECRET, targetUser: 'tgt', targetSecret: TARGET_SECRET };
    const base = { ...calm, transit: false, csg: 0, nsg: 1, tsih: 7, id: 3, challenge: Uint8Array.of(1, 2, 3) };
    const steps = playLogin(new LoginNegotiator(loginConfig(chap)), [
      { ...base, keys: [['AuthMethod', 'CHAP']] },
      { ...base, keys: [['CHAP_A', '5'], ['CHAP_I', '3'], ['CHAP_C', 'challenge']] },
      { ...base, transit: true, keys: [['CHAP_N', 'tgt'], ['CHAP_R', 'right-response']] },
      { ...base, transit: true, csg: 1, nsg: 3, keys: [['HeaderDigest', 'None'], ['DataDigest', 'None']] },
    ]);
    expect(steps.at(-1)?.kind).toBe('done');
  });

  it('any target: no exception, bounded exchanges, and a finished login has sane parameters', () => {
    const chapArb = fc.constantFrom<LoginConfig['chap']>(undefined, { user: 'alice', secret: INITIATOR_SECRET });
    fuzz('iscsi login any target', fc.property(chapArb, fc.array(move, { minLength: 1, maxLength: 30 }), (chap, moves) => {
      const steps = playLogin(new LoginNegotiator(loginConfig(chap)), moves);
      expect(steps.length).toBeLessThanOrEqual(26);
      const done = steps.find((s) => s.kind === 'done');
      if (done?.kind === 'done') {
        const p = done.outcome.params;
        expect(done.outcome.tsih).not.toBe(0);
        expect(p.maxRecvDataSegmentLength).toBe(262144);
        expect(p.firstBurstLength).toBeLessThanOrEqual(p.maxBurstLength);
        expect(p.targetMaxRecvDataSegmentLength >= 512 && p.targetMaxRecvDataSegmentLength <= 0xffffff).toBe(true);
      }
    }), 3000);
  });
});
