// Acceptance (issue 8, item 4): the daemon's NBD limits come from config `nbd:` and hold against
// real clients — python libnbd opening many connections and sending requests above the maximum,
// nbdinfo reading the advertised maximum, raw sockets that stall — each hit logged once per
// burst on stderr. A limit out of range is a config error naming the field and its line.
import { connect } from 'node:net';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLI_MAIN, Daemon, REPO_ROOT } from './lib/daemon.js';
import { MiB, removeDir, tempDir, writeConfig } from './lib/files.js';
import { nbdinfo } from './lib/peers.js';
import { PEER_ENV, freePort, run, sleep } from './lib/proc.js';

const LIMITS = 'nbd: { maxConnections: 3, maxRequestBytes: 1MiB, handshakeTimeoutMs: 1000, inFlightMax: 8, payloadTimeoutMs: 1500 }';

function python(script: string): ReturnType<typeof run> {
  return run('/usr/bin/python3', ['-c', script], { timeoutMs: 60_000, env: PEER_ENV });
}

/** Resolves when the server closes the socket (true) or after timeoutMs (false); sends `bytes` first. */
function closedWithin(port: number, timeoutMs: number, bytes?: Uint8Array): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1', () => { if (bytes !== undefined) socket.write(bytes); });
    const timer = setTimeout(() => { socket.destroy(); resolve(false); }, timeoutMs);
    socket.on('error', () => {});
    socket.resume(); // flowing: the server's FIN is only seen once the greeting is consumed
    socket.on('close', () => { clearTimeout(timer); resolve(true); });
  });
}

describe('nbd limits from the config', () => {
  let dir = '';
  let daemon: Daemon | undefined;
  const uri = (): string => `nbd://127.0.0.1:${daemon?.nbdPort ?? 0}/v`;
  const lines = (text: string): string[] => (daemon?.stderr ?? '').split('\n').filter((l) => l.includes(text));

  beforeAll(async () => {
    dir = tempDir('limits');
    const { configPath } = await writeConfig(dir, [{ name: 'd0', sizeBytes: 64 * MiB }], [{ name: 'v', layout: 'linear', elements: ['d0'], boot: true }], [LIMITS]);
    daemon = await Daemon.start({ dataDir: path.join(dir, 'data'), configPath });
  });

  afterAll(async () => {
    try {
      await daemon?.stop();
    } finally {
      if (dir !== '') removeDir(dir);
    }
  });

  it('the start-up log states the limits in force', () => {
    expect(lines('nbd: listening on'), daemon?.logs()).toEqual([expect.stringMatching(/allow: any, maxConnections 3, maxRequestBytes 1048576, inFlightMax 8/)]);
  });

  it('nbdinfo sees the 1 MiB maximum block size; python libnbd gets EOVERFLOW above it, data intact', async () => {
    const info = await nbdinfo(uri());
    expect(info.exports[0]?.block_size_maximum).toBe(MiB);
    const r = await python(`
import nbd
h = nbd.NBD()
h.connect_uri("${uri()}")
h.pwrite(b"\\x33" * (1 << 20), 0)
for op in ("read", "write"):
    try:
        if op == "read": h.pread(4 << 20, 0)
        else: h.pwrite(b"\\x44" * (2 << 20), 0)
        print(op, "accepted")
    except nbd.Error as e:
        print(op, e.errno)
print("intact", h.pread(1 << 20, 0) == b"\\x33" * (1 << 20))
h.shutdown()
`);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout.trim().split('\n')).toEqual(['read EOVERFLOW', 'write EOVERFLOW', 'intact True']);
    expect(lines('(nbd.maxRequestBytes): EOVERFLOW')).toHaveLength(1);
  });

  it('python libnbd: 3 connections get in, a burst of 15 is refused, logged in one line', async () => {
    const before = lines('refusing connection').length;
    const r = await python(`
import nbd
uri = "${uri()}"
held = []
for i in range(3):
    h = nbd.NBD(); h.connect_uri(uri); held.append(h)
refused = 0
for i in range(15):
    try:
        nbd.NBD().connect_uri(uri)
    except nbd.Error:
        refused += 1
print("refused", refused, "held", sum(1 for h in held if h.pread(512, 0) is not None))
for h in held: h.shutdown()
`);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout.trim()).toBe('refused 15 held 3');
    const refusals = lines('refusing connection').slice(before);
    expect(refusals, daemon?.logs()).toHaveLength(1);
    expect(refusals[0]).toMatch(/3 connections open \(nbd\.maxConnections\)/);
    // The places come back: a new client gets in (bounded retries while the three close).
    let ok = false;
    for (let i = 0; i < 50 && !ok; i++) {
      ok = (await run('nbdinfo', ['--size', uri()], { timeoutMs: 10_000, env: PEER_ENV })).code === 0;
      if (!ok) await sleep(100);
    }
    expect(ok).toBe(true);
  });

  it('a silent client and a trickling one are dropped by the 1 s handshake deadline', async () => {
    const port = daemon?.nbdPort ?? 0;
    const silent = closedWithin(port, 5000);
    const trickler = new Promise<boolean>((resolve) => {
      const socket = connect(port, '127.0.0.1');
      // A well-formed start (client flags, then an NBD_OPT_LIST header), one byte every 100 ms:
      // it never says anything wrong, it is only slow.
      const bytes = [0, 0, 0, 3, ...Buffer.from('IHAVEOPT'), 0, 0, 0, 3, 0, 0, 0, 0];
      let sent = 0;
      const timer = setInterval(() => { if (sent < bytes.length) socket.write(new Uint8Array([bytes[sent++] ?? 0])); }, 100);
      const stop = setTimeout(() => { socket.destroy(); resolve(false); }, 5000);
      socket.on('error', () => {});
      socket.resume();
      socket.on('close', () => { clearInterval(timer); clearTimeout(stop); resolve(true); });
    });
    const started = Date.now();
    expect(await Promise.all([silent, trickler]), daemon?.logs()).toEqual([true, true]);
    expect(Date.now() - started).toBeLessThan(4000);
    expect(lines('handshake timed out after 1000 ms (nbd.handshakeTimeoutMs)').length).toBeGreaterThanOrEqual(1);
    expect(daemon?.alive).toBe(true);
  });
});

