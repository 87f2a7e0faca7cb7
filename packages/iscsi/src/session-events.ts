// One-line log events of a session. Kept apart so the session reads as protocol, and so no line
// can carry a secret: only portal, target, LUN, negotiated numbers and error messages (which
// never hold secrets) are printed.

import { decodeSense, senseText } from './codec/sense.js';
import type { OperationalParams } from './codec/text.js';
import type { RemoteError } from './errors.js';

/** Log every failed reconnect attempt up to this many, then one in ten. */
const RECONNECT_LOG_FIRST = 3;

export class SessionEvents {
  constructor(private readonly log: (line: string) => void, private readonly where: string) {}

  loggedIn(p: OperationalParams, reconnect: boolean): void {
    this.log(`${this.where}: ${reconnect ? 're-logged in' : 'logged in'} (HeaderDigest ${p.headerDigest ? 'CRC32C' : 'None'}, DataDigest ${p.dataDigest ? 'CRC32C' : 'None'}, ` +
      `target MaxRecvDataSegmentLength ${p.targetMaxRecvDataSegmentLength}, FirstBurstLength ${p.firstBurstLength}, MaxBurstLength ${p.maxBurstLength}, ` +
      `InitialR2T ${p.initialR2T ? 'Yes' : 'No'}, ImmediateData ${p.immediateData ? 'Yes' : 'No'})`);
  }

  lost(err: RemoteError, inFlight: number): void {
    this.log(`${this.where}: connection lost (${err.code}: ${err.message}); ${inFlight} command(s) in flight will be reissued; reconnecting`);
  }

  reconnected(attempts: number): void {
    this.log(`${this.where}: reconnected after ${attempts} attempt(s)`);
  }

  reconnectFailed(err: RemoteError, attempts: number): void {
    if (attempts <= RECONNECT_LOG_FIRST || attempts % 10 === 0) this.log(`${this.where}: reconnect attempt ${attempts} failed (${err.code}: ${err.message})`);
  }

  rejected(reason: number, describe: string | null): void {
    this.log(`${this.where}: target sent Reject reason 0x${reason.toString(16)}${describe === null ? '' : ` for ${describe}`}`);
  }

  asyncEvent(event: number, data: Uint8Array): void {
    let detail = '';
    if (event === 0 && data.length > 2) {
      const sense = decodeSense(data.subarray(2, 2 + ((data[0]! << 8) | data[1]!)));
      if (sense !== null) detail = `: ${senseText(sense)}`;
    }
    const names = ['SCSI asynchronous event', 'logout requested', 'connection will be dropped', 'all connections will be dropped', 'parameter negotiation requested'];
    this.log(`${this.where}: async message ${event} (${names[event] ?? 'vendor specific'})${detail}`);
  }

  closed(): void {
    this.log(`${this.where}: logged out`);
  }
}
