// Acceptance (issue 9): qemu 10's NBD client negotiates extended headers with the daemon — its
// own trace shows the server ACKing NBD_OPT_EXTENDED_HEADERS — and pattern writes/reads, trims
// and 64-bit block status pass over them; libnbd 1.14 (no extended headers) still gets compact
// replies from the same daemon, and both see the same map.
import { describe, expect, it } from 'vitest';
import { useDaemon } from './lib/fixture.js';
import { MiB } from './lib/files.js';
import { nbdinfo, qemuIo, qemuIoFailed } from './lib/peers.js';
import { explain, run } from './lib/proc.js';

const TRACE = ['--trace', 'nbd_send_option_request', '--trace', 'nbd_receive_option_reply'];

describe('extended headers with qemu 10', () => {
  const fx = useDaemon('ext-headers');

  it('qemu-io negotiates NBD_OPT_EXTENDED_HEADERS (option 11, ACK) and pattern I/O passes over 32-byte headers', async () => {
    const uri = fx.daemon.uri('default');
    const r = await run('qemu-io', ['-f', 'raw', ...TRACE, '-c', 'write -P 0xab 1M 1M', '-c', 'read -P 0xab 1M 1M', '-c', 'write -z 3M 64k',
      '-c', 'read -P 0 3M 64k', '-c', 'discard 5M 1M', '-c', 'read -P 0 5M 1M', uri], { timeoutMs: 60_000 });
    expect(qemuIoFailed(r), explain(r)).toBe(false);
    const trace = r.stdout + r.stderr;
    expect(trace, 'the client asked for extended headers').toMatch(/option request 11 \(extended headers\)/);
    expect(trace, 'and the daemon acknowledged them').toMatch(/option reply 11 \(extended headers\), type 1 \(ack\)/);
    // Extended headers imply structured replies: qemu never sends NBD_OPT_STRUCTURED_REPLY then.
    expect(trace).not.toMatch(/option request 8 \(structured reply\)/);
    expect(fx.daemon.logs()).toMatch(/extended headers/);
  });

  it('qemu-img map (one 64-bit block status over extended headers) and nbdinfo --map (compact, libnbd 1.14) agree', async () => {
    const uri = fx.daemon.uri('default');
    const w = await qemuIo(uri, ['write -P 0x5a 100M 2M', 'write -P 0x5b 700M 64k']);
    expect(qemuIoFailed(w), explain(w)).toBe(false);
    const q = await run('qemu-img', ['map', '-f', 'raw', '--output=json', uri], { timeoutMs: 60_000 });
    expect(q.code, explain(q)).toBe(0);
    const qemuData = (JSON.parse(q.stdout) as { start: number; length: number; data: boolean }[]).filter((e) => e.data).map((e) => [e.start, e.length]);
    const info = await run('nbdinfo', ['--map', '--json', uri], { timeoutMs: 30_000 });
    expect(info.code, explain(info)).toBe(0);
    const libnbdData = (JSON.parse(info.stdout) as { offset: number; length: number; type: number }[]).filter((e) => (e.type & 1) === 0).map((e) => [e.offset, e.length]);
    expect(libnbdData).toEqual(qemuData);
    // The daemon tells holes on local elements only with its native addon (SEEK_DATA).
    const native = ((await fx.daemon.status()) as unknown as { native: { backend: string } }).native.backend === 'native';
    if (native) {
      expect(qemuData).toContainEqual([100 * MiB, 2 * MiB]);
      expect(qemuData).toContainEqual([700 * MiB, 64 * 1024]);
    } else {
      // Without the addon local elements cannot tell holes (no lseek in Node): all data, both ways.
      expect(qemuData).toEqual([[0, 1024 * MiB]]);
    }
    const compact = await nbdinfo(uri);
    expect(compact.structured, 'libnbd 1.14 gets structured (compact) replies').toBe(true);
  });
});
