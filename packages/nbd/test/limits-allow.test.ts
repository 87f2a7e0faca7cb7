// The client allowlist: CIDR parsing and matching (pure functions, IPv4 and IPv6), and the
// server closing connections from outside the list at accept, with one log line per burst.
// 127.0.0.2 is loopback on Linux, so a second client address needs no set-up.

import { connect, createServer } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import {
  type NbdServer, Size, cidrContains, createAllowList, createMemoryExport, createMemoryProvider, createNbdServer,
  parseAddress, parseCidr,
} from '../src/index.js';
import { RawClient, run, waitFor } from './helpers.js';

const servers: NbdServer[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => s.close()));
});

/** Whether this machine has IPv6 loopback (containers may run without it). */
const HAVE_IPV6 = await new Promise<boolean>((resolve) => {
  const probe = createServer();
  probe.once('error', () => resolve(false));
  probe.listen(0, '::1', () => probe.close(() => resolve(true)));
});

const hex = (bytes: Uint8Array | undefined): string => Buffer.from(bytes ?? []).toString('hex');

describe('parseAddress', () => {
  it('reads IPv4 as its IPv4-mapped IPv6 form and IPv6 in every spelling', () => {
    expect(parseAddress('192.0.2.1')).toEqual({ bytes: parseAddress('::ffff:192.0.2.1')?.bytes, family: 4 });
    expect(hex(parseAddress('::ffff:c000:0201')?.bytes)).toBe('00000000000000000000ffffc0000201');
    expect(hex(parseAddress('::1')?.bytes)).toBe('00000000000000000000000000000001');
    expect(hex(parseAddress('::')?.bytes)).toBe('0'.repeat(32));
    expect(hex(parseAddress('2001:db8::')?.bytes)).toBe('20010db8000000000000000000000000');
    expect(hex(parseAddress('2001:DB8:0:0:1:0:0:1')?.bytes)).toBe('20010db8000000000001000000000001');
    expect(hex(parseAddress('fe80::1%eth0')?.bytes)).toBe('fe800000000000000000000000000001'); // a peer's zone is ignored
    expect(hex(parseAddress('1:2:3:4:5:6:7:8')?.bytes)).toBe('00010002000300040005000600070008');
    expect(hex(parseAddress('64:ff9b::10.0.0.1')?.bytes)).toBe('0064ff9b00000000000000000a000001');
  });

  it('refuses what is not an address', () => {
    for (const bad of ['', '1.2.3', '1.2.3.4.5', '256.1.1.1', '01.2.3.4', '1.2.3.-4', ' 1.2.3.4', 'localhost', ':::', '1::2::3',
      '1:2:3:4:5:6:7:8:9', '1:2:3:4:5:6:7', '12345::', 'g::1', ':1', '1:', '1:2:3:4:5:6:7::8', '::ffff:1.2.3', '1.2.3.4::']) {
      expect(parseAddress(bad), bad).toBeUndefined();
    }
  });
});

describe('parseCidr and cidrContains', () => {
  const inside = (cidr: string, address: string): boolean => {
    const c = parseCidr(cidr);
    const a = parseAddress(address);
    if (c === undefined || a === undefined) throw new Error(`bad test input ${cidr} ${address}`);
    return cidrContains(c, a.bytes);
  };

  it('IPv4 blocks, at and around every kind of boundary', () => {
    expect(inside('127.0.0.1/32', '127.0.0.1')).toBe(true);
    expect(inside('127.0.0.1/32', '127.0.0.2')).toBe(false);
    expect(inside('127.0.0.1', '127.0.0.1')).toBe(true); // a bare address is one host
    expect(inside('127.0.0.0/8', '127.255.255.255')).toBe(true);
    expect(inside('127.0.0.0/8', '128.0.0.0')).toBe(false);
    expect(inside('10.1.2.3/8', '10.200.0.1')).toBe(true); // host bits of the network are ignored
    expect(inside('192.168.4.0/22', '192.168.7.255')).toBe(true);
    expect(inside('192.168.4.0/22', '192.168.8.0')).toBe(false);
    expect(inside('192.168.4.0/22', '192.168.3.255')).toBe(false);
    expect(inside('172.16.0.0/12', '172.31.1.1')).toBe(true);
    expect(inside('172.16.0.0/12', '172.32.0.0')).toBe(false);
    expect(inside('0.0.0.0/0', '203.0.113.9')).toBe(true);
    expect(inside('0.0.0.0/0', '::1')).toBe(false); // an IPv4 block never matches a real IPv6 peer
  });

  it('IPv6 blocks, and IPv4 peers seen by a dual-stack listener', () => {
    expect(inside('::1', '::1')).toBe(true);
    expect(inside('::1/128', '::2')).toBe(false);
    expect(inside('fd00::/8', 'fdff:ffff::1')).toBe(true);
    expect(inside('fd00::/8', 'fe00::1')).toBe(false);
    expect(inside('2001:db8::/33', '2001:db8:7fff::1')).toBe(true);
    expect(inside('2001:db8::/33', '2001:db8:8000::1')).toBe(false);
    expect(inside('::/0', '2001:db8::1')).toBe(true);
    expect(inside('127.0.0.0/8', '::ffff:127.0.0.9')).toBe(true); // how '::' listeners report IPv4 clients
    expect(inside('::ffff:0:0/96', '10.0.0.1')).toBe(true);
  });

  it('refuses malformed blocks and zones', () => {
    for (const bad of ['10.0.0.0/33', '::/129', '10.0.0.0/', '10.0.0.0/08', '10.0.0.0/-1', '10.0.0.0/8/8', 'fe80::/10%eth0', 'fe80::1%eth0', 'x/8', '/8']) {
      expect(parseCidr(bad), bad).toBeUndefined();
    }
    expect(parseCidr('10.0.0.0/8')).toMatchObject({ prefixBits: 104, text: '10.0.0.0/8' });
  });

  it('createAllowList: empty allows all, unparseable peers are refused, bad entries are named', () => {
    expect(createAllowList([])('203.0.113.1')).toBe(true);
    const allow = createAllowList(['127.0.0.1', '10.0.0.0/8', 'fd00::/8']);
    expect(['127.0.0.1', '::ffff:127.0.0.1', '10.9.8.7', 'fd12::3'].map(allow)).toEqual([true, true, true, true]);
    expect(['127.0.0.2', '11.0.0.1', '::1', 'fe80::1', undefined, 'garbage'].map(allow)).toEqual([false, false, false, false, false, false]);
    expect(() => createAllowList(['10.0.0.0/8', '300.0.0.0/8'])).toThrow(/allow\[1\]: invalid address or CIDR "300\.0\.0\.0\/8"/);
  });
});

