// nbds: the client against nbdkit --tls=require, with CA verification, a client certificate for
// --tls-verify-peer, and the failures a user must be able to read: wrong CA, no client
// certificate, plaintext against a TLS-only server, TLS against a server without TLS.

import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NbdClient, type NbdServer, createMemoryExport, createMemoryProvider, createNbdServer, listNbdExports } from '../src/index.js';
import { type TestPki, makeTestPki } from '../../../test/lib/certs.js';
import { type Peer, pattern, rejectsWith, startNbdkit } from './client-helpers.js';

let dir: string;
let pki: TestPki;
let tlsPeer: Peer;
let verifyPeer: Peer;
const clients: NbdClient[] = [];

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'onestack-nbd-tls-'));
  pki = await makeTestPki(join(dir, 'pki'));
  tlsPeer = await startNbdkit(['--tls=require', `--tls-certificates=${pki.dir}`, 'memory', '16M']);
  verifyPeer = await startNbdkit(['--tls=require', `--tls-certificates=${pki.dir}`, '--tls-verify-peer', 'memory', '16M']);
});

afterAll(async () => {
  await Promise.all(clients.map((c) => c.close()));
  await tlsPeer?.stop();
  await verifyPeer?.stop();
  rmSync(dir, { recursive: true, force: true });
});

const ca = (): string => readFileSync(pki.caCert, 'utf8');

async function roundTrip(c: NbdClient): Promise<void> {
  const data = pattern(new Uint8Array(1024 * 1024), 17);
  await c.write(65536, data, { fua: true });
  const back = new Uint8Array(data.length);
  await c.read(65536, back);
  expect(Buffer.compare(Buffer.from(back), Buffer.from(data))).toBe(0);
  await c.flush();
}

describe('nbds against nbdkit --tls=require', () => {
  it('upgrades with STARTTLS, verifies the server against the CA, and moves data', async () => {
    const c = await NbdClient.connect({ host: '127.0.0.1', port: tlsPeer.port, exportName: '', timeoutMs: 5000, tls: { ca: ca() } });
    clients.push(c);
    expect(c.info.sizeBytes).toBe(16 * 1024 * 1024);
    await roundTrip(c);
  });

  it('also verifies by DNS name (servername localhost) and with the CA as a Buffer', async () => {
    const c = await NbdClient.connect({
      host: '127.0.0.1', port: tlsPeer.port, exportName: '', timeoutMs: 5000, tls: { ca: readFileSync(pki.caCert), servername: 'localhost' },
    });
    clients.push(c);
    await roundTrip(c);
  });

  it('lists exports over TLS', async () => {
    const list = await listNbdExports({ host: '127.0.0.1', port: tlsPeer.port, timeoutMs: 5000, tls: { ca: ca() } });
    expect(list.map((e) => e.name)).toEqual(['']);
  });

  it('rejects a server certificate from another CA with ETLS', async () => {
    const started = Date.now();
    const err = await rejectsWith(
      NbdClient.connect({ host: '127.0.0.1', port: tlsPeer.port, exportName: '', timeoutMs: 5000, tls: { ca: readFileSync(pki.otherCaCert, 'utf8') } }),
      ['ETLS'],
    );
    expect(err.message).toMatch(/certificate is not trusted/);
    expect(err.message).toContain(`127.0.0.1:${tlsPeer.port}`);
    expect(Date.now() - started).toBeLessThan(3000);
  });

  it('rejects a certificate for another name with ETLS', async () => {
    const err = await rejectsWith(
      NbdClient.connect({ host: '127.0.0.1', port: tlsPeer.port, exportName: '', timeoutMs: 5000, tls: { ca: ca(), servername: 'example.com' } }),
      ['ETLS'],
    );
    expect(err.message).toMatch(/example\.com/);
  });

  it('plaintext against a TLS-only server fails with ETLS saying TLS is required', async () => {
    const err = await rejectsWith(NbdClient.connect({ host: '127.0.0.1', port: tlsPeer.port, exportName: '', timeoutMs: 5000 }), ['ETLS']);
    expect(err.message).toMatch(/requires TLS \(use nbds:\/\/\)/);
    const listErr = await rejectsWith(listNbdExports({ host: '127.0.0.1', port: tlsPeer.port, timeoutMs: 5000 }), ['ETLS']);
    expect(listErr.message).toMatch(/requires TLS/);
  });
});

