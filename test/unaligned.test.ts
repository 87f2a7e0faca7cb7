// Unaligned requests on volumes over O_DIRECT elements (cache: none, 4 KiB blocks): a linear
// volume over one such element and a raid1 of one O_DIRECT and one page-cache element. nbdsh
// (libnbd, strict mode off so it sends what we ask) writes, zeroes and trims at odd offsets and
// lengths, and keeps pairs of unaligned writes into the same 4 KiB block in flight at once; a
// new connection reads back against a model kept here, and the element files are read directly.
// The export still advertises 4 KiB as its minimum block size, and qemu-io (which honours it)
// keeps working.
import { createHash } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cliBuilt, Daemon } from './lib/daemon.js';
import { DATA_OFFSET_BYTES, MiB, readAt, removeDir, sparseFile, tempDir } from './lib/files.js';
import { nbdinfo, qemuIo, qemuIoFailed } from './lib/peers.js';
import { explain, missingTools, run } from './lib/proc.js';

const ELEMENT_BYTES = 64 * MiB;
const REGION_BYTES = 4 * MiB;
const BLOCK_PAIRS = 16;

type Kind = 'write' | 'zero' | 'trim';
interface Req { readonly kind: Kind; readonly off: number; readonly len: number; readonly seed: number }

/** The payload of a write: the same formula as `pat` in the Python script. */
function pat(len: number, seed: number): Uint8Array {
  const out = new Uint8Array(len);
  for (let i = 0; i < len; i++) out[i] = ((i * 131 + seed * 17) ^ (i >> 8)) & 255;
  return out;
}

const PY_PAT = 'def pat(n, seed):\n    return bytes(((i * 131 + seed * 17) ^ (i >> 8)) & 255 for i in range(n))\n';

/** Sequential requests: odd offsets and lengths, block-crossing, sub-block, and an aligned one between. */
const SEQUENTIAL: readonly Req[] = [
  { kind: 'write', off: 100, len: 1, seed: 1 },
  { kind: 'write', off: 4095, len: 2, seed: 2 },
  { kind: 'write', off: 12345, len: 7001, seed: 3 },
  { kind: 'write', off: 65539, len: 130_001, seed: 4 },
  { kind: 'zero', off: 70_000, len: 5000, seed: 0 },
  { kind: 'trim', off: 100_000, len: 9000, seed: 0 },
  { kind: 'write', off: MiB - 1, len: 4098, seed: 5 },
  { kind: 'write', off: 2 * MiB, len: 8192, seed: 6 },
  { kind: 'zero', off: 2 * MiB + 1, len: 10, seed: 0 },
  { kind: 'write', off: 2 * MiB + 4000, len: 300, seed: 7 },
  { kind: 'trim', off: 2 * MiB + 4100, len: 50, seed: 0 },
];

/** Writes in flight together: per 4 KiB block, two into it and one crossing into the next block (all byte-disjoint). */
function concurrent(): Req[] {
  const out: Req[] = [];
  for (let k = 0; k < BLOCK_PAIRS; k++) {
    const base = 3 * MiB + k * 4096;
    out.push({ kind: 'write', off: base + 7, len: 300, seed: 100 + k });
    out.push({ kind: 'write', off: base + 3000, len: 500, seed: 200 + k });
    out.push({ kind: 'write', off: base + 4050, len: 50, seed: 300 + k });
  }
  return out;
}

/** Unaligned reads to check, plus the whole region. */
const READS: readonly (readonly [number, number])[] = [
  [100, 1], [4090, 20], [12_000, 8000], [65_000, 140_000], [99_999, 9002], [MiB - 3, 4200],
  [2 * MiB + 1, 4500], [3 * MiB + 5, BLOCK_PAIRS * 4096 - 10], [0, REGION_BYTES],
];

function applyTo(model: Uint8Array, reqs: readonly Req[]): void {
  for (const r of reqs) {
    if (r.kind === 'write') model.set(pat(r.len, r.seed), r.off);
    else model.fill(0, r.off, r.off + r.len); // trim zeroes on every leg (element-io.ts, remote-link.ts)
  }
}

function pyRequest(r: Req, aio: boolean): string {
  if (r.kind === 'write') return aio ? `cookies.append(h.aio_pwrite(pat(${r.len}, ${r.seed}), ${r.off}))` : `h.pwrite(pat(${r.len}, ${r.seed}), ${r.off})`;
  return r.kind === 'zero' ? `h.zero(${r.len}, ${r.off})` : `h.trim(${r.len}, ${r.off})`;
}

