// The image files every system runs on: filled with non-zero data once, and their onestack
// element header cleared before each onestack system so it sees fresh elements.
import { randomFillSync } from 'node:crypto';
import { open } from 'node:fs/promises';

/** onestack's reserved element header (superblock, bitmap): data starts after it. */
const HEADER_BYTES = 4 * 1024 * 1024;
const FILL_BLOCK_BYTES = 4 * 1024 * 1024;

/** An empty sparse file of `sizeBytes` (replacing whatever was at `file`). */
export async function sparseImage(file: string, sizeBytes: number): Promise<void> {
  const fh = await open(file, 'w');
  try {
    await fh.truncate(sizeBytes);
  } finally {
    await fh.close();
  }
}

/** Non-zero data everywhere, so no system reads holes. */
export async function fillImage(file: string, sizeBytes: number): Promise<void> {
  const block = Buffer.alloc(FILL_BLOCK_BYTES);
  randomFillSync(block);
  const fh = await open(file, 'w');
  try {
    for (let pos = 0; pos < sizeBytes; pos += block.length) {
      block.writeUInt32LE(pos / block.length, 0);
      await fh.write(block, 0, Math.min(block.length, sizeBytes - pos), pos);
    }
    await fh.datasync();
  } finally { await fh.close(); }
}

/** A fresh element for onestack: its reserved header zeroed, as if never used (data stays). */
export async function clearHeader(file: string): Promise<void> {
  const fh = await open(file, 'r+');
  try { await fh.write(Buffer.alloc(HEADER_BYTES), 0, HEADER_BYTES, 0); } finally { await fh.close(); }
}

/**
 * Every system starts alike: the file's dirty pages written back (so no one pays for the last
 * system's writes) and all of it read once into the page cache (O_DIRECT writes of raw-fio-direct
 * and qemu-nbd cache=none evict the pages they overwrite).
 */
export async function syncAndWarm(file: string): Promise<void> {
  const block = Buffer.alloc(FILL_BLOCK_BYTES);
  const fh = await open(file, 'r+');
  try {
    await fh.datasync();
    const sizeBytes = (await fh.stat()).size;
    for (let pos = 0; pos < sizeBytes; pos += block.length) await fh.read(block, 0, Math.min(block.length, sizeBytes - pos), pos);
  } finally { await fh.close(); }
}
