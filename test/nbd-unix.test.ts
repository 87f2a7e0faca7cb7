// Acceptance (issue 9): a Unix-socket export. `onestack serve --nbd unix:PATH` and config
// `nbd.listen: unix:PATH` serve `nbdinfo 'nbd+unix:///default?socket=PATH'` and qemu-io pattern
// I/O; nbd.allow (TCP only) does not lock the socket out; a socket left by a SIGKILL is
// replaced, a live one or a regular file at the path is refused with a clear error.
import { existsSync, statSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLI_MAIN, REPO_ROOT, cliBuilt } from './lib/daemon.js';
import { GiB, MiB, removeDir, tempDir, writeConfig } from './lib/files.js';
import { nbdinfo, qemuIo, qemuIoFailed } from './lib/peers.js';
import { explain, freePort, missingTools, run } from './lib/proc.js';
import { apiStatus, startServe, type ServeProc } from './lib/serve-proc.js';

const skipReason = !cliBuilt() ? 'daemon not built (run `pnpm run build`)' : missingTools(['nbdinfo', 'qemu-io']);
const unixUri = (socket: string, name = 'default'): string => `nbd+unix:///${name}?socket=${socket}`;

async function serveUnix(dataDir: string, socket: string, extra: readonly string[] = []): Promise<{ proc: ServeProc; apiPort: number }> {
  const apiPort = await freePort();
  const proc = await startServe({
    cmd: process.execPath,
    args: [CLI_MAIN, 'serve', '--data-dir', dataDir, '--nbd', `unix:${socket}`, '--api', `127.0.0.1:${apiPort}`, ...extra],
  });
  return { proc, apiPort };
}

/** 1 MiB pattern writes then reads over one qemu-io connection each. */
async function patternRoundTrip(uri: string, count: number, seed: number): Promise<void> {
  const pattern = (i: number): string => `0x${((seed + i) % 255 + 1).toString(16)}`;
  const w = await qemuIo(uri, Array.from({ length: count }, (_, i) => `write -P ${pattern(i)} ${i * MiB} 1M`));
  expect(qemuIoFailed(w), explain(w)).toBe(false);
  const r = await qemuIo(uri, Array.from({ length: count }, (_, i) => `read -P ${pattern(i)} ${i * MiB} 1M`));
  expect(qemuIoFailed(r), explain(r)).toBe(false);
}

