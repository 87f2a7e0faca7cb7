// NBD_OPT_STARTTLS: real clients (nbdinfo, nbdcopy, qemu-img, qemu-io) over nbds:// against the
// memory export, plus raw-socket and in-process TLS clients for what real clients never send.

import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeTestPki, type TestPki } from '../../../test/lib/certs.js';
import {
  type MemoryExport, type NbdServer, type NbdServerOptions, Info, Opt, Rep, Size,
  ByteAccumulator, ServerHandshake, createMemoryExport, createMemoryProvider, createNbdServer,
  decodeOptionReply, encodeClientFlags, encodeInfoOption, encodeOption,
} from '../src/index.js';
import { RawClient, type RunResult, run, waitFor } from './helpers.js';

interface TlsServed {
  server: NbdServer;
  port: number;
  disk: MemoryExport;
  copy32: MemoryExport;
  logs: string[];
}

let dir: string;
let pki: TestPki;
/** libnbd's tls-certificates directory without client-cert.pem: the client shows no certificate. */
let caOnlyDir: string;
let rogue: { cert: Buffer; key: Buffer };
const servers: TlsServed[] = [];
const hasQemu = existsSync('/usr/bin/qemu-img') && existsSync('/usr/bin/qemu-io');
const QEMU_SKIP = hasQemu ? '' : ' [skipped: qemu-img/qemu-io not in /usr/bin; ./scripts/test.sh installs them]';

async function serveTls(tls: Partial<NonNullable<NbdServerOptions['tls']>>, options: NbdServerOptions = {}): Promise<TlsServed> {
  const disk = createMemoryExport('disk0', 8 * 1024 * 1024, { description: 'tls disk' });
  const copy32 = createMemoryExport('copy32', 32 * 1024 * 1024);
  const logs: string[] = [];
  const server = createNbdServer(createMemoryProvider([disk, copy32]), {
    ...options,
    tls: { cert: readFileSync(pki.serverCert), key: readFileSync(pki.serverKey), ca: readFileSync(pki.caCert), require: true, ...tls },
    log: (level, msg) => logs.push(`${level} ${msg}`),
  });
  const { port } = await server.listen('127.0.0.1', 0);
  const served = { server, port, disk, copy32, logs };
  servers.push(served);
  return served;
}

function nbds(s: TlsServed, name = 'disk0', certDir = pki.dir): string {
  return `nbds://127.0.0.1:${s.port}/${name}?tls-certificates=${certDir}`;
}

/** run() with extra environment: LIBNBD_DEBUG shows the server's error text libnbd otherwise hides. */
function runEnv(file: string, args: readonly string[], env: NodeJS.ProcessEnv): Promise<RunResult> {
  return new Promise((resolve) => {
    execFile(file, args, { timeout: 20_000, env: { ...process.env, PATH: `/usr/bin:${process.env.PATH ?? ''}`, ...env }, encoding: 'utf8' }, (err, stdout, stderr) => {
      resolve({ code: err === null ? 0 : typeof err.code === 'number' ? err.code : -1, stdout, stderr });
    });
  });
}

async function readOptionReply(c: RawClient): Promise<{ option: number; replyType: number }> {
  const header = await c.read(Size.OPTION_REPLY_HEADER);
  const data = await c.read(new DataView(header.buffer).getUint32(16));
  const d = decodeOptionReply(new Uint8Array([...header, ...data]), 1 << 20);
  if (d.kind !== 'value') throw new Error('bad option reply');
  return { option: d.value.option, replyType: d.value.replyType };
}

/** Greeting, client flags, STARTTLS; resolves once the server has answered it with ACK. */
async function startTlsRaw(port: number): Promise<RawClient> {
  const c = await RawClient.open(port);
  await c.read(Size.GREETING);
  c.write(encodeClientFlags());
  c.write(encodeOption(Opt.STARTTLS));
  expect(await readOptionReply(c)).toEqual({ option: Opt.STARTTLS, replyType: Rep.ACK });
  return c;
}

/** An in-process TLS client after STARTTLS; resolves with the secured socket or the error. */
async function nodeTlsClient(port: number, identity?: { cert: Buffer; key: Buffer }): Promise<{ client: RawClient; socket: TLSSocket }> {
  const raw = await startTlsRaw(port);
  const socket = tlsConnect({ socket: raw.socket, ca: readFileSync(pki.caCert), servername: 'localhost', ...identity });
  const client = RawClient.adopt(socket);
  await new Promise<void>((resolve, reject) => {
    socket.once('secureConnect', resolve);
    socket.once('error', reject);
  });
  return { client, socket };
}

