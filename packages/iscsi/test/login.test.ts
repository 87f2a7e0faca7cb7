// The login state machine against a scripted target (pure: no sockets).

import { describe, expect, it } from 'vitest';
import { chapResponse, decodeBinary, encodeBinary } from '../src/codec/chap.js';
import { Opcode, type LoginResponse } from '../src/codec/pdu.js';
import { decodeText, encodeText, RFC_DEFAULTS, textValue } from '../src/codec/text.js';
import { LoginNegotiator, type LoginConfig, type LoginStep } from '../src/login.js';

const SECRET = 'alice-secret-0123';
const TARGET_SECRET = 'target-secret-9876';

function config(chap?: LoginConfig['chap']): LoginConfig {
  return {
    initiatorName: 'iqn.2026-11.dev.onestack:test', targetName: 'iqn.2026-11.dev.onestack:t', chap,
    ours: { ...RFC_DEFAULTS, headerDigest: true, maxRecvDataSegmentLength: 262144 }, isid: Uint8Array.of(0x80, 0, 0, 1, 0, 0),
    tsih: 0, cid: 0, itt: 0x80000003, cmdSN: 1, portal: '127.0.0.1:3260',
  };
}

function response(over: Partial<LoginResponse>, keys: Array<[string, string]> = []): [LoginResponse, Uint8Array] {
  const data = encodeText(keys);
  return [{
    opcode: Opcode.LoginResponse, transit: false, cont: false, csg: 0, nsg: 0, versionMax: 0, versionActive: 0, isid: Uint8Array.of(0x80, 0, 0, 1, 0, 0),
    tsih: 0, itt: 0x80000003, statSN: 0, expCmdSN: 1, maxCmdSN: 1, statusClass: 0, statusDetail: 0, dataSegmentLength: data.length, ...over,
  }, data];
}

function sent(step: LoginStep): { csg: number; nsg: number; transit: boolean; keys: Array<[string, string]> } {
  if (step.kind !== 'send') throw new Error(`expected a request, got ${JSON.stringify(step)}`);
  const b = step.request.bhs;
  return { csg: b.csg, nsg: b.nsg, transit: b.transit, keys: decodeText(step.request.data) };
}

/** Drives the operational stage to the end with a target that accepts our offer. */
function finishOperational(n: LoginNegotiator, step: LoginStep): LoginStep {
  const op = sent(step);
  expect(op).toMatchObject({ csg: 1, nsg: 3, transit: true });
  expect(textValue(op.keys, 'HeaderDigest')).toBe('CRC32C,None');
  return n.onResponse(...response({ transit: true, csg: 1, nsg: 3, tsih: 9, statSN: 41, expCmdSN: 1, maxCmdSN: 64 },
    [['HeaderDigest', 'CRC32C'], ['DataDigest', 'None'], ['MaxRecvDataSegmentLength', '65536'], ['TargetPortalGroupTag', '1']]));
}

