// Acceptance (issue 4): an nbds:// element against `nbdkit --tls=require` — CA verification,
// client certificate — carries data on a raid1 with a local leg; a plaintext nbd:// element and
// one trusting the wrong CA are refused with a clear message naming the element.
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeTestPki, type TestPki } from './lib/certs.js';
import { Daemon } from './lib/daemon.js';
import { DATA_OFFSET_BYTES, MiB, firstDifference, removeDir, sparseFile, tempDir, writeConfig, type ElementSpec } from './lib/files.js';
import { qemuIo, qemuIoFailed } from './lib/peers.js';
import { explain, missingTools } from './lib/proc.js';
import { startNbdkit, type NbdkitPeer } from './lib/remotes.js';

const ELEMENT_BYTES = DATA_OFFSET_BYTES + 32 * MiB;
const missing = missingTools(['nbdkit', 'openssl', 'qemu-io']);

describe.skipIf(missing !== null)(`nbds:// elements against nbdkit --tls=require${missing !== null ? ` (skipped: ${missing})` : ''}`, () => {
  let dir = '';
  let pki: TestPki;
  let nbdkit: NbdkitPeer | null = null;
  const daemons: Daemon[] = [];
  const file = (name: string): string => path.join(dir, `${name}.img`);

  async function start(name: string, remote: ElementSpec): Promise<Daemon> {
    const sub = path.join(dir, name);
    const { configPath } = await writeConfig(dir, [{ name: `${name}-local`, sizeBytes: ELEMENT_BYTES }, remote], [
      { name: 'm', layout: 'raid1', elements: [`${name}-local`, remote.name] },
    ]);
    const d = await Daemon.start({ dataDir: path.join(sub, 'data'), configPath });
    daemons.push(d);
    return d;
  }

  async function refusal(name: string, remote: ElementSpec): Promise<string> {
    const err = await start(name, remote).then(() => null, (e: Error) => e.message);
    expect(err, 'the daemon must refuse to start').not.toBeNull();
    return err!;
  }

  beforeAll(async () => {
    dir = tempDir('tls-el');
    pki = await makeTestPki(path.join(dir, 'pki'));
    await sparseFile(file('remote'), ELEMENT_BYTES);
    // --tls-verify-peer: nbdkit demands a client certificate signed by its CA.
    nbdkit = await startNbdkit(['--tls=require', `--tls-certificates=${pki.dir}`, '--tls-verify-peer', 'file', file('remote')]);
  }, 60_000);

  afterAll(async () => {
    for (const d of daemons) await d.stop();
    await nbdkit?.stop();
    if (dir !== '') removeDir(dir);
  });

  it('raid1 of a local file and an nbds:// element (CA + client certificate): data lands on both legs', async () => {
    const d = await start('good', { name: 'tls0', uri: `nbds://127.0.0.1:${nbdkit!.port}/`, options: { tls: { ca: pki.caCert, cert: pki.clientCert, key: pki.clientKey }, timeoutMs: 5000 } });
    const r = await qemuIo(d.uri('m'), ['write -P 0x7e 1m 1m', 'read -P 0x7e 1m 1m', 'flush']);
    expect(qemuIoFailed(r), explain(r)).toBe(false);
    const status = await d.status();
    expect(status.volumes[0]).toMatchObject({ state: 'optimal' });
    expect(await firstDifference(file('good-local'), file('remote'), DATA_OFFSET_BYTES, 32 * MiB)).toBe(-1);
    expect(d.stdout + d.stderr).not.toContain('PRIVATE KEY');
    await d.stop();
  }, 60_000);

  it('plaintext nbd:// against the TLS-only server is refused, saying TLS is required', async () => {
    const msg = await refusal('plain', { name: 'plain0', uri: `nbd://127.0.0.1:${nbdkit!.port}/`, options: { timeoutMs: 3000 } });
    expect(msg).toMatch(/element plain0: cannot reach nbd:\/\/127\.0\.0\.1:\d+\/: .*TLS/i);
  }, 60_000);

  it('an nbds:// element that trusts another CA is refused (certificate verification)', async () => {
    const msg = await refusal('wrongca', { name: 'wrong0', uri: `nbds://127.0.0.1:${nbdkit!.port}/`, options: { tls: { ca: pki.otherCaCert, cert: pki.clientCert, key: pki.clientKey }, timeoutMs: 3000 } });
    expect(msg).toMatch(/element wrong0: cannot reach nbds:\/\/127\.0\.0\.1:\d+\/: .*(certificate|TLS)/i);
  }, 60_000);
});
