// Acceptance (issue 9): systemd socket activation. The daemon serves NBD (and the API, on an fd
// named "api") on listening sockets it inherits with LISTEN_PID/LISTEN_FDS/LISTEN_FDNAMES:
// started by systemd-socket-activate (when installed) and by a plain wrapper that sets the
// variables itself with a socket passed as fd 3. nbdinfo and qemu-io move data through them.
import { statSync, writeFileSync } from 'node:fs';
import { connect, createServer, type Server } from 'node:net';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLI_MAIN, REPO_ROOT, cliBuilt } from './lib/daemon.js';
import { GiB, removeDir, tempDir } from './lib/files.js';
import { nbdinfo, qemuIo, qemuIoFailed } from './lib/peers.js';
import { explain, freePort, have, missingTools, run, sleep } from './lib/proc.js';
import { apiStatus, startServe, type ServeProc } from './lib/serve-proc.js';

const peersMissing = !cliBuilt() ? 'daemon not built (run `pnpm run build`)' : missingTools(['nbdinfo', 'qemu-io']);
const activateMissing = have('systemd-socket-activate') ? null
  : 'systemd-socket-activate is not installed (Debian package systemd; ./scripts/test.sh installs it)';
// sh sets the variables for its own PID, which exec hands on to node: LISTEN_PID matches.
const WRAPPER = 'LISTEN_PID=$$ LISTEN_FDS=1 LISTEN_FDNAMES=nbd exec "$0" "$@"';

async function roundTrip(uri: string, seed: number): Promise<void> {
  const w = await qemuIo(uri, [`write -P ${seed} 0 1M`, `write -P ${seed + 1} 7M 64k`]);
  expect(qemuIoFailed(w), explain(w)).toBe(false);
  const r = await qemuIo(uri, [`read -P ${seed} 0 1M`, `read -P ${seed + 1} 7M 64k`, 'read -P 0 8M 64k']);
  expect(qemuIoFailed(r), explain(r)).toBe(false);
}

/** A listening TCP socket on a free loopback port, and its fd to hand to a child. */
async function listeningSocket(): Promise<{ server: Server; fd: number; port: number }> {
  const server = createServer();
  await new Promise<void>((resolve, reject) => { server.once('error', reject); server.listen(0, '127.0.0.1', resolve); });
  const address = server.address();
  const fd = (server as unknown as { _handle?: { fd?: number } })._handle?.fd;
  if (address === null || typeof address === 'string' || typeof fd !== 'number' || fd < 0) throw new Error('no fd for the listening socket');
  return { server, fd, port: address.port };
}

/** Connects to `socketPath` once it accepts (then hangs up), retrying until `until` settles or 20 s pass. */
async function knock(socketPath: string, until: Promise<unknown>): Promise<void> {
  let settled = false;
  void until.then(() => { settled = true; }, () => { settled = true; });
  for (const deadline = Date.now() + 20_000; !settled && Date.now() < deadline; await sleep(100)) {
    const connected = await new Promise<boolean>((resolve) => {
      const s = connect({ path: socketPath });
      s.once('connect', () => { s.destroy(); resolve(true); });
      s.once('error', () => resolve(false));
    });
    if (connected) return;
  }
}

describe.skipIf(peersMissing !== null || activateMissing !== null)(
  `systemd-socket-activate: Unix socket + TCP for NBD, TCP for the API${activateMissing === null ? '' : ` — skipped: ${activateMissing}`}`, () => {
    let dir = '';
    let socket = '';
    let nbdPort = 0;
    let apiPort = 0;
    let proc: ServeProc | null = null;
    beforeAll(async () => {
      dir = tempDir('sd-activate');
      socket = path.join(dir, 'nbd.sock');
      [nbdPort, apiPort] = [await freePort(), await freePort()];
      const started = startServe({
        cmd: 'systemd-socket-activate',
        args: ['-l', socket, '-l', `127.0.0.1:${nbdPort}`, '-l', `127.0.0.1:${apiPort}`, '--fdname=nbd:nbd:api',
          process.execPath, CLI_MAIN, 'serve', '--data-dir', path.join(dir, 'data')],
      });
      // systemd-socket-activate execs the daemon on the first connection: knock once its socket exists.
      await knock(socket, started);
      proc = await started;
    });
    afterAll(async () => {
      await proc?.stop();
      if (dir !== '') removeDir(dir);
    });

    it('logs the fds it took and prints both NBD addresses', () => {
      expect(proc?.stderr).toMatch(/socket activation: NBD on fd 3 \(nbd\), fd 4 \(nbd\), API on fd 5 \(api\)/);
      expect(proc?.stdout).toContain(`nbd+unix:///default?socket=${socket}`);
      expect(proc?.stdout).toContain(`nbd://127.0.0.1:${nbdPort}/default`);
    });

    it('nbdinfo and qemu-io over the inherited Unix socket and the inherited TCP socket', async () => {
      const unixUri = `nbd+unix:///default?socket=${socket}`;
      expect((await nbdinfo(unixUri)).exports[0]?.['export-size']).toBe(1 * GiB);
      expect((await nbdinfo(`nbd://127.0.0.1:${nbdPort}/default`)).exports[0]?.['export-size']).toBe(1 * GiB);
      await roundTrip(unixUri, 0x31);
      // The same volume through the other listener sees what the first one wrote.
      const r = await qemuIo(`nbd://127.0.0.1:${nbdPort}/default`, ['read -P 0x31 0 1M']);
      expect(qemuIoFailed(r), explain(r)).toBe(false);
      await roundTrip(`nbd://127.0.0.1:${nbdPort}/default`, 0x41);
    });

    it('serves the API on the fd named "api"', async () => {
      const status = await apiStatus(apiPort, path.join(dir, 'data'));
      expect((status.volumes as { name: string }[]).map((v) => v.name)).toContain('default');
    });

    it('leaves the inherited Unix socket in place on stop (it belongs to the supervisor)', async () => {
      const stopped = await proc?.stop();
      expect(stopped?.code).toBe(0);
      expect(statSync(socket).isSocket()).toBe(true);
    });
  });

