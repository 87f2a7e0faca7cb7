// The login phase as a socket-free state machine (RFC 7143 sections 6.3, 12.1.3): the security
// stage (AuthMethod, one-way or mutual CHAP with MD5), the operational stage (digests, burst
// sizes, R2T rules, ErrorRecoveryLevel=0), then full feature phase. The driver sends what
// start()/onResponse() return and feeds back each Login Response.

import { CHAP_MD5, chapResponse, decodeBinary, encodeBinary, newChallenge, sameBytes } from './codec/chap.js';
import type { LoginRequest, LoginResponse } from './codec/pdu.js';
import { Opcode } from './codec/pdu.js';
import { applyOperationalKeys, decodeText, encodeText, finishParams, operationalOffer, RFC_DEFAULTS, TEXT_BYTES_MAX, textValue, type OperationalParams, type TextPairs } from './codec/text.js';
import { IscsiProtocolError, type RemoteErrorCode } from './errors.js';

export interface ChapCredentials {
  readonly user: string;
  readonly secret: string;
  /** Set both for mutual CHAP: the target must prove it knows targetSecret. */
  readonly targetUser?: string;
  readonly targetSecret?: string;
}

export interface LoginConfig {
  readonly initiatorName: string;
  /** null for a discovery session. */
  readonly targetName: string | null;
  readonly chap: ChapCredentials | undefined;
  /** Our preferences for the operational keys. */
  readonly ours: OperationalParams;
  readonly isid: Uint8Array;
  readonly tsih: number;
  readonly cid: number;
  readonly itt: number;
  readonly cmdSN: number;
  /** "host:port" for messages. */
  readonly portal: string;
}

export interface LoginOutcome {
  readonly params: OperationalParams;
  readonly tsih: number;
  readonly statSN: number;
  readonly expCmdSN: number;
  readonly maxCmdSN: number;
}

export interface LoginRequestOut { readonly bhs: LoginRequest; readonly data: Uint8Array }

export type LoginStep =
  | { readonly kind: 'send'; readonly request: LoginRequestOut }
  | { readonly kind: 'done'; readonly outcome: LoginOutcome }
  | { readonly kind: 'fail'; readonly code: RemoteErrorCode; readonly message: string };

const STAGE_SECURITY = 0;
const STAGE_OPERATIONAL = 1;
const STAGE_FULL_FEATURE = 3;
/** A login needs about four exchanges; more means a confused or hostile target. */
const EXCHANGES_MAX = 24;

type SecurityState = 'offer' | 'chap-algorithm' | 'chap-response' | 'done';

export class LoginNegotiator {
  private stage = STAGE_SECURITY;
  private security: SecurityState = 'offer';
  private expStatSN = 0;
  private exchanges = 0;
  private partial: Uint8Array[] = [];
  private partialBytes = 0;
  private offered = new Set<string>();
  private params: OperationalParams = RFC_DEFAULTS;
  private mutual: { identifier: number; challenge: Uint8Array } | null = null;

  constructor(private readonly cfg: LoginConfig) {
    if (cfg.isid.length !== 6) throw new RangeError('ISID must be 6 bytes');
  }

  private get discovery(): boolean {
    return this.cfg.targetName === null;
  }

  private get wantsMutual(): boolean {
    return this.cfg.chap?.targetSecret !== undefined;
  }

  private get who(): string {
    return `${this.cfg.portal} (${this.cfg.targetName ?? 'discovery'})`;
  }

  start(): LoginStep {
    const keys: Array<[string, string]> = [['InitiatorName', this.cfg.initiatorName], ['SessionType', this.discovery ? 'Discovery' : 'Normal']];
    if (this.cfg.targetName !== null) keys.push(['TargetName', this.cfg.targetName]);
    if (this.cfg.chap === undefined) {
      keys.push(['AuthMethod', 'None']);
      return this.request(keys, true, STAGE_OPERATIONAL);
    }
    // With mutual CHAP, "None" would let a target skip proving itself: offer CHAP only.
    keys.push(['AuthMethod', this.wantsMutual ? 'CHAP' : 'CHAP,None']);
    return this.request(keys, false, STAGE_OPERATIONAL);
  }

