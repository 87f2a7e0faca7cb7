// GET /api/v1/candidates: local storage that could become an element — image files in the data
// dir and block devices from /sys/block — minus what already is one. Read-only and bounded: it
// lists at most CANDIDATES_MAX of each and reads a few small sysfs files per device.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import type { ElementStatus } from '@onestack/engine';

export interface FileCandidate {
  readonly name: string;
  readonly path: string;
  /** Ready for POST /elements. */
  readonly uri: string;
  readonly sizeBytes: number;
}

export interface DeviceCandidate {
  readonly name: string;
  readonly path: string;
  readonly uri: string;
  readonly sizeBytes: number;
  readonly model: string | null;
  readonly readOnly: boolean;
  readonly removable: boolean;
  /** Why it is in use (mounted, swap, held by md/dm, a partition mounted); null if it is not. */
  readonly inUse: string | null;
  /** Partitions on it: using the whole disk would overwrite their table. */
  readonly partitions: number;
}

export interface Candidates {
  readonly dataDir: string;
  readonly files: readonly FileCandidate[];
  readonly devices: readonly DeviceCandidate[];
}

export const CANDIDATES_MAX = 256;
/** An element needs its 4 MiB header plus at least 1 MiB of data. */
const ELEMENT_BYTES_MIN = 5 * 1024 * 1024;
/** Files the daemon keeps in its data dir for itself. */
const OWN_FILE_RE = /^(api-token|onestack-state\.json)(\.tmp-\d+)?$/;
/** Kernel devices that are never disks one would give away: RAM disks, compressed swap. */
const SKIP_DEVICE_RE = /^(ram|zram|loop\d+boot)/;

/** dev:ino of a path, or null when it cannot be stat'ed. */
function identity(file: string): string | null {
  try {
    const st = statSync(file);
    return `${st.dev}:${st.ino}`;
  } catch {
    return null;
  }
}

/**
 * Files and devices the elements already use, by identity (dev:ino), so a relative URI or a
 * symlink still counts. Status URIs are as configured: relative ones are tried against the data
 * dir and the daemon's working directory.
 */
function usedIdentities(dataDir: string, elements: readonly ElementStatus[]): Set<string> {
  const used = new Set<string>();
  for (const e of elements.slice(0, 1024)) {
    if (e.kind !== 'local') continue;
    const raw = e.uri.startsWith('file:') ? e.uri.slice('file:'.length) : e.uri;
    for (const candidate of path.isAbsolute(raw) ? [raw] : [path.resolve(dataDir, raw), path.resolve(raw)]) {
      const id = identity(candidate);
      if (id !== null) used.add(id);
    }
  }
  return used;
}

export function listCandidates(dataDir: string, elements: readonly ElementStatus[], sysBlock = '/sys/block'): Candidates {
  const used = usedIdentities(dataDir, elements);
  return { dataDir, files: imageFiles(dataDir, used), devices: blockDevices(sysBlock, used) };
}

function imageFiles(dataDir: string, used: ReadonlySet<string>): FileCandidate[] {
  let names: string[];
  try {
    names = readdirSync(dataDir).sort();
  } catch {
    return [];
  }
  const files: FileCandidate[] = [];
  for (const name of names.slice(0, 4 * CANDIDATES_MAX)) {
    if (files.length >= CANDIDATES_MAX) break;
    if (name.startsWith('.') || OWN_FILE_RE.test(name)) continue;
    const file = path.join(dataDir, name);
    try {
      const st = statSync(file);
      if (!st.isFile() || st.size < ELEMENT_BYTES_MIN || used.has(`${st.dev}:${st.ino}`)) continue;
      files.push({ name, path: file, uri: `file:${file}`, sizeBytes: st.size });
    } catch {
      // vanished meanwhile
    }
  }
  return files;
}

function readSys(file: string): string | null {
  try {
    return readFileSync(file, 'utf8').trim();
  } catch {
    return null;
  }
}

function listDir(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}

/** Sources of mounts and swaps: a device in there holds someone's data. */
function busyDevices(): Set<string> {
  const busy = new Set<string>();
  for (const file of ['/proc/self/mounts', '/proc/swaps']) {
    for (const line of (readSys(file) ?? '').split('\n').slice(0, 4096)) {
      const source = line.split(/\s+/)[0] ?? '';
      if (source.startsWith('/dev/')) busy.add(path.basename(source));
    }
  }
  return busy;
}

function blockDevices(sysBlock: string, used: ReadonlySet<string>): DeviceCandidate[] {
  const busy = busyDevices();
  const devices: DeviceCandidate[] = [];
  for (const name of listDir(sysBlock).sort().slice(0, CANDIDATES_MAX)) {
    if (SKIP_DEVICE_RE.test(name)) continue;
    const dir = path.join(sysBlock, name);
    const sizeBytes = Number(readSys(path.join(dir, 'size')) ?? '0') * 512;
    const devPath = `/dev/${name}`;
    // Empty loop devices and absent media have size 0.
    if (!(sizeBytes >= ELEMENT_BYTES_MIN) || used.has(identity(devPath) ?? '')) continue;
    const partitions = listDir(dir).filter((p) => p.startsWith(name) && readSys(path.join(dir, p, 'partition')) !== null);
    const reasons: string[] = [];
    if (busy.has(name)) reasons.push('mounted or swap');
    const mountedParts = partitions.filter((p) => busy.has(p));
    if (mountedParts.length > 0) reasons.push(`partition ${mountedParts.join(', ')} mounted`);
    if (listDir(path.join(dir, 'holders')).length > 0) reasons.push('held by md/dm');
    devices.push({
      name, path: devPath, uri: `file:${devPath}`, sizeBytes, model: readSys(path.join(dir, 'device', 'model')) || null,
      readOnly: readSys(path.join(dir, 'ro')) === '1', removable: readSys(path.join(dir, 'removable')) === '1',
      inUse: reasons.length === 0 ? null : reasons.join('; '), partitions: partitions.length,
    });
  }
  return devices;
}
