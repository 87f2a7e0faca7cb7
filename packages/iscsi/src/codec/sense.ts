// SCSI sense data (SPC-4 4.5), fixed (0x70/0x71) and descriptor (0x72/0x73) formats, decoded into
// one readable line and an errno-like code. Pure.

import type { RemoteErrorCode } from '../errors.js';
import { ScsiStatus } from './scsi.js';

export const SenseKey = {
  NoSense: 0x0, RecoveredError: 0x1, NotReady: 0x2, MediumError: 0x3, HardwareError: 0x4, IllegalRequest: 0x5,
  UnitAttention: 0x6, DataProtect: 0x7, BlankCheck: 0x8, VendorSpecific: 0x9, CopyAborted: 0xa, AbortedCommand: 0xb,
  VolumeOverflow: 0xd, Miscompare: 0xe,
} as const;

const KEY_NAMES = [
  'NO SENSE', 'RECOVERED ERROR', 'NOT READY', 'MEDIUM ERROR', 'HARDWARE ERROR', 'ILLEGAL REQUEST', 'UNIT ATTENTION',
  'DATA PROTECT', 'BLANK CHECK', 'VENDOR SPECIFIC', 'COPY ABORTED', 'ABORTED COMMAND', 'RESERVED', 'VOLUME OVERFLOW', 'MISCOMPARE', 'COMPLETED',
];

/** ASC/ASCQ we are likely to meet, keyed "ASC:ASCQ" in hex; others are shown as numbers. */
const ASC_TEXT: Record<string, string> = {
  '04:00': 'logical unit not ready, cause not reportable', '04:01': 'logical unit is in process of becoming ready',
  '04:02': 'logical unit not ready, initializing command required', '04:03': 'logical unit not ready, manual intervention required',
  '0c:00': 'write error', '11:00': 'unrecovered read error', '1a:00': 'parameter list length error',
  '20:00': 'invalid command operation code', '21:00': 'logical block address out of range', '24:00': 'invalid field in CDB',
  '25:00': 'logical unit not supported', '26:00': 'invalid field in parameter list', '27:00': 'write protected',
  '27:07': 'space allocation failed write protect', '28:00': 'not ready to ready change, medium may have changed',
  '29:00': 'power on, reset, or bus device reset occurred', '29:07': 'I_T nexus loss occurred', '2a:01': 'mode parameters changed',
  '2a:09': 'capacity data has changed', '3a:00': 'medium not present', '3f:0e': 'reported LUNs data has changed',
  '44:00': 'internal target failure', '55:03': 'insufficient resources',
};

export interface Sense {
  readonly key: number;
  readonly asc: number;
  readonly ascq: number;
  /** Fixed-format INFORMATION field when VALID is set (e.g. the failing LBA), else null. */
  readonly information: number | null;
}

/** Decodes sense bytes; null when they are too short or of an unknown response code. */
export function decodeSense(s: Uint8Array): Sense | null {
  if (s.length < 2) return null;
  const responseCode = s[0]! & 0x7f;
  if (responseCode === 0x70 || responseCode === 0x71) {
    if (s.length < 3) return null;
    const valid = (s[0]! & 0x80) !== 0 && s.length >= 7;
    const information = valid ? ((s[3]! << 24) | (s[4]! << 16) | (s[5]! << 8) | s[6]!) >>> 0 : null;
    return { key: s[2]! & 0x0f, asc: s.length > 12 ? s[12]! : 0, ascq: s.length > 13 ? s[13]! : 0, information };
  }
  if (responseCode === 0x72 || responseCode === 0x73) {
    return { key: s[1]! & 0x0f, asc: s.length > 2 ? s[2]! : 0, ascq: s.length > 3 ? s[3]! : 0, information: null };
  }
  return null;
}

const hex2 = (n: number): string => n.toString(16).padStart(2, '0');

export function senseText(sense: Sense): string {
  const code = `${hex2(sense.asc)}:${hex2(sense.ascq)}`;
  const what = ASC_TEXT[code] ?? (sense.asc === 0x04 ? ASC_TEXT['04:00']! : 'additional sense');
  return `${KEY_NAMES[sense.key] ?? 'UNKNOWN'}, ${what} (ASC/ASCQ ${code})`;
}

/** What a failed command means to the caller. `retry` is set for UNIT ATTENTION (retried once). */
export interface CommandFailure {
  readonly code: RemoteErrorCode;
  readonly text: string;
  readonly retry: 'once' | 'busy' | 'no';
}

/** Classifies a completed command's SCSI status and sense. `write` picks ENOSPC vs EINVAL for a bad LBA. */
export function classifyStatus(status: number, senseBytes: Uint8Array | null, write: boolean): CommandFailure | null {
  if (status === ScsiStatus.Good || status === ScsiStatus.ConditionMet) return null;
  if (status === ScsiStatus.Busy) return { code: 'EIO', text: 'target busy', retry: 'busy' };
  if (status === ScsiStatus.TaskSetFull) return { code: 'EIO', text: 'target task set full', retry: 'busy' };
  if (status === ScsiStatus.ReservationConflict) return { code: 'EPERM', text: 'reservation conflict (another initiator holds the LUN)', retry: 'no' };
  if (status === ScsiStatus.TaskAborted) return { code: 'EIO', text: 'task aborted by the target', retry: 'once' };
  if (status !== ScsiStatus.CheckCondition) return { code: 'EIO', text: `SCSI status 0x${hex2(status)}`, retry: 'no' };
  const sense = senseBytes === null ? null : decodeSense(senseBytes);
  if (sense === null) return { code: 'EIO', text: 'CHECK CONDITION without readable sense data', retry: 'no' };
  return classifySense(sense, write);
}

export function classifySense(sense: Sense, write: boolean): CommandFailure | null {
  const text = senseText(sense);
  switch (sense.key) {
    case SenseKey.NoSense:
    case SenseKey.RecoveredError:
      return null; // the command completed; the target only reports something it fixed
    case SenseKey.UnitAttention:
      return { code: 'EIO', text, retry: 'once' };
    case SenseKey.NotReady:
      return { code: 'EIO', text, retry: sense.asc === 0x04 && sense.ascq === 0x01 ? 'busy' : 'no' };
    case SenseKey.IllegalRequest:
      if (sense.asc === 0x21) return { code: write ? 'ENOSPC' : 'EINVAL', text, retry: 'no' };
      if (sense.asc === 0x20) return { code: 'ENOTSUP', text, retry: 'no' };
      if (sense.asc === 0x25) return { code: 'ENOENT', text, retry: 'no' };
      return { code: 'EINVAL', text, retry: 'no' };
    case SenseKey.DataProtect:
      return { code: sense.asc === 0x27 && sense.ascq === 0x07 ? 'ENOSPC' : 'EPERM', text, retry: 'no' };
    case SenseKey.AbortedCommand:
      return { code: 'EIO', text, retry: 'once' };
    case SenseKey.VolumeOverflow:
      return { code: 'ENOSPC', text, retry: 'no' };
    default:
      return { code: 'EIO', text, retry: 'no' };
  }
}

/** Whether a failure says "this command is not implemented" (so a fallback form may work). */
export function isUnsupportedCommand(f: CommandFailure | null): boolean {
  return f !== null && f.code === 'ENOTSUP';
}