/** Connects from `localAddress`; resolves whether the server sent its greeting before closing. */
function tryFrom(port: number, localAddress: string): Promise<{ greeted: boolean }> {
  return new Promise((resolve) => {
    const socket = connect({ port, host: '127.0.0.1', localAddress });
    let bytes = 0;
    const timer = setTimeout(() => socket.destroy(), 5000);
    socket.on('data', (chunk: Buffer) => {
      bytes += chunk.length;
      if (bytes >= Size.GREETING) socket.destroy();
    });
    socket.on('error', () => {});
    socket.on('close', () => { clearTimeout(timer); resolve({ greeted: bytes >= Size.GREETING }); });
  });
}

describe('server: allow', () => {
  it('closes 127.0.0.2 at accept (one log line per burst) and serves 127.0.0.1 and nbdinfo', async () => {
    const logs: string[] = [];
    const server = createNbdServer(createMemoryProvider([createMemoryExport('disk0', 1 << 20)]), {
      allow: ['127.0.0.1/32'], log: (level, msg) => logs.push(`${level} ${msg}`),
    });
    servers.push(server);
    const { port } = await server.listen('127.0.0.1', 0);
    const outsiders = await Promise.all(Array.from({ length: 5 }, () => tryFrom(port, '127.0.0.2')));
    expect(outsiders.map((o) => o.greeted)).toEqual([false, false, false, false, false]);
    expect(await tryFrom(port, '127.0.0.1')).toEqual({ greeted: true });
    const r = await run('nbdinfo', ['--size', `nbd://127.0.0.1:${port}/disk0`], 20_000);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout.trim()).toBe(String(1 << 20));
    const refused = logs.filter((l) => l.includes('not in nbd.allow'));
    expect(refused).toEqual(['warn nbd: refusing connection from 127.0.0.2: not in nbd.allow']);
    expect(logs.some((l) => l.includes('allow: 127.0.0.1/32'))).toBe(true);
    expect(await waitFor(() => server.connectionCount === 0)).toBe(true);
    await server.close();
    expect(logs.filter((l) => l.includes('not in nbd.allow')).at(-1)).toMatch(/\[4 more like this not logged/);
  });

  it('a 127.0.0.0/8 block lets both loopback addresses in', async () => {
    const server = createNbdServer(createMemoryProvider([createMemoryExport('disk0', 1 << 20)]), { allow: ['10.0.0.0/8', '127.0.0.0/8'] });
    servers.push(server);
    const { port } = await server.listen('127.0.0.1', 0);
    expect(await tryFrom(port, '127.0.0.2')).toEqual({ greeted: true });
    const c = await RawClient.open(port);
    expect((await c.read(Size.GREETING)).length).toBe(Size.GREETING);
    c.destroy();
  });

  it.skipIf(!HAVE_IPV6)('IPv6: on a ::1 listener (skipped when the machine has no IPv6 loopback), ::1/128 lets ::1 in and an IPv4-only list keeps it out', async () => {
    const attempt = async (allow: string[]): Promise<boolean> => {
      const server = createNbdServer(createMemoryProvider([createMemoryExport('disk0', 1 << 20)]), { allow });
      servers.push(server);
      const { port } = await server.listen('::1', 0);
      return new Promise((resolve) => {
        const socket = connect({ port, host: '::1' });
        let bytes = 0;
        socket.on('data', (chunk: Buffer) => { bytes += chunk.length; if (bytes >= Size.GREETING) socket.destroy(); });
        socket.on('error', () => {});
        socket.on('close', () => resolve(bytes >= Size.GREETING));
      });
    };
    expect(await attempt(['::1/128'])).toBe(true);
    expect(await attempt(['127.0.0.0/8', '0.0.0.0/0'])).toBe(false);
    expect(await attempt(['fd00::/8'])).toBe(false);
  });

  it('a bad allow entry fails at creation', () => {
    expect(() => createNbdServer(createMemoryProvider([]), { allow: ['127.0.0.1/40'] })).toThrow(/allow\[0\]/);
  });
});