describe.skipIf(skipReason !== null)(`--nbd unix:PATH (embedded default volume)${skipReason === null ? '' : ` — skipped: ${skipReason}`}`, () => {
  let dir = '';
  let socket = '';
  let running: { proc: ServeProc; apiPort: number } | null = null;
  beforeAll(async () => {
    dir = tempDir('nbd-unix');
    socket = path.join(dir, 'nbd.sock');
    running = await serveUnix(path.join(dir, 'data'), socket);
  });
  afterAll(async () => {
    await running?.proc.stop();
    if (dir !== '') removeDir(dir);
  });
  const proc = (): ServeProc => {
    if (running === null) throw new Error('daemon not started (see the beforeAll error)');
    return running.proc;
  };

  it('creates the socket with mode 0660 and prints nbd+unix:///default?socket=PATH in the banner', () => {
    const st = statSync(socket);
    expect(st.isSocket()).toBe(true);
    expect(st.mode & 0o777).toBe(0o660);
    expect(proc().stdout).toContain(unixUri(socket));
    expect(proc().stderr).toMatch(/nbd: listening on unix:\S+nbd\.sock .*allow: not applied/);
  });

  it('nbdinfo over the socket shows the 1 GiB volume and its flags', async () => {
    const info = await nbdinfo(unixUri(socket));
    const e = info.exports[0];
    expect(e?.['export-size']).toBe(1 * GiB);
    expect(e?.is_read_only).toBe(false);
    expect(e?.can_flush).toBe(true);
    const list = await nbdinfo(`nbd+unix:///?socket=${socket}`, ['--list']);
    expect(list.exports.map((x) => x['export-name'])).toContain('default');
  });

  it('qemu-io pattern writes and reads over the socket; payloads are read in place (no copy per request)', async () => {
    await patternRoundTrip(unixUri(socket), 16, 0x10);
    const io = (await apiStatus(running!.apiPort, path.join(dir, 'data'))).io as { copies?: { requests: number; copies: number; bytesCopied: number } } | undefined;
    expect(io?.copies, 'status io.copies').toBeDefined();
    // Same bound as zero-copy.test.ts over TCP: only bytes that arrived with a header are copied.
    expect(io!.copies!.requests).toBeGreaterThanOrEqual(32);
    expect(io!.copies!.bytesCopied).toBeLessThan(16 * MiB);
    // status says where NBD is served, so `onestack bench --volume` finds the socket.
    const nbd = (await apiStatus(running!.apiPort, path.join(dir, 'data'))).nbd as { listen?: string[] } | undefined;
    expect(nbd?.listen).toEqual([`unix:${socket}`]);
  });

  it('a second daemon on the same live socket is refused (in use) and the first keeps serving', async () => {
    const r = await run(process.execPath, [CLI_MAIN, 'serve', '--data-dir', path.join(dir, 'data2'), '--nbd', `unix:${socket}`, '--api', `127.0.0.1:${await freePort()}`],
      { timeoutMs: 30_000, cwd: REPO_ROOT });
    expect(r.code, explain(r)).toBe(1);
    expect(r.stderr).toMatch(/onestack: error: cannot listen on unix:\S+nbd\.sock for NBD \(EADDRINUSE\)/);
    expect((await nbdinfo(unixUri(socket))).exports[0]?.['export-size']).toBe(1 * GiB);
  });

  it('a socket left by SIGKILL is replaced on the next start; the data written before is there', async () => {
    proc().child.kill('SIGKILL');
    await proc().stop();
    expect(statSync(socket).isSocket(), 'SIGKILL leaves the socket file behind').toBe(true);
    running = await serveUnix(path.join(dir, 'data'), socket);
    const r = await qemuIo(unixUri(socket), ['read -P 0x11 0 1M', 'read -P 0x20 15M 1M']);
    expect(qemuIoFailed(r), explain(r)).toBe(false);
  });

  it('a clean stop removes the socket file', async () => {
    const stopped = await proc().stop();
    expect(stopped.code).toBe(0);
    expect(existsSync(socket)).toBe(false);
  });
});

describe.skipIf(skipReason !== null)('config nbd.listen: unix:PATH (relative to the config file), with nbd.allow set', () => {
  let dir = '';
  let proc: ServeProc | null = null;
  beforeAll(async () => {
    dir = tempDir('nbd-unix-config');
    // 192.0.2.0/24 (TEST-NET-1) contains no address of this machine: TCP clients would be refused.
    const { configPath } = await writeConfig(dir, [{ name: 's0', sizeBytes: 64 * MiB }, { name: 's1', sizeBytes: 64 * MiB }, { name: 's2', sizeBytes: 64 * MiB }],
      [{ name: 'r5', layout: 'raid5', elements: ['s0', 's1', 's2'], chunkKiB: 64, boot: true }],
      ['nbd:', '  listen: "unix:nbd.sock"', '  allow: ["192.0.2.0/24"]']);
    proc = await startServe({
      cmd: process.execPath,
      args: [CLI_MAIN, 'serve', '--config', configPath, '--data-dir', path.join(dir, 'data'), '--api', `127.0.0.1:${await freePort()}`],
    });
  });
  afterAll(async () => {
    await proc?.stop();
    if (dir !== '') removeDir(dir);
  });

  it('listens at CONFIG_DIR/nbd.sock; nbd.allow does not lock out the Unix socket', async () => {
    const socket = path.join(dir, 'nbd.sock');
    expect(statSync(socket).isSocket()).toBe(true);
    const info = await nbdinfo(unixUri(socket, 'r5'));
    expect(info.exports[0]?.['export-size']).toBe(2 * 60 * MiB);
    // raid5 over 3 elements, 64 KiB chunks: the full stripe (2 data chunks) is preferred.
    expect(info.exports[0]?.block_size_preferred).toBe(128 * 1024);
    await patternRoundTrip(unixUri(socket, 'r5'), 4, 0x40);
    expect(proc?.stderr ?? '', 'no connection was refused').not.toMatch(/refusing connection/);
  });
});