const sha256 = (bytes: Uint8Array): string => createHash('sha256').update(bytes).digest('hex');

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'onestack-nbd-tls-'));
  pki = await makeTestPki(join(dir, 'pki'));
  caOnlyDir = join(dir, 'ca-only');
  mkdirSync(caOnlyDir);
  copyFileSync(pki.caCert, join(caOnlyDir, 'ca-cert.pem'));
  // A client certificate from the other CA: well-formed, but not signed by `ca`.
  const key = join(dir, 'rogue-key.pem');
  const csr = join(dir, 'rogue.csr');
  const cert = join(dir, 'rogue-cert.pem');
  for (const args of [
    ['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', key, '-out', csr, '-subj', '/CN=rogue'],
    ['x509', '-req', '-in', csr, '-CA', pki.otherCaCert, '-CAkey', join(pki.dir, 'other-key.pem'), '-CAcreateserial', '-out', cert, '-days', '2'],
  ]) {
    const r = await run('openssl', args);
    expect(r.code, r.stderr).toBe(0);
  }
  rogue = { cert: readFileSync(cert), key: readFileSync(key) };
});

afterAll(async () => {
  await Promise.all(servers.map((s) => s.server.close()));
  // Keys and certificates never reach a log line.
  const secrets = [pki.serverKey, pki.serverCert, pki.clientKey].map((f) => readFileSync(f, 'utf8').split('\n')[1] ?? 'x');
  for (const s of servers) {
    for (const line of s.logs) for (const secret of secrets) expect(line).not.toContain(secret);
    for (const e of [s.disk, s.copy32]) expect(e.outstanding()).toEqual({ reads: 0, writeBuffers: 0 });
  }
  rmSync(dir, { recursive: true, force: true });
});

