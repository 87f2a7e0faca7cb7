// Block status against real clients, over the memory backend's base:allocation (and a fake
// dirty bitmap from its test hook): nbdinfo --map and --list, nbdsh (libnbd 1.14: compact
// headers, LIST via opt mode, REQ_ONE), qemu-img map (extended headers), and sparse copies with
// nbdcopy and qemu-img convert that read only the data.
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type MemoryExport, type NbdExport, type NbdExtent, type NbdServer, createMemoryExport, createMemoryProvider, createNbdServer,
} from '../src/index.js';
import { nbdsh, run } from './helpers.js';

const KiB = 1024;
const MiB = 1024 * KiB;

/** A fake dirty bitmap: these [offset, length) ranges are dirty (flag 1), the rest clean. */
const DIRTY: readonly [number, number][] = [[MiB, 64 * KiB], [3 * MiB, 4 * KiB]];
async function dirtyBitmap(off: number, len: number, max: number): Promise<readonly NbdExtent[]> {
  const out: NbdExtent[] = [];
  const end = off + len;
  let at = off;
  for (const [start, length] of DIRTY) {
    const from = Math.max(start, at);
    const to = Math.min(start + length, end);
    if (to <= from) continue; // before `at`, or past the end
    if (from > at) out.push({ lengthBytes: from - at, flags: 0 });
    out.push({ lengthBytes: to - from, flags: 1 });
    at = to;
  }
  if (at < end) out.push({ lengthBytes: end - at, flags: 0 });
  return out.slice(0, max);
}

let server: NbdServer;
let port: number;
let dir: string;
let disk: MemoryExport;
let sparse: MemoryExport;
let sparseReadBytes = 0;
const logs: string[] = [];

/** The export as served, counting the bytes its reads return. */
function counted(exp: MemoryExport): NbdExport {
  return Object.create(exp, {
    read: { value: async (off: number, len: number) => { sparseReadBytes += len; return exp.read(off, len); } },
  }) as NbdExport;
}

beforeAll(async () => {
  disk = createMemoryExport('disk0', 16 * MiB, { extraContexts: { 'qemu:dirty-bitmap:cp1': dirtyBitmap } });
  sparse = createMemoryExport('sparse', 32 * MiB);
  const bare = createMemoryExport('bare', MiB, { metaContexts: false });
  server = createNbdServer(createMemoryProvider([disk, counted(sparse), bare]), { log: (level, msg) => logs.push(`${level} ${msg}`) });
  port = (await server.listen('127.0.0.1', 0)).port;
  dir = mkdtempSync(join(tmpdir(), 'onestack-nbd-status-'));
});

afterAll(async () => {
  await server.close();
  rmSync(dir, { recursive: true, force: true });
  expect(disk.outstanding()).toEqual({ reads: 0, writeBuffers: 0 });
  expect(sparse.outstanding()).toEqual({ reads: 0, writeBuffers: 0 });
});

const uri = (name: string): string => `nbd://127.0.0.1:${port}/${name}`;
const sha256 = (bytes: Uint8Array): string => createHash('sha256').update(bytes).digest('hex');

interface MapEntry { offset: number; length: number; type: number; description: string }
async function nbdinfoMap(name: string, context?: string): Promise<MapEntry[]> {
  const r = await run('nbdinfo', [context === undefined ? '--map' : `--map=${context}`, '--json', uri(name)]);
  expect(r.code, r.stderr).toBe(0);
  return JSON.parse(r.stdout) as MapEntry[];
}
const triples = (map: MapEntry[]): [number, number, number][] => map.map((e) => [e.offset, e.length, e.type]);

async function qemuIo(name: string, ...cmds: string[]): Promise<void> {
  const r = await run('qemu-io', ['-f', 'raw', uri(name), ...cmds.flatMap((c) => ['-c', c])]);
  expect(r.code, r.stderr + r.stdout).toBe(0);
  expect(r.stdout).not.toMatch(/failed|error/i);
}

