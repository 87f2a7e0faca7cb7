// End-to-end against real NBD clients: nbdinfo, qemu-io, nbdcopy, nbdsh (libnbd).

import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Served, nbdsh, run, serve } from './helpers.js';

let s: Served;
let dir: string;

beforeAll(async () => {
  s = await serve();
  dir = mkdtempSync(join(tmpdir(), 'onestack-nbd-'));
});

afterAll(async () => {
  await s.server.close();
  rmSync(dir, { recursive: true, force: true });
  // Every read result and write buffer went back to the backend.
  for (const exp of [s.disk, s.readOnly, s.copy32, s.copy8]) expect(exp.outstanding()).toEqual({ reads: 0, writeBuffers: 0 });
});

const sha256 = (bytes: Uint8Array): string => createHash('sha256').update(bytes).digest('hex');

describe('nbdinfo', () => {
  it('shows size, flags and block sizes', async () => {
    const r = await run('nbdinfo', ['--json', s.uri()]);
    expect(r.code, r.stderr).toBe(0);
    const info = JSON.parse(r.stdout) as { protocol: string; structured: boolean; exports: Record<string, unknown>[] };
    expect(info.protocol).toBe('newstyle-fixed');
    expect(info.structured).toBe(true);
    expect(info.exports[0]).toMatchObject({
      'export-name': 'disk0', description: 'test disk', 'export-size': 64 * 1024 * 1024, is_read_only: false,
      can_flush: true, can_fua: true, can_trim: true, can_zero: true, can_multi_conn: true, can_cache: true, can_df: true,
      block_size_minimum: 1, block_size_preferred: 4096, block_size_maximum: 32 * 1024 * 1024,
    });
  });

  it('shows a read-only export as such', async () => {
    const r = await run('nbdinfo', ['--json', s.uri('ro')]);
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout).exports[0]).toMatchObject({ is_read_only: true, can_trim: false, can_zero: false, 'export-size': 1024 * 1024 });
  });

  it('lists all exports', async () => {
    const r = await run('nbdinfo', ['--list', '--json', `nbd://127.0.0.1:${s.port}`]);
    expect(r.code, r.stderr).toBe(0);
    const names = (JSON.parse(r.stdout).exports as { 'export-name': string }[]).map((e) => e['export-name']);
    expect(names).toEqual(['disk0', 'ro', 'copy32', 'copy8']);
  });

  it('maps the empty name to the default export and fails cleanly for an unknown one', async () => {
    const def = await run('nbdinfo', ['--size', `nbd://127.0.0.1:${s.port}/`]);
    expect(def.stdout.trim()).toBe(String(64 * 1024 * 1024));
    const missing = await run('nbdinfo', ['--size', s.uri('nope')]);
    expect(missing.code).not.toBe(0);
    expect(missing.stderr).toMatch(/nope/);
  });
});

describe('qemu-io', () => {
  it('writes and reads patterns at scattered offsets, with zero, discard, flush and FUA', async () => {
    const cmds = [
      'write -P 0xab 4096 8192', 'read -P 0xab 4096 8192',
      'write -P 0x5c 1048575 3', 'read -P 0x5c 1048575 3',
      'write -P 0x77 67104768 4096', 'read -P 0x77 67104768 4096',
      'write -f -P 0x11 33554432 65536', 'read -P 0x11 33554432 65536',
      'write -z 4096 4096', 'read -P 0 4096 4096', 'read -P 0xab 8192 4096',
      'discard 33554432 65536', 'read -P 0 33554432 65536',
      'flush',
    ];
    const r = await run('qemu-io', ['-f', 'raw', s.uri(), ...cmds.flatMap((c) => ['-c', c])]);
    expect(r.code, r.stderr + r.stdout).toBe(0);
    expect(r.stdout).not.toMatch(/Pattern verification failed|error|failed/i);
    expect(r.stdout.match(/^read /gm)?.length).toBe(7);
    expect(s.disk.data[1048575]).toBe(0x5c);
  });

  it('gets EPERM-style refusal when writing a read-only export', async () => {
    const r = await run('qemu-io', ['-f', 'raw', '-r', s.uri('ro'), '-c', 'read -P 0 0 4096']);
    expect(r.code, r.stderr).toBe(0);
    const w = await run('qemu-io', ['-f', 'raw', s.uri('ro'), '-c', 'write -P 1 0 4096']);
    expect(w.stdout + w.stderr).toMatch(/read-only|Permission|not permitted/i);
  });
});

