// SendTargets discovery (RFC 7143 appendix C): a Discovery session, one Text exchange
// (continued while the target sets the C bit), then Logout.

import { randomBytes } from 'node:crypto';
import { Opcode, RESERVED_TAG, type TextRequest } from './codec/pdu.js';
import { decodeText, encodeText, TEXT_BYTES_MAX } from './codec/text.js';
import { defaultInitiatorIqn, initiatorParams, ISCSI_DEFAULT_PORT, validateCommon, type IscsiClientOptions } from './client.js';
import { IscsiConnection, login } from './connection.js';
import { IscsiProtocolError, RemoteError } from './errors.js';
import { LOGIN_ITT, LOGOUT_ITT, TEXT_ITT } from './tasks.js';

export interface DiscoveredTarget {
  readonly targetIqn: string;
  /** "host:port" of each portal (IPv6 as "[addr]:port"); the portal group tag is dropped. */
  readonly portals: string[];
}

export interface DiscoveryOptions {
  readonly host: string;
  readonly port?: number;
  readonly chap?: IscsiClientOptions['chap'];
  readonly timeoutMs: number;
  readonly initiatorIqn?: string;
}

/** Text responses in one discovery; each is at most our MaxRecvDataSegmentLength. */
const TEXT_EXCHANGES_MAX = 64;

export async function discoverIscsiTargets(opts: DiscoveryOptions): Promise<DiscoveredTarget[]> {
  const port = opts.port ?? ISCSI_DEFAULT_PORT;
  validateCommon(opts.host, port, opts.timeoutMs);
  const deadlineAt = Date.now() + opts.timeoutMs;
  const portal = `${opts.host}:${port}`;
  const conn = await IscsiConnection.connect(opts.host, port, opts.timeoutMs, `iSCSI ${portal} discovery`);
  try {
    const isid = new Uint8Array(randomBytes(6));
    isid[0] = 0x80;
    const outcome = await login(conn, {
      initiatorName: opts.initiatorIqn ?? defaultInitiatorIqn(), targetName: null, chap: opts.chap, ours: initiatorParams(undefined),
      isid, tsih: 0, cid: 0, itt: LOGIN_ITT, cmdSN: 1, portal,
    }, deadlineAt);
    const answer = await sendTargets(conn, outcome.expCmdSN, (outcome.statSN + 1) >>> 0, deadlineAt);
    const targets = parseSendTargets(answer.text, `${opts.host.includes(':') ? `[${opts.host}]` : opts.host}:${port}`);
    conn.send({ opcode: Opcode.LogoutRequest, immediate: true, reason: 0, itt: LOGOUT_ITT, cid: 0, cmdSN: answer.cmdSN, expStatSN: answer.expStatSN, dataSegmentLength: 0 });
    // The answer is in hand: wait briefly for the Logout Response, but a silent target costs nothing.
    await conn.nextPdu(Math.min(1000, Math.max(1, deadlineAt - Date.now())), 'Logout').catch(() => undefined);
    return targets;
  } catch (err) {
    if (err instanceof IscsiProtocolError) throw new RemoteError('EPROTO', `iSCSI ${portal} discovery: ${err.message}`);
    throw err;
  } finally {
    conn.end(100);
  }
}

async function sendTargets(conn: IscsiConnection, cmdSN: number, expStatSN: number, deadlineAt: number): Promise<{ text: Uint8Array; cmdSN: number; expStatSN: number }> {
  const parts: Uint8Array[] = [];
  let total = 0;
  let ttt = RESERVED_TAG;
  let data = encodeText([['SendTargets', 'All']]);
  for (let i = 0; i < TEXT_EXCHANGES_MAX; i++) {
    const req: TextRequest = { opcode: Opcode.TextRequest, immediate: false, final: true, cont: false, lun: 0, itt: TEXT_ITT, ttt, cmdSN, expStatSN, dataSegmentLength: data.length };
    conn.send(req, data);
    const pdu = await conn.nextPdu(deadlineAt - Date.now(), 'SendTargets');
    const bhs = pdu.bhs;
    if (bhs.opcode === Opcode.Reject) throw new RemoteError('EPROTO', `${conn.portal}: target rejected SendTargets (reason 0x${bhs.reason.toString(16)})`);
    if (bhs.opcode !== Opcode.TextResponse || bhs.itt !== TEXT_ITT) throw new RemoteError('EPROTO', `${conn.portal}: expected a Text Response, got opcode 0x${bhs.opcode.toString(16)}`);
    total += pdu.data.length;
    if (total > TEXT_BYTES_MAX * 4) throw new RemoteError('EPROTO', `${conn.portal}: SendTargets answer exceeds ${TEXT_BYTES_MAX * 4} bytes`);
    parts.push(pdu.data);
    expStatSN = (bhs.statSN + 1) >>> 0;
    cmdSN = (cmdSN + 1) >>> 0;
    if (!bhs.cont) break;
    // C bit: more text follows; ask for it with an empty request naming the target's tag.
    ttt = bhs.ttt;
    data = new Uint8Array(0);
  }
  const out = new Uint8Array(total);
  let at = 0;
  for (const p of parts) { out.set(p, at); at += p.length; }
  return { text: out, cmdSN, expStatSN };
}

/** TargetName starts a record; the TargetAddress keys after it belong to it. */
export function parseSendTargets(text: Uint8Array, discoveryPortal: string): DiscoveredTarget[] {
  const out: Array<{ targetIqn: string; portals: string[] }> = [];
  for (const [key, value] of decodeText(text, TEXT_BYTES_MAX * 4)) {
    if (key === 'TargetName') out.push({ targetIqn: value, portals: [] });
    else if (key === 'TargetAddress' && out.length > 0) out[out.length - 1]!.portals.push(value.replace(/,\d+$/, ''));
  }
  // No TargetAddress: the target is reachable where we asked (RFC 7143 appendix C).
  for (const t of out) if (t.portals.length === 0) t.portals.push(discoveryPortal);
  return out;
}