describe('base:allocation with nbdinfo and qemu-img', () => {
  it('a fresh export is one hole/zero extent; qemu-io writes show up as data exactly where written', async () => {
    expect(await nbdinfoMap('disk0')).toEqual([{ offset: 0, length: 16 * MiB, type: 3, description: 'hole,zero' }]);
    await qemuIo('disk0', 'write -P 0xab 1M 64k', 'write -P 0xcd 3M 4k', 'write -P 0xef 15M 1M');
    const want: [number, number, number][] = [
      [0, MiB, 3], [MiB, 64 * KiB, 0], [MiB + 64 * KiB, 2 * MiB - 64 * KiB, 3], [3 * MiB, 4 * KiB, 0], [3 * MiB + 4 * KiB, 12 * MiB - 4 * KiB, 3], [15 * MiB, MiB, 0],
    ];
    expect(triples(await nbdinfoMap('disk0'))).toEqual(want);
    const text = await run('nbdinfo', ['--map', uri('disk0')]);
    expect(text.stdout.trim().split('\n').map((l) => l.trim().split(/\s+/))).toEqual(
      want.map(([o, l, t]) => [String(o), String(l), String(t), t === 3 ? 'hole,zero' : 'data']));
    // qemu-img (extended headers) agrees with nbdinfo (compact headers).
    const q = await run('qemu-img', ['map', '--output=json', '-f', 'raw', uri('disk0')]);
    expect(q.code, q.stderr).toBe(0);
    const qmap = (JSON.parse(q.stdout) as { start: number; length: number; data: boolean; zero: boolean }[]).map((e) => [e.start, e.length, e.data ? 0 : 3]);
    expect(qmap).toEqual(want);
  });

  it('discard makes a hole again; write zeroes is zero (allocated) with NO_HOLE, a hole with unmap', async () => {
    await qemuIo('disk0', 'discard 1M 64k', 'write -z 3M 4k', 'write -z -u 15M 512k');
    expect(triples(await nbdinfoMap('disk0'))).toEqual([
      [0, 3 * MiB, 3], [3 * MiB, 4 * KiB, 2], [3 * MiB + 4 * KiB, 12 * MiB + 508 * KiB, 3], [15 * MiB + 512 * KiB, 512 * KiB, 0],
    ]);
    expect((await nbdinfoMap('disk0')).find((e) => e.type === 2)?.description).toBe('zero');
  });

  it('nbdinfo --map=qemu:dirty-bitmap:NAME shows the dirty regions', async () => {
    const map = await nbdinfoMap('disk0', 'qemu:dirty-bitmap:cp1');
    expect(triples(map)).toEqual([[0, MiB, 0], [MiB, 64 * KiB, 1], [MiB + 64 * KiB, 2 * MiB - 64 * KiB, 0], [3 * MiB, 4 * KiB, 1], [3 * MiB + 4 * KiB, 13 * MiB - 4 * KiB, 0]]);
    expect(map[1]?.description).toBe('dirty');
  });

  it('nbdinfo --list shows each export\'s contexts; an export without metaContexts offers none and maps as all data', async () => {
    const r = await run('nbdinfo', ['--list', '--json', `nbd://127.0.0.1:${port}`]);
    expect(r.code, r.stderr).toBe(0);
    const exports = JSON.parse(r.stdout).exports as { 'export-name': string; contexts?: string[] }[];
    const contexts = Object.fromEntries(exports.map((e) => [e['export-name'], e.contexts ?? []]));
    expect(contexts).toEqual({ disk0: ['base:allocation', 'qemu:dirty-bitmap:cp1'], sparse: ['base:allocation'], bare: [] });
    // NBD_INFO_NAME: the empty name is answered with the default export's canonical name.
    const def = await run('nbdinfo', ['--json', `nbd://127.0.0.1:${port}/`]);
    expect(JSON.parse(def.stdout).exports[0]['export-name']).toBe('disk0');
    const q = await run('qemu-img', ['map', '--output=json', '-f', 'raw', uri('bare')]);
    expect(JSON.parse(q.stdout)).toMatchObject([{ start: 0, length: MiB, data: true }]);
  });
});