describe('FORCEDTLS (require: true)', () => {
  let s: TlsServed;
  beforeAll(async () => { s = await serveTls({ require: true }); });

  it('nbdinfo over nbds:// sees the export, with TLS and structured replies', async () => {
    const r = await run('nbdinfo', ['--json', nbds(s)]);
    expect(r.code, r.stderr).toBe(0);
    const info = JSON.parse(r.stdout) as { TLS: boolean; structured: boolean; exports: Record<string, unknown>[] };
    expect(info.TLS).toBe(true);
    expect(info.structured).toBe(true);
    expect(info.exports[0]).toMatchObject({ 'export-name': 'disk0', 'export-size': 8 * 1024 * 1024, description: 'tls disk' });
    expect(s.logs.some((l) => /TLS established \(TLSv1\.[23] /.test(l))).toBe(true);
  });

  it('nbdcopy writes 32 MiB in and reads it back over TLS, byte for byte', async () => {
    const src = join(dir, 'src.img');
    const back = join(dir, 'back.img');
    const bytes = randomBytes(32 * 1024 * 1024);
    writeFileSync(src, bytes);
    const put = await run('nbdcopy', [src, nbds(s, 'copy32')]);
    expect(put.code, put.stderr).toBe(0);
    expect(sha256(s.copy32.data)).toBe(sha256(bytes));
    const get = await run('nbdcopy', [nbds(s, 'copy32'), back]);
    expect(get.code, get.stderr).toBe(0);
    expect(sha256(readFileSync(back))).toBe(sha256(bytes));
  });

  it('plaintext nbdinfo is refused with a TLS-required message, --list too', async () => {
    const plain = await runEnv('nbdinfo', [`nbd://127.0.0.1:${s.port}/disk0`], { LIBNBD_DEBUG: '1' });
    expect(plain.code).not.toBe(0);
    // libnbd 1.14 reports ERR_TLS_REQD as "Operation not supported"; the server's text is in its debug output.
    expect(plain.stderr).toMatch(/server error message: TLS is required/);
    const list = await run('nbdinfo', ['--list', `nbd://127.0.0.1:${s.port}/`]);
    expect(list.code).not.toBe(0);
    expect(list.stdout).not.toMatch(/disk0/);
  });

  it.skipIf(!hasQemu)(`qemu-img without tls-creds is told TLS is required${QEMU_SKIP}`, async () => {
    const r = await run('qemu-img', ['info', `nbd://127.0.0.1:${s.port}/disk0`]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/TLS negotiation required/);
    expect(r.stderr).toMatch(/TLS is required: send NBD_OPT_STARTTLS first/);
  });

  it('before STARTTLS: LIST, INFO, STRUCTURED_REPLY and unknown options get ERR_TLS_REQD; EXPORT_NAME closes', async () => {
    const c = await RawClient.open(s.port);
    await c.read(Size.GREETING);
    c.write(encodeClientFlags());
    for (const [option, bytes] of [
      [Opt.LIST, encodeOption(Opt.LIST)], [Opt.INFO, encodeInfoOption(Opt.INFO, 'disk0', [])],
      [Opt.STRUCTURED_REPLY, encodeOption(Opt.STRUCTURED_REPLY)], [0x1234, encodeOption(0x1234)],
    ] as const) {
      c.write(bytes);
      expect(await readOptionReply(c)).toEqual({ option, replyType: Rep.ERR_TLS_REQD });
    }
    c.write(encodeOption(Opt.EXPORT_NAME, new TextEncoder().encode('disk0')));
    expect(await c.waitClosed()).toBe(true);
  });

  it('bytes pipelined behind STARTTLS get no ACK: the connection closes', async () => {
    const c = await RawClient.open(s.port);
    await c.read(Size.GREETING);
    c.write(new Uint8Array([...encodeClientFlags(), ...encodeOption(Opt.STARTTLS), ...encodeOption(Opt.LIST)]));
    expect(await c.waitClosed()).toBe(true);
    await expect(c.read(1, 100)).rejects.toThrow(/closed/);
    expect(s.logs.some((l) => l.includes('data sent after NBD_OPT_STARTTLS'))).toBe(true);
  });

  it('plaintext garbage after the STARTTLS ack closes that connection, logged once; others still get served', async () => {
    const before = s.logs.filter((l) => l.includes('TLS handshake failed')).length;
    const c = await startTlsRaw(s.port);
    c.write(new TextEncoder().encode('GET / HTTP/1.0\r\n\r\n'.repeat(20)));
    expect(await c.waitClosed()).toBe(true);
    expect(await waitFor(() => s.logs.filter((l) => l.includes('TLS handshake failed')).length === before + 1)).toBe(true);
    // One short line: no OpenSSL pointer dump or source path.
    expect(s.logs.filter((l) => l.includes('TLS handshake failed')).at(-1)).not.toMatch(/\n|statem|\.c:\d+/);
    const r = await run('nbdinfo', ['--size', nbds(s)]);
    expect(r.stdout.trim(), r.stderr).toBe(String(8 * 1024 * 1024));
  });

  it('over TLS: a second STARTTLS gets ERR_INVALID, options then work and GO enters transmission', async () => {
    const { client, socket } = await nodeTlsClient(s.port);
    client.write(encodeOption(Opt.STARTTLS));
    expect(await readOptionReply(client)).toEqual({ option: Opt.STARTTLS, replyType: Rep.ERR_INVALID });
    client.write(encodeOption(Opt.LIST));
    const types = [(await readOptionReply(client)).replyType, (await readOptionReply(client)).replyType, (await readOptionReply(client)).replyType];
    expect(types).toEqual([Rep.SERVER, Rep.SERVER, Rep.ACK]);
    client.write(encodeInfoOption(Opt.GO, 'disk0', []));
    expect((await readOptionReply(client)).replyType).toBe(Rep.INFO);
    expect((await readOptionReply(client)).replyType).toBe(Rep.ACK);
    socket.destroy();
  });
});

describe('verifyClient: client certificates signed by ca', () => {
  let s: TlsServed;
  beforeAll(async () => { s = await serveTls({ require: true, verifyClient: true }); });

  it('nbdinfo without a client certificate is refused; with one it gets through', async () => {
    const without = await run('nbdinfo', ['--size', nbds(s, 'disk0', caOnlyDir)]);
    expect(without.code).not.toBe(0);
    expect(without.stdout).toBe('');
    expect(await waitFor(() => s.logs.some((l) => /TLS handshake failed: peer did not return a certificate/.test(l)))).toBe(true);
    const withCert = await run('nbdinfo', ['--size', nbds(s)]);
    expect(withCert.stdout.trim(), withCert.stderr).toBe(String(8 * 1024 * 1024));
    expect(s.logs.some((l) => l.includes('client certificate verified'))).toBe(true);
  });

  it('a certificate from another CA completes the TLS handshake but is refused before any option', async () => {
    // gnutls (libnbd, qemu) does not even send a certificate the server's CA list does not name,
    // so only a Node client can present one: the case a standalone TLSSocket lets through.
    const { client, socket } = await nodeTlsClient(s.port, rogue);
    client.write(encodeOption(Opt.LIST));
    expect(await client.waitClosed()).toBe(true);
    await expect(client.read(1, 100)).rejects.toThrow(/closed/);
    expect(await waitFor(() => s.logs.some((l) => l.includes('client certificate refused')))).toBe(true);
    socket.destroy();
  });

  it.skipIf(!hasQemu)(`qemu-io writes and reads back through tls-creds-x509 with a client certificate${QEMU_SKIP}`, async () => {
    const opts = (certDir: string): string[] => [
      '--object', `tls-creds-x509,id=tls0,dir=${certDir},endpoint=client`,
      '--image-opts', `driver=nbd,host=127.0.0.1,port=${s.port},export=disk0,tls-creds=tls0`,
    ];
    const io = await run('qemu-io', [...opts(pki.dir), '-c', 'write -P 0x5a 1M 64k', '-c', 'read -P 0x5a 1M 64k']);
    expect(io.code, io.stdout + io.stderr).toBe(0);
    expect(io.stdout).not.toMatch(/verification failed/);
    expect(s.disk.data[1024 * 1024]).toBe(0x5a);
    const info = await run('qemu-img', ['info', ...opts(pki.dir)]);
    expect(info.stdout, info.stderr).toMatch(/virtual size: 8 MiB/);
    const refused = await run('qemu-io', [...opts(caOnlyDir), '-c', 'read 0 4k']);
    expect(refused.code).not.toBe(0);
  });
});

describe('SELECTIVETLS (require: false)', () => {
  let s: TlsServed;
  beforeAll(async () => { s = await serveTls({ require: false }); });

  it('plaintext and nbds:// clients both get through; LIST works in plaintext', async () => {
    const plain = await run('nbdinfo', ['--json', `nbd://127.0.0.1:${s.port}/disk0`]);
    expect(plain.code, plain.stderr).toBe(0);
    expect(JSON.parse(plain.stdout).TLS).toBe(false);
    const secure = await run('nbdinfo', ['--json', nbds(s)]);
    expect(secure.code, secure.stderr).toBe(0);
    expect(JSON.parse(secure.stdout).TLS).toBe(true);
    const list = await run('nbdinfo', ['--list', '--json', `nbd://127.0.0.1:${s.port}/`]);
    expect((JSON.parse(list.stdout).exports as { 'export-name': string }[]).map((e) => e['export-name'])).toEqual(['disk0', 'copy32']);
  });
});

describe('handshake timeout across the upgrade', () => {
  it('a client that stalls after the STARTTLS ack is dropped', async () => {
    const s = await serveTls({ require: true }, { handshakeTimeoutMs: 300 });
    const c = await startTlsRaw(s.port);
    const startedMs = Date.now();
    expect(await c.waitClosed(3000)).toBe(true);
    expect(Date.now() - startedMs).toBeLessThan(2000);
    expect(s.logs.some((l) => l.includes('handshake timed out'))).toBe(true);
  });
});

describe('server set-up and the socket-free machine', () => {
  it('a key that does not match the certificate fails at creation, without key material in the error', () => {
    const provider = createMemoryProvider([]);
    const create = (): NbdServer => createNbdServer(provider, { tls: { cert: readFileSync(pki.serverCert), key: readFileSync(pki.clientKey), require: true } });
    expect(create).toThrow(/NBD TLS: cannot use the certificate, key or CA/);
    try { create(); } catch (err) { expect((err as Error).message).not.toContain('BEGIN'); }
    expect(() => createNbdServer(provider, { tls: { cert: pki.serverCert, key: pki.serverKey, require: true, verifyClient: true } })).toThrow(/verifyClient needs ca/);
  });

  function machine(tls: 'optional' | 'required'): { feed(bytes: Uint8Array): { kind: string; structured?: boolean }; replies(): number[] } {
    const m = new ServerHandshake({ provider: createMemoryProvider([createMemoryExport('d', 1 << 20)]), optionDataMaxBytes: 65536, optionsMax: 16, tls });
    const acc = new ByteAccumulator(1 << 20);
    let out: Uint8Array[] = [];
    return {
      feed(bytes) {
        acc.push(bytes);
        const step = m.advance(acc);
        out = m.output.splice(0);
        return step.kind === 'transmission' ? { kind: step.kind, structured: step.setup.structuredReplies } : { kind: step.kind };
      },
      replies: () => out.map((b) => new DataView(b.buffer, b.byteOffset).getUint32(12)),
    };
  }

  it('structured replies negotiated in plaintext do not survive STARTTLS (no injection across the upgrade)', () => {
    const m = machine('optional');
    m.feed(encodeClientFlags());
    m.feed(encodeOption(Opt.STRUCTURED_REPLY));
    expect(m.replies()).toEqual([Rep.ACK]);
    expect(m.feed(encodeOption(Opt.STARTTLS)).kind).toBe('starttls');
    expect(m.replies()).toEqual([Rep.ACK]);
    expect(m.feed(encodeInfoOption(Opt.GO, 'd', [Info.BLOCK_SIZE]))).toEqual({ kind: 'transmission', structured: false });
  });

  it('FORCEDTLS: a malformed STARTTLS is ERR_INVALID (not TLS_REQD); a client without fixed newstyle is closed', () => {
    const m = machine('required');
    m.feed(encodeClientFlags());
    m.feed(encodeOption(Opt.STARTTLS, new Uint8Array(3)));
    expect(m.replies()).toEqual([Rep.ERR_INVALID]);
    m.feed(encodeOption(Opt.ABORT));
    expect(m.replies()).toEqual([Rep.ACK]);
    expect(machine('required').feed(encodeClientFlags(0)).kind).toBe('close');
    expect(machine('optional').feed(encodeClientFlags(0)).kind).toBe('need-more');
  });
});
