// `cache: none` really means O_DIRECT: the daemon's fds on such an element carry O_DIRECT in
// /proc/<pid>/fdinfo (and a `cache: writeback` element's do not), and qemu-io writes (plain and
// FUA) and reads through the export land in the element file byte for byte — through io_uring
// batches or the sync path, whichever the daemon runs (status says which).
import { closeSync, constants, openSync, readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cliBuilt, Daemon } from './lib/daemon.js';
import { DATA_OFFSET_BYTES, MiB, readAt, removeDir, sparseFile, tempDir } from './lib/files.js';
import { qemuIo, qemuIoFailed } from './lib/peers.js';
import { explain, missingTools } from './lib/proc.js';

const ELEMENT_BYTES = 64 * MiB;
/** O_DIRECT in the octal `flags:` line of fdinfo (x86, arm64, riscv: 040000). */
const O_DIRECT_FLAG = 0o40000;

/** O_DIRECT opens in `dir`, or the reason it does not (tmpfs before Linux 6.6 refuses it). */
function directWorks(dir: string): string | null {
  const probe = path.join(dir, 'probe');
  closeSync(openSync(probe, 'w'));
  try {
    closeSync(openSync(probe, constants.O_RDONLY | constants.O_DIRECT));
    return null;
  } catch (err) {
    return `O_DIRECT refused in ${dir}: ${String(err)}`;
  }
}

/** Octal `flags:` of every fd of `pid` that is open on `file`. */
function fdFlags(pid: number, file: string): number[] {
  const out: number[] = [];
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    let target = '';
    try {
      target = readlinkSync(`/proc/${pid}/fd/${fd}`);
    } catch {
      continue; // closed meanwhile
    }
    if (target !== file) continue;
    const flags = /^flags:\s+([0-7]+)$/m.exec(readFileSync(`/proc/${pid}/fdinfo/${fd}`, 'utf8'));
    if (flags !== null) out.push(Number.parseInt(flags[1]!, 8));
  }
  return out;
}

/** Completions posted on the daemon's io_uring instances (fdinfo's CqTail), summed over rings. */
function ringCompletions(pid: number): { rings: number; completions: number } {
  let rings = 0;
  let completions = 0;
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    try {
      if (readlinkSync(`/proc/${pid}/fd/${fd}`) !== 'anon_inode:[io_uring]') continue;
      const tail = /^CqTail:\s+(\d+)$/m.exec(readFileSync(`/proc/${pid}/fdinfo/${fd}`, 'utf8'));
      rings += 1;
      completions += Number(tail?.[1] ?? 0);
    } catch {
      continue; // closed meanwhile
    }
  }
  return { rings, completions };
}

const skip = !cliBuilt() ? 'daemon not built (run pnpm run build)' : missingTools(['qemu-io']);

describe.skipIf(skip !== null)(`cache: none elements are opened O_DIRECT${skip === null ? '' : ` (skipped: ${skip})`}`, () => {
  let dir = '';
  let daemon: Daemon | null = null;
  let noDirect: string | null = null;
  const image = (name: string): string => path.join(dir, `${name}.img`);

  beforeAll(async () => {
    dir = tempDir('odirect');
    noDirect = directWorks(dir);
    if (noDirect !== null) return;
    for (const name of ['d0', 'w0']) await sparseFile(image(name), ELEMENT_BYTES);
    const configPath = path.join(dir, 'onestack.yaml');
    await writeFile(configPath, [
      'elements:',
      `  - { name: d0, uri: "file:${image('d0')}", cache: none }`,
      `  - { name: w0, uri: "file:${image('w0')}", cache: writeback }`,
      'volumes:',
      '  - { name: direct, layout: linear, elements: [d0] }',
      '  - { name: buffered, layout: linear, elements: [w0] }',
      '',
    ].join('\n'));
    daemon = await Daemon.start({ dataDir: path.join(dir, 'data'), configPath });
  });

  afterAll(async () => {
    try {
      await daemon?.stop();
    } finally {
      if (dir !== '') removeDir(dir);
    }
  });

  it('the cache: none element\'s fds have O_DIRECT in fdinfo, the writeback element\'s do not', (ctx) => {
    if (noDirect !== null) return ctx.skip(noDirect);
    const pid = daemon!.child.pid!;
    const direct = fdFlags(pid, image('d0'));
    const buffered = fdFlags(pid, image('w0'));
    expect(direct.length, `no fd of the daemon is open on ${image('d0')}`).toBeGreaterThanOrEqual(1);
    for (const flags of direct) expect((flags & O_DIRECT_FLAG).toString(8), 'd0 fd without O_DIRECT').toBe(O_DIRECT_FLAG.toString(8));
    expect(buffered.length).toBeGreaterThanOrEqual(1);
    for (const flags of buffered) expect(flags & O_DIRECT_FLAG, 'w0 fd with O_DIRECT').toBe(0);
  });

  it('qemu-io writes (plain, FUA, multi-request) and reads back through the O_DIRECT export, and the file holds them', async (ctx) => {
    if (noDirect !== null) return ctx.skip(noDirect);
    const uri = daemon!.uri('direct');
    const writes = [
      ['write -P 0x5a 0 64k', 0, 64 * 1024, 0x5a],
      ['write -f -P 0xa5 1M 4k', MiB, 4096, 0xa5],
      ['write -P 0x3c 10M 1M', 10 * MiB, MiB, 0x3c],
      ['aio_write -P 0x71 20M 256k', 20 * MiB, 256 * 1024, 0x71],
      ['aio_write -P 0x72 21M 256k', 21 * MiB, 256 * 1024, 0x72],
    ] as const;
    const w = await qemuIo(uri, [...writes.map((x) => x[0]), 'aio_flush', 'flush']);
    expect(qemuIoFailed(w), explain(w)).toBe(false);
    const r = await qemuIo(uri, [...writes.map(([, off, len, byte]) => `read -P 0x${byte.toString(16)} ${off} ${len}`), 'read -P 0 2M 1M']);
    expect(qemuIoFailed(r), explain(r)).toBe(false);
    expect(r.stdout.match(/^read /gm)?.length).toBe(writes.length + 1);
    for (const [, offset, length, byte] of writes) {
      const inFile = await readAt(image('d0'), DATA_OFFSET_BYTES + offset, length);
      expect(inFile.equals(Buffer.alloc(length, byte)), `d0 at ${offset}`).toBe(true);
    }
  });

  it('status names the I/O backend in one line, and an io_uring backend carried the I/O above', async (ctx) => {
    if (noDirect !== null) return ctx.skip(noDirect);
    const status = (await daemon!.status()) as unknown as { io?: { backend: string; summary: string; reason: string } };
    expect(status.io, JSON.stringify(status)).toBeDefined();
    expect(['io_uring', 'sync']).toContain(status.io!.backend);
    expect(status.io!.summary).toMatch(/^io: (io_uring|sync)\b/);
    const used = ringCompletions(daemon!.child.pid!);
    if (status.io!.backend === 'io_uring') expect(used.completions, `${JSON.stringify(used)}\n${daemon!.logs()}`).toBeGreaterThan(0);
    else expect(used.rings).toBe(0);
    if (process.env['ONESTACK_URING'] === 'off') expect(status.io).toMatchObject({ backend: 'sync', summary: 'io: sync (ONESTACK_URING=off)' });
    if (process.env['ONESTACK_NATIVE'] === 'off') expect(status.io).toMatchObject({ backend: 'sync', reason: 'ONESTACK_NATIVE=off' });
  });
});