describe('nbdsh (libnbd 1.14)', () => {
  it('LIST_META_CONTEXT in option mode: all, by namespace, exact, none', async () => {
    const r = await nbdsh(undefined, `
h.set_opt_mode(True)
h.connect_uri(${JSON.stringify(uri('disk0'))})
for queries in [[], ["base:"], ["qemu:"], ["qemu:dirty-bitmap:"], ["base:allocation", "nope"], ["nope:"]]:
    h.clear_meta_contexts()
    for q in queries:
        h.add_meta_context(q)
    got = []
    n = h.opt_list_meta_context(lambda name: got.append(name))
    print(n, ",".join(got) or "-")
h.opt_abort()
`);
    expect(r.stderr).toBe('');
    expect(r.stdout.trim().split('\n')).toEqual([
      '2 base:allocation,qemu:dirty-bitmap:cp1', '1 base:allocation', '1 qemu:dirty-bitmap:cp1', '1 qemu:dirty-bitmap:cp1', '1 base:allocation', '0 -',
    ]);
  });

  it('SET during GO, block status with and without REQ_ONE, two contexts at once', async () => {
    const r = await nbdsh(uri('disk0'), `
assert h.can_meta_context("base:allocation") and h.can_meta_context("qemu:dirty-bitmap:cp1")
seen = {}
def cb(ctx, off, entries, err):
    seen.setdefault(ctx, []).append((off, list(entries)))
h.block_status(8 * 1024 * 1024, 0, cb)
for ctx in sorted(seen):
    print(ctx, seen[ctx])
seen.clear()
h.block_status(8 * 1024 * 1024, 3 * 1024 * 1024, cb, nbd.CMD_FLAG_REQ_ONE)
for ctx in sorted(seen):
    print(ctx, seen[ctx])
`, 'h.add_meta_context("base:allocation"); h.add_meta_context("qemu:dirty-bitmap:cp1")');
    expect(r.stderr).toBe('');
    const lines = r.stdout.trim().split('\n');
    expect(lines).toHaveLength(4);
    // The allocation map as left by the tests above (sequential in this file).
    expect(lines[0]).toBe(`base:allocation [(0, [${3 * MiB}, 3, 4096, 2, ${5 * MiB - 4096}, 3])]`);
    expect(lines[1]).toBe(`qemu:dirty-bitmap:cp1 [(0, [${MiB}, 0, 65536, 1, ${2 * MiB - 65536}, 0, 4096, 1, ${5 * MiB - 4096}, 0])]`);
    expect(lines[2]).toBe(`base:allocation [(${3 * MiB}, [4096, 2])]`);
    expect(lines[3]).toBe(`qemu:dirty-bitmap:cp1 [(${3 * MiB}, [4096, 1])]`);
  });

  it('a context the export lacks is not granted, and block status then fails cleanly without breaking the connection', async () => {
    const r = await nbdsh(uri('bare'), `
print(h.can_meta_context("base:allocation"))
try:
    h.block_status(4096, 0, lambda *a: 0)
except nbd.Error as e:
    print("refused")
print(len(h.pread(512, 0)))
`, 'h.add_meta_context("base:allocation")');
    expect(r.stderr).toBe('');
    expect(r.stdout.trim().split('\n')).toEqual(['False', 'refused', '512']);
  });
});

describe('sparse copies read only the data', () => {
  const DATA_BYTES = 3 * MiB;

  beforeAll(async () => {
    // 3 MiB of data in a 32 MiB export, in three places.
    await qemuIo('sparse', 'write -P 0x11 0 1M', 'write -P 0x22 10M 1M', 'write -P 0x33 31M 1M');
  });

  it('nbdcopy to a file: same sha256, a sparse file, about the data read from the backend', async () => {
    const out = join(dir, 'nbdcopy.raw');
    sparseReadBytes = 0;
    const r = await run('nbdcopy', [uri('sparse'), out]);
    expect(r.code, r.stderr).toBe(0);
    expect(sha256(readFileSync(out))).toBe(sha256(sparse.data));
    expect(sparseReadBytes).toBeGreaterThanOrEqual(DATA_BYTES);
    expect(sparseReadBytes).toBeLessThan(2 * DATA_BYTES);
    expect(statSync(out).blocks * 512).toBeLessThan(8 * MiB);
  });

  it('qemu-img convert -O raw (extended headers): same sha256, sparse output, data-only reads', async () => {
    const out = join(dir, 'convert.raw');
    sparseReadBytes = 0;
    const r = await run('qemu-img', ['convert', '-f', 'raw', '-O', 'raw', uri('sparse'), out]);
    expect(r.code, r.stderr).toBe(0);
    expect(sha256(readFileSync(out))).toBe(sha256(sparse.data));
    expect(sparseReadBytes).toBeGreaterThanOrEqual(DATA_BYTES);
    expect(sparseReadBytes).toBeLessThan(2 * DATA_BYTES);
    expect(statSync(out).blocks * 512).toBeLessThan(8 * MiB);
    expect(logs.some((l) => l.includes('export "sparse" (extended headers, meta contexts: base:allocation)'))).toBe(true);
  });
});
