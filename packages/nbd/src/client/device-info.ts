// What the handshake said about the device, as the client's public BlockDeviceInfo.

import { DEFAULT_MAX_PAYLOAD_BYTES, TransmissionFlag } from '../constants.js';
import { payloadLimitFrom } from '../codec/client-handshake.js';
import type { Negotiated } from './handshake.js';
import type { BlockDeviceInfo } from './types.js';

/** The device as the server described it at connect time. */
export function deviceInfoFrom(n: Pick<Negotiated, 'sizeBytes' | 'transmissionFlags' | 'blockSize'> & Partial<Negotiated>): BlockDeviceInfo {
  const f = n.transmissionFlags;
  const has = (flag: number): boolean => (f & TransmissionFlag.HAS_FLAGS) !== 0 && (f & flag) !== 0;
  return {
    sizeBytes: n.sizeBytes,
    blockSizeBytes: n.blockSize?.minimumBytes ?? 1,
    maxRequestBytes: n.blockSize === undefined ? DEFAULT_MAX_PAYLOAD_BYTES : payloadLimitFrom(n.blockSize, DEFAULT_MAX_PAYLOAD_BYTES),
    readOnly: has(TransmissionFlag.READ_ONLY),
    canFlush: has(TransmissionFlag.SEND_FLUSH),
    canFua: has(TransmissionFlag.SEND_FUA),
    canTrim: has(TransmissionFlag.SEND_TRIM),
    canWriteZeroes: has(TransmissionFlag.SEND_WRITE_ZEROES),
    canMultiConn: has(TransmissionFlag.CAN_MULTI_CONN),
    canResize: has(TransmissionFlag.SEND_RESIZE),
  };
}