  onResponse(resp: LoginResponse, data: Uint8Array): LoginStep {
    if (resp.opcode !== Opcode.LoginResponse) return this.fail('EPROTO', `expected a Login Response from ${this.who}, got opcode 0x${(resp as { opcode: number }).opcode.toString(16)}`);
    if (++this.exchanges > EXCHANGES_MAX) return this.fail('EPROTO', `login with ${this.who} did not finish in ${EXCHANGES_MAX} exchanges`);
    if (resp.statusClass !== 0) return this.statusFailure(resp.statusClass, resp.statusDetail, data);
    if (resp.versionActive !== 0) return this.fail('EPROTO', `${this.who} speaks iSCSI version ${resp.versionActive}; only 0 is supported`);
    this.expStatSN = (resp.statSN + 1) >>> 0;
    this.partialBytes += data.length;
    if (this.partialBytes > TEXT_BYTES_MAX) return this.fail('EPROTO', `login text from ${this.who} exceeds ${TEXT_BYTES_MAX} bytes`);
    this.partial.push(data);
    // C bit: the target has more text; ask for it with an empty request in the same stage.
    if (resp.cont) return this.request([], false, resp.nsg);
    const text = concat(this.partial);
    this.partial = [];
    this.partialBytes = 0;
    try {
      const pairs = decodeText(text);
      return this.stage === STAGE_SECURITY ? this.onSecurity(resp, pairs) : this.onOperational(resp, pairs);
    } catch (err) {
      if (err instanceof IscsiProtocolError) return this.fail('EPROTO', `login with ${this.who}: ${err.message}`);
      throw err;
    }
  }

  private onSecurity(resp: LoginResponse, pairs: TextPairs): LoginStep {
    const method = textValue(pairs, 'AuthMethod');
    if (this.security === 'offer') {
      if (method === 'CHAP') {
        this.security = 'chap-algorithm';
        return this.request([['CHAP_A', String(CHAP_MD5)]], false, STAGE_OPERATIONAL);
      }
      if (method === 'Reject') return this.authFailure('the target rejected every offered AuthMethod');
      if (this.wantsMutual) return this.fail('EAUTH', `${this.who} did not run CHAP, but mutual CHAP was required`);
      this.security = 'done';
      return this.advance(resp);
    }
    if (this.security === 'chap-algorithm') return this.answerChallenge(pairs);
    if (this.security === 'chap-response' && this.mutual !== null) {
      const failure = this.verifyTarget(pairs);
      if (failure !== null) return failure;
    }
    this.security = 'done';
    return this.advance(resp);
  }

  private answerChallenge(pairs: TextPairs): LoginStep {
    const chap = this.cfg.chap!;
    const algorithm = textValue(pairs, 'CHAP_A');
    if (algorithm !== String(CHAP_MD5)) return this.fail('EAUTH', `${this.who} chose CHAP_A=${algorithm ?? '(none)'}; only MD5 (5) is supported`);
    const idText = textValue(pairs, 'CHAP_I');
    const challengeText = textValue(pairs, 'CHAP_C');
    const identifier = idText !== undefined && /^\d{1,3}$/.test(idText) ? Number(idText) : NaN;
    if (!(identifier >= 0 && identifier <= 255) || challengeText === undefined) return this.fail('EPROTO', `${this.who} sent a malformed CHAP challenge`);
    const challenge = decodeBinary(challengeText);
    const keys: Array<[string, string]> = [['CHAP_N', chap.user], ['CHAP_R', encodeBinary(chapResponse(identifier, chap.secret, challenge))]];
    if (this.wantsMutual) {
      this.mutual = newChallenge();
      // A target that echoes our challenge back could replay our own answer (reflection).
      if (sameBytes(this.mutual.challenge, challenge)) this.mutual = newChallenge();
      keys.push(['CHAP_I', String(this.mutual.identifier)], ['CHAP_C', encodeBinary(this.mutual.challenge)]);
    }
    this.security = 'chap-response';
    return this.request(keys, true, STAGE_OPERATIONAL);
  }

  private verifyTarget(pairs: TextPairs): LoginStep | null {
    const chap = this.cfg.chap!;
    const name = textValue(pairs, 'CHAP_N');
    const response = textValue(pairs, 'CHAP_R');
    if (name === undefined || response === undefined) return this.fail('EAUTH', `${this.who} did not answer our CHAP challenge (mutual CHAP for '${chap.targetUser ?? ''}')`);
    if (chap.targetUser !== undefined && name !== chap.targetUser) return this.fail('EAUTH', `mutual CHAP: ${this.who} identified as '${name}', expected '${chap.targetUser}'`);
    const want = chapResponse(this.mutual!.identifier, chap.targetSecret!, this.mutual!.challenge);
    if (!sameBytes(decodeBinary(response), want)) return this.fail('EAUTH', `mutual CHAP failed: ${this.who} did not prove the target secret for '${name}'`);
    return null;
  }

