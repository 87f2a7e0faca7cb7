// NbdServer.stats(): a READ payload is never copied (the backend's views go straight to the
// socket). A WRITE payload is copied once from Node's socket buffers into the backend's write
// buffer — except, with directRead (the default for plaintext), the bytes the kernel reads in
// place (server/direct-read.ts). nbdsh (libnbd) drives it; nothing else talks to these servers.
import { afterEach, describe, expect, it } from 'vitest';
import { type Served, nbdsh, serve } from './helpers.js';

const SCRIPT = `
h.pwrite(b"a" * 4096, 0)
h.pwrite(b"b" * 100, 12345)
h.pwrite(b"c" * (1024 * 1024), 65536)
assert bytes(h.pread(4096, 0)) == b"a" * 4096
assert bytes(h.pread(100, 12345)) == b"b" * 100
assert bytes(h.pread(1024 * 1024, 65536)) == b"c" * (1024 * 1024)
h.trim(4096, 0)
h.zero(4096, 8192)
try:
    h.pwrite(b"x" * 10, 8 * 1024 * 1024 - 5)
except nbd.Error as e:
    print(e.errno)
`;
const PAYLOAD_BYTES = 4096 + 100 + 1024 * 1024;

describe('NbdServer.stats() copy counters', () => {
  let s: Served | undefined;
  afterEach(async () => {
    await s?.server.close();
    s = undefined;
  });

  it('copying reader: one copy per WRITE (its payload bytes), none for READ, TRIM, WRITE_ZEROES or refused writes', async () => {
    s = await serve(8 * 1024 * 1024, { directRead: false });
    expect(s.server.stats()).toEqual({ payloadCopies: 0, payloadBytesCopied: 0 });
    const r = await nbdsh(s.uri(), SCRIPT, 'h.set_strict_mode(0)');
    expect(r.stderr).toBe('');
    expect(r.stdout.trim()).toBe('ENOSPC'); // read and skipped, never copied
    expect(s.server.stats()).toEqual({ payloadCopies: 3, payloadBytesCopied: PAYLOAD_BYTES });
  });

  it('in-place reader: the same bytes land, and most of a large payload is never copied', async () => {
    s = await serve(8 * 1024 * 1024);
    const r = await nbdsh(s.uri(), SCRIPT, 'h.set_strict_mode(0)');
    expect(r.stderr).toBe('');
    expect(r.stdout.trim()).toBe('ENOSPC');
    const stats = s.server.stats();
    // Only bytes that arrived in a read together with their request header go through a copy.
    expect(stats.payloadCopies).toBeLessThanOrEqual(3);
    expect(stats.payloadBytesCopied).toBeLessThan(PAYLOAD_BYTES / 2);
    expect(Buffer.from(s.disk.data.subarray(65536, 65536 + 1024 * 1024)).equals(Buffer.alloc(1024 * 1024, 'c'))).toBe(true);
  });
});
