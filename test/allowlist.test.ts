// Acceptance (issue 8, item 5): config `nbd.allow` — the daemon closes connections from
// addresses outside the list at accept, before the NBD greeting, with one log line per burst;
// listed clients (nbdinfo, python libnbd) are served. 127.0.0.2 is loopback on
// Linux, so the refused client is a socket bound to it (Node's localAddress).
import { connect } from 'node:net';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Daemon } from './lib/daemon.js';
import { MiB, removeDir, tempDir, writeConfig } from './lib/files.js';
import { PEER_ENV, run } from './lib/proc.js';

const GREETING_BYTES = 18;

/** Connects from `localAddress`; resolves how many bytes the server sent before the close. */
function bytesBeforeClose(port: number, localAddress: string): Promise<number> {
  return new Promise((resolve) => {
    const socket = connect({ port, host: '127.0.0.1', localAddress });
    let bytes = 0;
    const timer = setTimeout(() => socket.destroy(), 5000);
    socket.on('data', (chunk: Buffer) => {
      bytes += chunk.length;
      if (bytes >= GREETING_BYTES) socket.destroy();
    });
    socket.on('error', () => {});
    socket.on('close', () => { clearTimeout(timer); resolve(bytes); });
  });
}

describe('nbd.allow', () => {
  let dir = '';
  let daemon: Daemon | undefined;
  const refusals = (): string[] => (daemon?.stderr ?? '').split('\n').filter((l) => l.includes('not in nbd.allow'));

  beforeAll(async () => {
    dir = tempDir('allow');
    const { configPath } = await writeConfig(dir, [{ name: 'd0', sizeBytes: 32 * MiB }], [{ name: 'v', layout: 'linear', elements: ['d0'], boot: true }],
      ['nbd: { allow: [127.0.0.1/32, "::1/128"] }']);
    daemon = await Daemon.start({ dataDir: path.join(dir, 'data'), configPath });
  });

  afterAll(async () => {
    try {
      await daemon?.stop();
    } finally {
      if (dir !== '') removeDir(dir);
    }
  });

  it('a client from 127.0.0.2 is closed before the greeting; ten of them give one log line', async () => {
    const port = daemon?.nbdPort ?? 0;
    const sent = await Promise.all(Array.from({ length: 10 }, () => bytesBeforeClose(port, '127.0.0.2')));
    expect(sent).toEqual(new Array(10).fill(0));
    expect(refusals(), daemon?.logs()).toEqual(['warn: nbd: refusing connection from 127.0.0.2: not in nbd.allow']);
    expect(daemon?.alive).toBe(true);
  });

  it('127.0.0.1 is served: the greeting, nbdinfo, and python libnbd writing and reading back', async () => {
    const port = daemon?.nbdPort ?? 0;
    expect(await bytesBeforeClose(port, '127.0.0.1')).toBeGreaterThanOrEqual(GREETING_BYTES);
    const info = await run('nbdinfo', ['--size', `nbd://127.0.0.1:${port}/v`], { timeoutMs: 20_000, env: PEER_ENV });
    expect(info.code, info.stderr).toBe(0);
    expect(Number(info.stdout.trim())).toBe(28 * MiB); // 32 MiB less the 4 MiB every element reserves
    const py = await run('/usr/bin/python3', ['-c', `
import nbd
h = nbd.NBD()
h.connect_uri("nbd://127.0.0.1:${port}/v")
h.pwrite(b"allowed" * 512, 4096)
print(h.pread(7 * 512, 4096) == b"allowed" * 512)
h.shutdown()
`], { timeoutMs: 30_000, env: PEER_ENV });
    expect(py.code, py.stderr).toBe(0);
    expect(py.stdout.trim()).toBe('True');
    expect(refusals()).toHaveLength(1); // still the one line of the first test
  });

  it('the start-up log names the allowlist', () => {
    expect(daemon?.stderr).toMatch(/nbd: listening on 127\.0\.0\.1:\d+ \(tls: off, allow: 127\.0\.0\.1\/32 ::1\/128,/);
  });
});