describe('nbd limits: config errors', () => {
  let dir = '';
  beforeAll(() => { dir = tempDir('limits-config'); });
  afterAll(() => { if (dir !== '') removeDir(dir); });

  for (const c of [
    { key: 'maxConnections: 0', field: /nbd\.maxConnections: 0 is out of range \(1\.\.65536\)/ },
    { key: 'maxRequestBytes: 3MiB', field: /nbd\.maxRequestBytes: 3145728 bytes is not a power of two/ },
    { key: 'inFlightMax: many', field: /nbd\.inFlightMax: expected an integer/ },
    { key: 'handshakeTimeoutMs: 5', field: /nbd\.handshakeTimeoutMs: 5 is out of range/ },
    { key: 'maxConection: 5', field: /nbd\.maxConection: unknown key .*did you mean "maxConnections"/ },
  ]) {
    it(`${c.key} → exit 2 naming the field at line 2`, async () => {
      const file = path.join(dir, `${c.key.replace(/\W/g, '_')}.yaml`);
      await writeFile(file, `dataDir: ./data\nnbd: { ${c.key} }\n`);
      const args = [CLI_MAIN, 'serve', '--config', file, '--nbd', `127.0.0.1:${await freePort()}`, '--api', `127.0.0.1:${await freePort()}`];
      const r = await run(process.execPath, args, { timeoutMs: 20_000, cwd: REPO_ROOT });
      expect(r.code, r.stderr).toBe(2);
      const errors = r.stderr.split('\n').filter((l) => l.includes('onestack: error:'));
      expect(errors, r.stderr).toHaveLength(1);
      expect(errors[0]).toMatch(c.field);
      expect(errors[0]).toMatch(/:2:\d+/);
    });
  }
});
