// Pure-JS way to learn where a typed array's memory really is: stamp a random marker into it,
// find the marker by reading our own memory through /proc/self/mem, and confirm the hit by
// stamping a second marker and seeing it appear at the same address. Used only when the addon
// is missing. It briefly overwrites (then restores) the view's first 32 bytes, so call it
// before the memory is shared with other threads.
import { randomBytes } from 'node:crypto';
import { closeSync, openSync, readFileSync, readSync } from 'node:fs';

const markerBytesMax = 32;
const markerBytesMin = 16;
const chunkBytes = 1 << 20;
const scanBytesMax = 4 * 1024 ** 3; // bounds the scan of a large heap (~1 s at worst)
const candidatesMax = 64;

interface Mapping {
  start: bigint;
  end: bigint;
}

// Private, writable, anonymous memory: where malloc (and so V8's ArrayBuffer allocator) puts
// backing stores. File and device mappings are never read: reading them may have side effects.
function anonymousMappings(byteLength: number): Mapping[] {
  const mappings: Mapping[] = [];
  for (const line of readFileSync('/proc/self/maps', 'utf8').split('\n')) {
    const fields = line.trim().split(/\s+/);
    const [range, perms, , , inode, name = ''] = fields;
    if (range === undefined || perms !== 'rw-p' || inode !== '0') continue;
    if (name !== '' && name !== '[heap]' && !name.startsWith('[anon')) continue;
    const [start, end] = range.split('-').map((hex) => BigInt(`0x${hex}`));
    if (start !== undefined && end !== undefined && end > start) mappings.push({ start, end });
  }
  // A large buffer usually owns one mmap of about its own size: look there first.
  const fits = (m: Mapping): boolean => {
    const size = Number(m.end - m.start);
    return size >= byteLength && size <= byteLength + 65536;
  };
  return [...mappings.filter(fits), ...mappings.filter((m) => !fits(m))];
}

function readAt(memFd: number, into: Buffer, length: number, address: bigint): number {
  try {
    return readSync(memFd, into, 0, length, address);
  } catch {
    return 0; // unreadable page (guard, VM_IO): the caller skips the rest of the mapping
  }
}

// Calls `onHit` for each address in the mappings holding `marker`; stops when it returns true.
function scan(memFd: number, mappings: Mapping[], marker: Buffer, onHit: (address: bigint) => boolean): boolean {
  const chunk = Buffer.alloc(chunkBytes + marker.length);
  let scannedBytes = 0;
  let hits = 0;
  for (const mapping of mappings) {
    for (let pos = mapping.start; pos < mapping.end; pos += BigInt(chunkBytes)) {
      if (scannedBytes >= scanBytesMax || hits >= candidatesMax) return false;
      const length = Number(mapping.end - pos < BigInt(chunk.length) ? mapping.end - pos : BigInt(chunk.length));
      const readBytes = readAt(memFd, chunk, length, pos);
      if (readBytes === 0) break;
      scannedBytes += readBytes;
      const window = chunk.subarray(0, readBytes);
      for (let i = window.indexOf(marker); i !== -1 && i < chunkBytes; i = window.indexOf(marker, i + 1)) {
        hits += 1;
        if (onHit(pos + BigInt(i))) return true;
      }
    }
  }
  return false;
}

/** Real address of view[0], or null if /proc/self/mem is unreadable or the view is < 16 bytes. */
export function locateAddress(view: Uint8Array): bigint | null {
  const markerBytes = Math.min(markerBytesMax, view.byteLength);
  if (markerBytes < markerBytesMin) return null;
  const saved = view.slice(0, markerBytes);
  const probe = Buffer.alloc(markerBytes);
  let memFd = -1;
  try {
    memFd = openSync('/proc/self/mem', 'r');
    const marker = randomBytes(markerBytes);
    view.set(marker);
    let found: bigint | null = null;
    scan(memFd, anonymousMappings(view.buffer.byteLength), marker, (address) => {
      const confirm = randomBytes(markerBytes);
      view.set(confirm);
      const ok = readAt(memFd, probe, markerBytes, address) === markerBytes && probe.equals(confirm);
      view.set(marker);
      if (ok) found = address;
      return ok;
    });
    return found;
  } catch {
    return null; // no /proc (not Linux, hidepid, seccomp): address unknown
  } finally {
    view.set(saved);
    if (memFd >= 0) closeSync(memFd);
  }
}