describe('nbdcopy', () => {
  const src = randomBytes(32 * 1024 * 1024);

  it('copies a random 32 MiB file in and out unchanged', async () => {
    const inFile = join(dir, 'in.bin');
    const outFile = join(dir, 'out.bin');
    writeFileSync(inFile, src);
    const up = await run('nbdcopy', [inFile, s.uri('copy32')]);
    expect(up.code, up.stderr).toBe(0);
    const down = await run('nbdcopy', [s.uri('copy32'), outFile]);
    expect(down.code, down.stderr).toBe(0);
    expect(sha256(readFileSync(outFile))).toBe(sha256(src));
    expect(sha256(s.copy32.data)).toBe(sha256(src));
  });

  it('runs two copies concurrently (one reading, one writing, multi-conn each)', async () => {
    const small = randomBytes(8 * 1024 * 1024);
    const smallFile = join(dir, 'small.bin');
    const outFile = join(dir, 'out2.bin');
    writeFileSync(smallFile, small);
    const [down, up] = await Promise.all([
      run('nbdcopy', [s.uri('copy32'), outFile]),
      run('nbdcopy', [smallFile, s.uri('copy8')]),
    ]);
    expect(down.code, down.stderr).toBe(0);
    expect(up.code, up.stderr).toBe(0);
    expect(sha256(readFileSync(outFile))).toBe(sha256(src));
    expect(sha256(s.copy8.data)).toBe(sha256(small));
  });
});

const CHECKS = `
size = h.get_size()
h.pwrite(b"hello", 1000)
assert h.pread(5, 1000) == b"hello"
h.pwrite(b"\\x01" * 4096, 8192, nbd.CMD_FLAG_FUA)
h.trim(4096, 8192)
assert h.pread(4096, 8192) == b"\\0" * 4096
h.pwrite(b"\\x02" * 4096, 16384)
h.zero(4096, 16384, nbd.CMD_FLAG_NO_HOLE)
assert h.pread(4096, 16384) == b"\\0" * 4096
h.flush()
h.cache(65536, 0)
for (off, ln, want) in [(size - 100, 4096, "EINVAL"), (0, 40 * 1024 * 1024, "EOVERFLOW")]:
    try:
        h.pread(ln, off)
        raise SystemExit("read past end succeeded")
    except nbd.Error as e:
        assert e.errno == want, e
try:
    h.pwrite(b"x" * 10, size - 5)
    raise SystemExit("write past end succeeded")
except nbd.Error as e:
    assert e.errno == "ENOSPC", e
assert h.pread(5, 1000) == b"hello"
print("structured=%s ok" % h.get_structured_replies_negotiated())
`;

describe('nbdsh (libnbd) scripted checks', () => {
  it('with structured replies: read/write/trim/zero/flush/cache, errors keep the connection', async () => {
    const r = await nbdsh(s.uri(), CHECKS, 'h.set_strict_mode(0)');
    expect(r.stderr).toBe('');
    expect(r.stdout.trim()).toBe('structured=True ok');
  });

  it('without structured replies: simple replies everywhere', async () => {
    const r = await nbdsh(s.uri(), CHECKS, 'h.set_strict_mode(0); h.set_request_structured_replies(False)');
    expect(r.stderr).toBe('');
    expect(r.stdout.trim()).toBe('structured=False ok');
  });

  it('serves plain-newstyle clients via NBD_OPT_EXPORT_NAME', async () => {
    const r = await nbdsh(s.uri(), 'print(h.get_protocol(), h.get_size(), h.pread(5, 1000))', 'h.set_opt_mode(False); h.set_handshake_flags(0); h.set_request_structured_replies(False)');
    expect(r.stderr).toBe('');
    // Plain newstyle (no FIXED_NEWSTYLE, no NO_ZEROES): only EXPORT_NAME, and the 124 zero bytes.
    expect(r.stdout.trim()).toBe("newstyle 67108864 bytearray(b'hello')");
  });

  it('gets EPERM writing the read-only export', async () => {
    const r = await nbdsh(s.uri('ro'), `
try:
    h.pwrite(b"x", 0)
except nbd.Error as e:
    print(e.errno)`, 'h.set_strict_mode(0)');
    expect(r.stdout.trim()).toBe('EPERM');
  });

  it('keeps many requests in flight on one connection (completion order replies)', async () => {
    const r = await nbdsh(s.uri(), `
bufs = []
for i in range(200):
    h.aio_pwrite(bytes([i % 251]) * 4096, i * 4096)
while h.aio_in_flight() > 0:
    h.poll(-1)
cookies = [h.aio_pread(nbd.Buffer(4096), i * 4096) for i in range(200)]
n = 0
while h.aio_in_flight() > 0 and n < 100000:
    h.poll(-1); n += 1
ok = all(h.aio_command_completed(c) for c in cookies)
print(ok, bytes(h.pread(1, 199 * 4096))[0])
`);
    expect(r.stderr).toBe('');
    expect(r.stdout.trim()).toBe(`True ${199 % 251}`);
  });
});