describe('login state machine', () => {
  it('logs in without authentication: security stage straight to operational, then full feature', () => {
    const n = new LoginNegotiator(config());
    const first = sent(n.start());
    expect(first).toMatchObject({ csg: 0, nsg: 1, transit: true });
    expect(first.keys).toEqual(expect.arrayContaining([['AuthMethod', 'None'], ['SessionType', 'Normal'], ['TargetName', 'iqn.2026-11.dev.onestack:t']]));
    const done = finishOperational(n, n.onResponse(...response({ transit: true, csg: 0, nsg: 1 }, [['AuthMethod', 'None']])));
    expect(done).toMatchObject({ kind: 'done', outcome: { tsih: 9, statSN: 41, maxCmdSN: 64, params: { headerDigest: true, dataDigest: false, targetMaxRecvDataSegmentLength: 65536, maxRecvDataSegmentLength: 262144 } } });
  });

  it('answers a one-way CHAP challenge with MD5(id || secret || challenge)', () => {
    const n = new LoginNegotiator(config({ user: 'alice', secret: SECRET }));
    expect(textValue(sent(n.start()).keys, 'AuthMethod')).toBe('CHAP,None');
    expect(sent(n.onResponse(...response({}, [['AuthMethod', 'CHAP']]))).keys).toEqual([['CHAP_A', '5']]);
    const challenge = Uint8Array.from({ length: 16 }, (_, i) => 200 - i);
    const answer = sent(n.onResponse(...response({}, [['CHAP_A', '5'], ['CHAP_I', '77'], ['CHAP_C', encodeBinary(challenge)]])));
    expect(answer).toMatchObject({ transit: true, nsg: 1 });
    expect(answer.keys).toEqual([['CHAP_N', 'alice'], ['CHAP_R', encodeBinary(chapResponse(77, SECRET, challenge))]]);
    expect(finishOperational(n, n.onResponse(...response({ transit: true, csg: 0, nsg: 1 })))).toMatchObject({ kind: 'done' });
  });

  it('runs mutual CHAP and verifies the target with the target secret', () => {
    const chap = { user: 'bob', secret: SECRET, targetUser: 'tgt', targetSecret: TARGET_SECRET };
    const run = (targetSecret: string, targetUser = 'tgt'): LoginStep => {
      const n = new LoginNegotiator(config(chap));
      expect(textValue(sent(n.start()).keys, 'AuthMethod')).toBe('CHAP'); // no "None" to fall back to
      n.onResponse(...response({}, [['AuthMethod', 'CHAP']]));
      const ours = sent(n.onResponse(...response({}, [['CHAP_A', '5'], ['CHAP_I', '1'], ['CHAP_C', '0x0102030405060708090a0b0c0d0e0f10']])));
      const id = Number(textValue(ours.keys, 'CHAP_I'));
      const challenge = decodeBinary(textValue(ours.keys, 'CHAP_C')!);
      expect(challenge.length).toBe(16);
      const proof = encodeBinary(chapResponse(id, targetSecret, challenge));
      const next = n.onResponse(...response({ transit: true, csg: 0, nsg: 1 }, [['CHAP_N', targetUser], ['CHAP_R', proof]]));
      return next.kind === 'send' ? finishOperational(n, next) : next;
    };
    expect(run(TARGET_SECRET)).toMatchObject({ kind: 'done' });
    const wrong = run('not-the-secret');
    expect(wrong).toMatchObject({ kind: 'fail', code: 'EAUTH', message: expect.stringContaining('mutual CHAP failed') });
    expect(JSON.stringify(wrong)).not.toContain(TARGET_SECRET);
    expect(JSON.stringify(wrong)).not.toContain(SECRET);
    expect(run(TARGET_SECRET, 'mallory')).toMatchObject({ kind: 'fail', code: 'EAUTH', message: expect.stringContaining("'mallory'") });
  });

  it('refuses a target that skips authentication when mutual CHAP is required', () => {
    const n = new LoginNegotiator(config({ user: 'bob', secret: SECRET, targetUser: 'tgt', targetSecret: TARGET_SECRET }));
    n.start();
    expect(n.onResponse(...response({ transit: true, csg: 0, nsg: 1 }, [['AuthMethod', 'None']]))).toMatchObject({ kind: 'fail', code: 'EAUTH' });
  });

  it('maps login status classes to clear errors that never hold the secret', () => {
    const fail = (cls: number, detail: number, chap = true): LoginStep => {
      const n = new LoginNegotiator(config(chap ? { user: 'alice', secret: SECRET } : undefined));
      n.start();
      return n.onResponse(...response({ statusClass: cls, statusDetail: detail }));
    };
    const auth = fail(2, 1);
    expect(auth).toMatchObject({ kind: 'fail', code: 'EAUTH', message: expect.stringMatching(/^CHAP authentication failed for alice at 127\.0\.0\.1:3260/) });
    expect(JSON.stringify(auth)).not.toContain(SECRET);
    expect(fail(2, 1, false)).toMatchObject({ code: 'EAUTH', message: expect.stringContaining('no CHAP credentials') });
    expect(fail(2, 3)).toMatchObject({ code: 'ENOENT', message: expect.stringContaining('target iqn.2026-11.dev.onestack:t not found at 127.0.0.1:3260') });
    expect(fail(2, 2)).toMatchObject({ code: 'EAUTH', message: expect.stringContaining('not authorized') });
    expect(fail(3, 1)).toMatchObject({ code: 'EIO', message: expect.stringContaining('service unavailable') });
    expect(fail(1, 1)).toMatchObject({ code: 'ENOTSUP', message: expect.stringContaining('redirect') });
  });

  it('collects text continued with the C bit, and gives up on an endless login', () => {
    const n = new LoginNegotiator(config());
    n.start();
    const half = encodeText([['AuthMethod', 'None']]);
    const more = n.onResponse(...response({ cont: true }, []).map((x, i) => (i === 1 ? half.subarray(0, 5) : x)) as [LoginResponse, Uint8Array]);
    expect(sent(more)).toMatchObject({ transit: false, keys: [] });
    const r = response({ transit: true, csg: 0, nsg: 1 });
    expect(sent(n.onResponse(r[0], half.subarray(5)))).toMatchObject({ csg: 1, nsg: 3 });
    const stuck = new LoginNegotiator(config());
    stuck.start();
    let last: LoginStep = { kind: 'fail', code: 'EIO', message: '' };
    for (let i = 0; i < 30 && (i === 0 || last.kind === 'send'); i++) last = stuck.onResponse(...response({ csg: 0 }, [['AuthMethod', 'None']]));
    expect(last).toMatchObject({ kind: 'fail', code: 'EPROTO', message: expect.stringContaining('did not finish') });
  });

  it('treats malformed login text as EPROTO', () => {
    const n = new LoginNegotiator(config());
    n.start();
    expect(n.onResponse(response({})[0], new TextEncoder().encode('garbage'))).toMatchObject({ kind: 'fail', code: 'EPROTO' });
  });
});
