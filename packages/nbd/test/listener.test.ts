// The server's listeners: Unix socket paths (stale sockets replaced, live ones and other files
// refused, mode 0660, unlinked on close), inherited fds that are not sockets, and nbd.allow
// applying to TCP only.
// nbdinfo is the real peer.
import { closeSync, existsSync, mkdtempSync, openSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { type NbdServer, createMemoryExport, createMemoryProvider, createNbdServer, createPeerFilter } from '../src/index.js';
import { run } from './helpers.js';

const dir = mkdtempSync(path.join(tmpdir(), 'nbd-listener-'));
const servers: NbdServer[] = [];
afterEach(async () => { await Promise.all(servers.splice(0).map((s) => s.close())); });
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function newServer(allow: string[] = []): NbdServer {
  const server = createNbdServer(createMemoryProvider([createMemoryExport('disk0', 1 << 20)]), { allow });
  servers.push(server);
  return server;
}

async function sizeOver(uri: string): Promise<string> {
  const r = await run('nbdinfo', ['--size', uri], 20_000);
  expect(r.code, r.stderr).toBe(0);
  return r.stdout.trim();
}

describe('createPeerFilter', () => {
  it('matches TCP peers against the list and lets every Unix-socket peer through', () => {
    const allowed = createPeerFilter(['192.0.2.0/24']);
    expect(allowed('tcp', '192.0.2.7')).toBe(true);
    expect(allowed('tcp', '127.0.0.1')).toBe(false);
    expect(allowed('tcp', undefined)).toBe(false);
    expect(allowed('unix', undefined)).toBe(true);
  });
});

describe('Unix socket listener', () => {
  it('serves nbdinfo on a path with mode 0660 though nbd.allow excludes every local address; close unlinks it', async () => {
    const socketPath = path.join(dir, 'a.sock');
    const server = newServer(['192.0.2.0/24']);
    expect(await server.listenOn({ socketPath })).toEqual({ transport: 'unix', socketPath });
    expect(statSync(socketPath).mode & 0o777).toBe(0o660);
    expect(await sizeOver(`nbd+unix:///disk0?socket=${socketPath}`)).toBe(String(1 << 20));
    await server.close();
    expect(existsSync(socketPath)).toBe(false);
  });

  it('replaces a socket nobody answers on, refuses a live one (EADDRINUSE) and a regular file (EEXIST)', async () => {
    const socketPath = path.join(dir, 'b.sock');
    // A stale socket: a listener that died without unlinking. Node unlinks on close, so make one with python.
    const py = await run('/usr/bin/python3', ['-c', `import socket; s = socket.socket(socket.AF_UNIX); s.bind(${JSON.stringify(socketPath)})`]);
    expect(py.code, py.stderr).toBe(0);
    expect(statSync(socketPath).isSocket()).toBe(true);
    const first = newServer();
    await first.listenOn({ socketPath });
    expect(await sizeOver(`nbd+unix:///disk0?socket=${socketPath}`)).toBe(String(1 << 20));
    await expect(newServer().listenOn({ socketPath })).rejects.toMatchObject({ code: 'EADDRINUSE' });
    expect(await sizeOver(`nbd+unix:///disk0?socket=${socketPath}`)).toBe(String(1 << 20));

    const file = path.join(dir, 'file.txt');
    writeFileSync(file, 'data');
    await expect(newServer().listenOn({ socketPath: file })).rejects.toMatchObject({ code: 'EEXIST', message: expect.stringMatching(/is not a socket/) as unknown });
    expect(readFileSync(file, 'utf8')).toBe('data');
  });

  it('refuses a path longer than sun_path', async () => {
    await expect(newServer().listenOn({ socketPath: path.join(dir, 'x'.repeat(120)) })).rejects.toMatchObject({ code: 'ENAMETOOLONG' });
  });
});

describe('inherited fd listener', () => {
  // Taking over a real listening socket needs a second process (sharing one fd between two handles
  // of one process is not supported): test/socket-activation.test.ts does that end to end.
  it('refuses an fd that is not a socket (ENOTSOCK) and one that is not open (EBADF)', async () => {
    const file = path.join(dir, 'plain');
    writeFileSync(file, 'x');
    const fd = openSync(file, 'r');
    try {
      await expect(newServer().listenOn({ fd })).rejects.toMatchObject({ code: 'ENOTSOCK', message: expect.stringMatching(/is not a socket/) as unknown });
    } finally {
      closeSync(fd);
    }
    await expect(newServer().listenOn({ fd: 100_000 })).rejects.toMatchObject({ code: 'EBADF' });
  });
});