  /** Follows the target to the next stage, or asks to move on. */
  private advance(resp: LoginResponse): LoginStep {
    if (!resp.transit) return this.request([], true, STAGE_OPERATIONAL);
    if (resp.nsg === STAGE_FULL_FEATURE) return this.done(resp);
    this.stage = STAGE_OPERATIONAL;
    const offer = operationalOffer(this.cfg.ours, this.discovery);
    this.offered = new Set(offer.map(([k]) => k));
    return this.request(offer, true, STAGE_FULL_FEATURE);
  }

  private onOperational(resp: LoginResponse, pairs: TextPairs): LoginStep {
    const outcome = applyOperationalKeys(this.params, this.cfg.ours, pairs, this.offered, this.discovery);
    this.params = outcome.params;
    for (const [k] of outcome.answers) this.offered.add(k);
    if (resp.transit && resp.nsg === STAGE_FULL_FEATURE) return this.done(resp);
    return this.request(outcome.answers, true, STAGE_FULL_FEATURE);
  }

  private done(resp: LoginResponse): LoginStep {
    if (resp.tsih === 0) return this.fail('EPROTO', `${this.who} finished login without a session handle (TSIH 0)`);
    // Our declaration holds whether or not the target echoed it.
    const params = finishParams({ ...this.params, maxRecvDataSegmentLength: this.cfg.ours.maxRecvDataSegmentLength });
    return { kind: 'done', outcome: { params, tsih: resp.tsih, statSN: resp.statSN, expCmdSN: resp.expCmdSN, maxCmdSN: resp.maxCmdSN } };
  }

  private request(keys: TextPairs, transit: boolean, nsg: number): LoginStep {
    const data = encodeText(keys);
    const bhs: LoginRequest = {
      opcode: Opcode.LoginRequest, transit, cont: false, csg: this.stage, nsg: transit ? nsg : 0, versionMax: 0, versionMin: 0,
      isid: this.cfg.isid, tsih: this.cfg.tsih, itt: this.cfg.itt, cid: this.cfg.cid, cmdSN: this.cfg.cmdSN, expStatSN: this.expStatSN,
      dataSegmentLength: data.length,
    };
    return { kind: 'send', request: { bhs, data } };
  }

  private fail(code: RemoteErrorCode, message: string): LoginStep {
    return { kind: 'fail', code, message };
  }

  private authFailure(why: string): LoginStep {
    const chap = this.cfg.chap;
    if (chap === undefined) return this.fail('EAUTH', `${this.who} requires authentication, but no CHAP credentials were given (${why})`);
    return this.fail('EAUTH', `CHAP authentication failed for ${chap.user} at ${this.who}: ${why}`);
  }

  private statusFailure(statusClass: number, detail: number, data: Uint8Array): LoginStep {
    const status = `login status 0x${((statusClass << 8) | detail).toString(16).padStart(4, '0')}`;
    if (statusClass === 0x01) {
      let to = '(no address)';
      try { to = textValue(decodeText(data), 'TargetAddress') ?? to; } catch { /* keep the placeholder */ }
      return this.fail('ENOTSUP', `${this.who} redirects to ${to}; redirects are not followed (${status})`);
    }
    if (statusClass === 0x02) {
      switch (detail) {
        case 0x01: return this.authFailure(`the target refused the credentials (${status})`);
        case 0x02: return this.fail('EAUTH', `initiator ${this.cfg.initiatorName} is not authorized for ${this.who} (${status})`);
        case 0x03: return this.fail('ENOENT', `target ${this.cfg.targetName ?? '(discovery)'} not found at ${this.cfg.portal} (${status})`);
        case 0x04: return this.fail('ENOENT', `target ${this.cfg.targetName ?? ''} was removed from ${this.cfg.portal} (${status})`);
        case 0x06: return this.fail('EIO', `${this.who} has too many connections (${status})`);
        case 0x09: return this.fail('ENOTSUP', `${this.who} does not support this session type (${status})`);
        default: return this.fail('EPROTO', `${this.who} rejected the login as an initiator error (${status})`);
      }
    }
    const why = detail === 0x01 ? 'service unavailable' : detail === 0x02 ? 'out of resources' : 'target error';
    return this.fail('EIO', `${this.who} failed the login: ${why} (${status})`);
  }
}

function concat(parts: Uint8Array[]): Uint8Array {
  if (parts.length === 1) return parts[0]!;
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) { out.set(p, at); at += p.length; }
  return out;
}
