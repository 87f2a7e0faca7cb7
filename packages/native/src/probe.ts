// Learns O_DIRECT's memory alignment the way a kernel sees it: read one block with O_DIRECT into
// a SharedArrayBuffer at offsets 0, 16, ..., 4080 and note which offsets the kernel accepts.
import { randomBytes } from 'node:crypto';
import { closeSync, constants, openSync, readSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

import { errorCode, sysError } from './errors.js';

export const pageBytes = 4096;
const probeStepBytes = 16;
const probeBlockBytes = 4096;

export interface DirectIoProbe {
  /** First offset into the SAB where an O_DIRECT read succeeded. */
  firstOffsetBytes: number;
  /** Spacing of accepted offsets: the memory alignment O_DIRECT needs in probeDir (≤ 4096). */
  alignBytes: number;
  /** False when the SAB was too small to try every offset (alignBytes is then a lower bound). */
  complete: boolean;
}

function acceptedOffsets(fd: number, sab: SharedArrayBuffer, pattern: Buffer): number[] {
  const accepted: number[] = [];
  for (let offset = 0; offset < pageBytes && offset + probeBlockBytes <= sab.byteLength; offset += probeStepBytes) {
    const view = new Uint8Array(sab, offset, probeBlockBytes);
    try {
      const readBytes = readSync(fd, view, 0, probeBlockBytes, 0);
      // A short or wrong read would mean the probe itself is broken: say so, do not guess.
      if (readBytes !== probeBlockBytes || !pattern.equals(view)) {
        throw sysError('EIO', `O_DIRECT probe read ${readBytes} bytes with unexpected content`, { syscall: 'read' });
      }
      accepted.push(offset);
    } catch (error) {
      if (errorCode(error) !== 'EINVAL') throw error;
    }
  }
  return accepted;
}

/**
 * Runs the probe in a temp file created in probeDir (removed afterwards). Returns null when
 * O_DIRECT is unsupported there (tmpfs says EINVAL at open) or no offset worked. The SAB's
 * first 8 KiB are restored afterwards, but call this before sharing the SAB with workers.
 */
export function probeDirectIo(sab: SharedArrayBuffer, probeDir: string): DirectIoProbe | null {
  const path = join(probeDir, `.onestack-dio-probe-${process.pid}-${randomBytes(6).toString('hex')}`);
  const pattern = randomBytes(probeBlockBytes);
  writeFileSync(path, pattern, { flag: 'wx' });
  const touched = new Uint8Array(sab, 0, Math.min(sab.byteLength, pageBytes + probeBlockBytes));
  const saved = touched.slice();
  let fd = -1;
  try {
    try {
      fd = openSync(path, constants.O_RDONLY | constants.O_DIRECT);
    } catch (error) {
      if (errorCode(error) === 'EINVAL') return null;
      throw error;
    }
    const accepted = acceptedOffsets(fd, sab, pattern);
    const [first, second] = accepted;
    if (first === undefined) return null;
    const complete = sab.byteLength >= pageBytes - probeStepBytes + probeBlockBytes;
    const alignBytes = second === undefined ? pageBytes : second - first;
    return { firstOffsetBytes: first, alignBytes, complete };
  } finally {
    touched.set(saved);
    if (fd >= 0) closeSync(fd);
    rmSync(path, { force: true });
  }
}