describe.skipIf(!cliBuilt())('refused socket paths: clear errors, nothing lost', () => {
  let dir = '';
  beforeAll(() => { dir = tempDir('nbd-unix-bad'); });
  afterAll(() => { if (dir !== '') removeDir(dir); });

  it('a regular file at the path: exit 2 naming it, the file untouched', async () => {
    const file = path.join(dir, 'precious.txt');
    await writeFile(file, 'keep me\n');
    const r = await run(process.execPath, [CLI_MAIN, 'serve', '--data-dir', path.join(dir, 'data'), '--nbd', `unix:${file}`, '--api', `127.0.0.1:${await freePort()}`],
      { timeoutMs: 30_000, cwd: REPO_ROOT });
    expect(r.code, explain(r)).toBe(2);
    expect(r.stderr).toMatch(/onestack: error: cannot listen on unix:\S+precious\.txt for NBD: \S+precious\.txt exists and is not a socket; refusing to replace it/);
    expect(r.stdout).not.toMatch(/onestack: ready/);
    expect(await readFile(file, 'utf8')).toBe('keep me\n');
  });

  it('a socket in a directory that does not exist: exit 2 saying so', async () => {
    const socket = path.join(dir, 'no-such-dir', 'nbd.sock');
    const r = await run(process.execPath, [CLI_MAIN, 'serve', '--data-dir', path.join(dir, 'data2'), '--nbd', `unix:${socket}`, '--api', `127.0.0.1:${await freePort()}`],
      { timeoutMs: 30_000, cwd: REPO_ROOT });
    expect(r.code, explain(r)).toBe(2);
    expect(r.stderr).toMatch(/onestack: error: cannot listen on unix:\S+no-such-dir\/nbd\.sock for NBD: the directory \S+no-such-dir does not exist \(for the Unix socket /);
    expect(r.stderr).toMatch(/hint: the socket's directory must exist/);
  });

  it('config nbd.listen "unix:" without a path: exit 2 naming the field and its line', async () => {
    const configPath = path.join(dir, 'bad.yaml');
    await writeFile(configPath, 'nbd:\n  listen: "unix:"\n');
    const r = await run(process.execPath, [CLI_MAIN, 'serve', '--config', configPath, '--data-dir', path.join(dir, 'data3'), '--api', `127.0.0.1:${await freePort()}`],
      { timeoutMs: 30_000, cwd: REPO_ROOT });
    expect(r.code, explain(r)).toBe(2);
    expect(r.stderr).toMatch(/onestack: error: nbd\.listen: unix: needs a socket path \(\S*bad\.yaml:2:\d+ nbd\.listen\)/);
  });

  it('a socket path over 107 bytes: exit 2 before anything starts', async () => {
    const long = `unix:/tmp/${'x'.repeat(120)}.sock`;
    const r = await run(process.execPath, [CLI_MAIN, 'serve', '--data-dir', path.join(dir, 'data4'), '--nbd', long, '--api', `127.0.0.1:${await freePort()}`],
      { timeoutMs: 30_000, cwd: REPO_ROOT });
    expect(r.code, explain(r)).toBe(2);
    expect(r.stderr).toMatch(/--nbd: socket path .* is longer than 107 bytes/);
  });
});