describe.skipIf(peersMissing !== null)('a wrapper sets LISTEN_PID/LISTEN_FDS itself, socket passed as fd 3', () => {
  let dir = '';
  beforeAll(() => { dir = tempDir('sd-wrapper'); });
  afterAll(() => { if (dir !== '') removeDir(dir); });

  it('serves NBD on the passed TCP socket; nbdinfo and qemu-io move data', async () => {
    const { server, fd, port } = await listeningSocket();
    let proc: ServeProc | null = null;
    try {
      const starting = startServe({
        cmd: '/bin/sh',
        args: ['-c', WRAPPER, process.execPath, CLI_MAIN, 'serve', '--data-dir', path.join(dir, 'data'), '--api', `127.0.0.1:${await freePort()}`],
        stdio: ['ignore', 'pipe', 'pipe', fd],
      });
      // The child holds its own copy now; ours must not accept the clients meant for the daemon.
      server.close();
      proc = await starting;
      expect(proc.stderr).toMatch(/socket activation: NBD on fd 3 \(nbd\)/);
      expect(proc.stderr).toMatch(new RegExp(`nbd: listening on 127\\.0\\.0\\.1:${port} \\(fd 3\\)`));
      const uri = `nbd://127.0.0.1:${port}/default`;
      expect((await nbdinfo(uri)).exports[0]?.['export-size']).toBe(1 * GiB);
      await roundTrip(uri, 0x51);
    } finally {
      server.close();
      await proc?.stop();
    }
  });

  it('LISTEN_PID of another process: the variables are ignored and --nbd is used', async () => {
    const port = await freePort();
    const proc = await startServe({
      cmd: process.execPath,
      args: [CLI_MAIN, 'serve', '--data-dir', path.join(dir, 'data-pid'), '--nbd', `127.0.0.1:${port}`, '--api', `127.0.0.1:${await freePort()}`],
      env: { ...process.env, LISTEN_PID: '1', LISTEN_FDS: '1', LISTEN_FDNAMES: 'nbd' },
    });
    try {
      expect(proc.stderr).toMatch(/LISTEN_FDS ignored: LISTEN_PID 1 is not this process/);
      expect((await nbdinfo(`nbd://127.0.0.1:${port}/default`)).exports[0]?.['export-size']).toBe(1 * GiB);
    } finally {
      await proc.stop();
    }
  });

  it('fd 3 that is not a listening socket (a regular file): exit 2 with a clear error', async () => {
    const file = path.join(dir, 'not-a-socket');
    writeFileSync(file, 'x');
    // The wrapper opens the file as fd 3, then claims it is a passed socket.
    const r = await run('/bin/sh', ['-c', 'exec 3<"$0"; LISTEN_PID=$$ LISTEN_FDS=1 exec "$@"', file, process.execPath, CLI_MAIN, 'serve',
      '--data-dir', path.join(dir, 'data-bad'), '--api', `127.0.0.1:${await freePort()}`], { timeoutMs: 30_000, cwd: REPO_ROOT });
    expect(r.code, explain(r)).toBe(2);
    expect(r.stderr).toMatch(/onestack: error: cannot listen for NBD: fd 3 is not a socket/);
    expect(r.stdout).not.toMatch(/onestack: ready/);
  });
});
