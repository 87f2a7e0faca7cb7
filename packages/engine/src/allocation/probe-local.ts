// Allocation of a local element (file or block device) by lseek(SEEK_DATA / SEEK_HOLE) on a
// read-only fd of the main thread's own (the data path's fds live in the bottom workers). Holes
// of a file read as zeroes whatever the page cache holds (ext4 and tmpfs count dirty and
// delayed-allocation pages as data), so O_DIRECT and page-cache elements are alike here.
import * as fs from 'node:fs';
import type { SparseSeek } from '@onestack/native';
import type { AllocRun, ElementRuns } from './map-allocation.js';

/** Walks [startBytes, +lengthBytes) of `fd`: at most runsMax runs (the walk may stop early). */
export function walkRuns(seek: SparseSeek, fd: number, startBytes: number, lengthBytes: number, runsMax: number): ElementRuns {
  const end = startBytes + lengthBytes;
  const sizeBytes = fs.fstatSync(fd).size;
  const runs: AllocRun[] = [];
  let at = startBytes;
  while (at < end && runs.length < runsMax) {
    // Past the file's end a read comes back short: not something to call a hole.
    if (at >= sizeBytes) {
      runs.push({ lengthBytes: end - at, zero: false });
      break;
    }
    const data = seek.seekData(fd, at);
    if (data === -1 || data > at) {
      const holeEnd = Math.min(end, data === -1 ? sizeBytes : data);
      runs.push({ lengthBytes: holeEnd - at, zero: true });
      at = holeEnd;
      continue;
    }
    if (data !== at) throw new Error(`lseek(SEEK_DATA, ${at}) went back to ${data}`);
    const hole = seek.seekHole(fd, at);
    // -1 here means the file shrank under us: the rest is not known to be a hole.
    const dataEnd = Math.min(end, hole <= at ? end : hole);
    runs.push({ lengthBytes: dataEnd - at, zero: false });
    at = dataEnd;
  }
  return { startBytes, runs };
}

/** All of it data: the answer when we cannot tell. */
export function allData(startBytes: number, lengthBytes: number): ElementRuns {
  return { startBytes, runs: [{ lengthBytes, zero: false }] };
}

/** A lazily opened read-only fd on one path; block devices and seek failures answer "data". */
export class LocalProbe {
  private fd = -1;
  private blockDevice = false;
  /** Why this element answers "all data" from now on (logged once by the caller). */
  private brokenReason: string | null = null;
  private openWarned = false;

  constructor(
    readonly path: string,
    private readonly seek: SparseSeek | null,
    private readonly warn: (msg: string) => void,
  ) {}

  runs(startBytes: number, lengthBytes: number, runsMax: number): ElementRuns {
    if (this.seek === null || this.brokenReason !== null || !this.open() || this.blockDevice) return allData(startBytes, lengthBytes);
    try {
      return walkRuns(this.seek, this.fd, startBytes, lengthBytes, runsMax);
    } catch (err) {
      this.broken(`lseek on ${this.path} failed: ${(err as Error).message}`);
      return allData(startBytes, lengthBytes);
    }
  }

  close(): void {
    if (this.fd >= 0) {
      try {
        fs.closeSync(this.fd);
      } catch {
        // gone either way
      }
    }
    this.fd = -1;
  }

  private open(): boolean {
    if (this.fd >= 0) return true;
    try {
      this.fd = fs.openSync(this.path, fs.constants.O_RDONLY);
      this.blockDevice = fs.fstatSync(this.fd).isBlockDevice();
      return true;
    } catch (err) {
      // Not sticky: the element may come back; the data path reports its own open errors.
      this.close();
      if (this.openWarned) return false;
      this.openWarned = true;
      this.warn(`cannot open ${this.path} for allocation status (${(err as NodeJS.ErrnoException).code ?? (err as Error).message}): answering data`);
      return false;
    }
  }

  private broken(reason: string): void {
    this.brokenReason = reason;
    this.warn(`${reason}: answering data for this element`);
  }
}