const WRITE_SCRIPT = [
  PY_PAT,
  ...SEQUENTIAL.map((r) => pyRequest(r, false)),
  'cookies = []',
  ...concurrent().map((r) => pyRequest(r, true)),
  'turns = 0',
  'while h.aio_in_flight() > 0 and turns < 100000:',
  '    h.poll(-1)',
  '    turns += 1',
  'assert all(h.aio_command_completed(c) for c in cookies)',
  'h.flush()',
  'print("written", len(cookies))',
].join('\n');

const READ_SCRIPT = [
  'import hashlib',
  `for off, n in ${JSON.stringify(READS)}:`,
  '    print(hashlib.sha256(bytes(h.pread(n, off))).hexdigest())',
].join('\n');

const sha = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

function nbdsh(uri: string, script: string): ReturnType<typeof run> {
  // set_strict_mode(0): libnbd would otherwise refuse, client-side, requests below the advertised minimum block size.
  return run('nbdsh', ['-c', 'h.set_strict_mode(0)', '-c', `h.connect_uri(${JSON.stringify(uri)})`, '-c', script], { timeoutMs: 120_000 });
}

const skip = !cliBuilt() ? 'the CLI is not built (pnpm run build)' : missingTools(['nbdsh', 'nbdinfo', 'qemu-io']);

describe.skipIf(skip !== null)(`unaligned requests on O_DIRECT volumes${skip === null ? '' : ` (skipped: ${skip})`}`, () => {
  let dir = '';
  let daemon: Daemon | null = null;
  const image = (name: string): string => path.join(dir, `${name}.img`);

  beforeAll(async () => {
    dir = tempDir('unaligned');
    for (const name of ['d0', 'm0', 'm1']) await sparseFile(image(name), ELEMENT_BYTES);
    const configPath = path.join(dir, 'onestack.yaml');
    await writeFile(configPath, [
      'elements:',
      `  - { name: d0, uri: "file:${image('d0')}", cache: none }`,
      `  - { name: m0, uri: "file:${image('m0')}", cache: none }`,
      `  - { name: m1, uri: "file:${image('m1')}", cache: writeback }`,
      'volumes:',
      '  - { name: lin, layout: linear, elements: [d0] }',
      '  - { name: mir, layout: raid1, elements: [m0, m1] }',
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

  for (const [volume, files] of [['lin', ['d0']], ['mir', ['m0', 'm1']]] as const) {
    it(`${volume}: unaligned writes, zeroes, trims and concurrent writes into one block read back right, on every element`, async () => {
      const uri = daemon!.uri(volume);
      const info = await nbdinfo(uri);
      expect(info.exports[0]?.block_size_minimum, 'well-behaved clients keep aligning to the O_DIRECT block').toBe(4096);

      const w = await nbdsh(uri, WRITE_SCRIPT);
      expect(w.code, explain(w)).toBe(0);
      expect(w.stdout.trim()).toBe(`written ${BLOCK_PAIRS * 3}`);

      const model = new Uint8Array(REGION_BYTES);
      applyTo(model, SEQUENTIAL);
      applyTo(model, concurrent());
      const r = await nbdsh(uri, READ_SCRIPT);
      expect(r.code, explain(r)).toBe(0);
      const got = r.stdout.trim().split('\n');
      expect(got).toEqual(READS.map(([off, n]) => sha(model.subarray(off, off + n))));

      for (const name of files) {
        const onDisk = await readAt(image(name), DATA_OFFSET_BYTES, REGION_BYTES);
        expect(sha(onDisk), `${name}.img data area`).toBe(sha(model));
      }
      const status = await daemon!.status();
      expect(status.elements.filter((e) => (files as readonly string[]).includes(e.name)).map((e) => [e.state, e.errors])).toEqual(files.map(() => ['active', 0]));
    });
  }

  it('qemu-io, which honours the 4 KiB minimum, writes 512 bytes at an odd sector and reads them back', async () => {
    const uri = daemon!.uri('lin');
    const off = 40 * MiB + 20 * 1024 + 512;
    const w = await qemuIo(uri, [`write -P 0x5a ${off} 512`, 'flush']);
    expect(qemuIoFailed(w), explain(w)).toBe(false);
    const r = await qemuIo(uri, [`read -P 0x5a ${off} 512`, `read -P 0 ${off - 512} 512`, `read -P 0 ${off + 512} 3072`]);
    expect(qemuIoFailed(r), explain(r)).toBe(false);
    expect((await readAt(image('d0'), DATA_OFFSET_BYTES + off, 512)).equals(Buffer.alloc(512, 0x5a))).toBe(true);
  });
});