describe('nbds with --tls-verify-peer', () => {
  it('connects with a client certificate signed by the CA', async () => {
    const c = await NbdClient.connect({
      host: '127.0.0.1', port: verifyPeer.port, exportName: '', timeoutMs: 5000,
      tls: { ca: ca(), cert: readFileSync(pki.clientCert), key: readFileSync(pki.clientKey) },
    });
    clients.push(c);
    await roundTrip(c);
  });

  it('without a client certificate fails with EAUTH, and the key never appears in messages', async () => {
    const err = await rejectsWith(
      NbdClient.connect({ host: '127.0.0.1', port: verifyPeer.port, exportName: '', timeoutMs: 5000, tls: { ca: ca() } }),
      ['EAUTH'],
    );
    expect(err.message).toContain(`127.0.0.1:${verifyPeer.port}`);
    expect(err.message).toMatch(/client certificate/);
    const withBadKey = await rejectsWith(
      NbdClient.connect({ host: '127.0.0.1', port: verifyPeer.port, exportName: '', timeoutMs: 5000, tls: { ca: ca(), cert: readFileSync(pki.clientCert), key: readFileSync(pki.serverKey) } }),
      ['ETLS', 'EAUTH'],
    );
    const keyText = readFileSync(pki.serverKey, 'utf8').split('\n')[1] ?? 'unused';
    expect(withBadKey.message).not.toContain(keyText);
  });
});

describe('nbds against onestack\'s own server (FORCEDTLS, client certificates verified)', () => {
  let server: NbdServer;
  let port: number;

  beforeAll(async () => {
    const tls = { cert: readFileSync(pki.serverCert), key: readFileSync(pki.serverKey), ca: readFileSync(pki.caCert), require: true, verifyClient: true };
    server = createNbdServer(createMemoryProvider([createMemoryExport('disk0', 4 * 1024 * 1024)]), { tls });
    port = (await server.listen('127.0.0.1', 0)).port;
  });

  afterAll(async () => {
    await Promise.all(clients.splice(0).map((c) => c.close()));
    await server.close();
  });

  it('connects with a client certificate and moves data; without one it fails with EAUTH; plaintext gets ETLS', async () => {
    const c = await NbdClient.connect({
      host: '127.0.0.1', port, exportName: 'disk0', timeoutMs: 5000, connections: 2,
      tls: { ca: ca(), cert: readFileSync(pki.clientCert), key: readFileSync(pki.clientKey) },
    });
    clients.push(c);
    expect(server.connectionCount).toBe(2);
    await roundTrip(c);
    await rejectsWith(NbdClient.connect({ host: '127.0.0.1', port, exportName: 'disk0', timeoutMs: 5000, tls: { ca: ca() } }), ['EAUTH']);
    await rejectsWith(NbdClient.connect({ host: '127.0.0.1', port, exportName: 'disk0', timeoutMs: 5000 }), ['ETLS']);
  });
});

describe('nbds against a server without TLS', () => {
  let server: NbdServer;
  let port: number;

  beforeAll(async () => {
    server = createNbdServer(createMemoryProvider([createMemoryExport('disk0', 1024 * 1024)]));
    port = (await server.listen('127.0.0.1', 0)).port;
  });

  afterAll(async () => {
    await server.close();
  });

  it('fails with ETLS saying the server does not support TLS', async () => {
    const err = await rejectsWith(NbdClient.connect({ host: '127.0.0.1', port, exportName: 'disk0', timeoutMs: 5000, tls: { ca: ca() } }), ['ETLS']);
    expect(err.message).toMatch(/does not support TLS/);
  });
});
