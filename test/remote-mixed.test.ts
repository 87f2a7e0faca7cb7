// Acceptance (issue 4): volumes over a mix of local files and remote elements served by real
// peers — nbdkit (NBD) and tgtd (iSCSI with CHAP) — carry a 256 MiB nbdcopy round trip with
// equal sha256, and afterwards every mirror leg holds the same bytes, read straight from the
// local image and from the files behind nbdkit and tgtd.
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Daemon } from './lib/daemon.js';
import { DATA_OFFSET_BYTES, MiB, firstDifference, randomFile, removeDir, sha256Range, sparseFile, tempDir, writeConfig } from './lib/files.js';
import { nbdcopy, qemuIo, qemuIoFailed } from './lib/peers.js';
import { explain, missingTools } from './lib/proc.js';
import { startNbdkit, startTgtd, type NbdkitPeer, type TgtdPeer } from './lib/remotes.js';

const COPY_BYTES = 256 * MiB;
const ELEMENT_BYTES = DATA_OFFSET_BYTES + COPY_BYTES + 16 * MiB;
const CHAP = { user: 'alice', secret: 'mixed-volumes-secret-42' };
const missing = missingTools(['nbdkit', 'tgtd', 'tgtadm', 'nbdcopy', 'qemu-io']);

describe.skipIf(missing !== null)(`mixed local + remote volumes${missing !== null ? ` (skipped: ${missing})` : ''}`, () => {
  let dir = '';
  let nbdkit: NbdkitPeer | null = null;
  let tgtd: TgtdPeer | null = null;
  let daemon: Daemon | null = null;
  const file = (name: string): string => path.join(dir, `${name}.img`);

  beforeAll(async () => {
    dir = tempDir('mixed');
    for (const name of ['n0', 'n1', 'i0', 'i1']) await sparseFile(file(name), ELEMENT_BYTES);
    // nbdkit's file plugin with dir= serves every file of the directory under its own name.
    nbdkit = await startNbdkit(['file', `dir=${dir}`]);
    tgtd = await startTgtd({ backingFiles: [file('i0'), file('i1')], chap: CHAP });
    const secretFile = path.join(dir, 'chap.secret');
    writeFileSync(secretFile, `${CHAP.secret}\n`, { mode: 0o600 });
    const remote = (name: string, uri: string, options: Record<string, string | number> = {}) => ({ name, uri, options: { timeoutMs: 10_000, ...options } });
    const { configPath } = await writeConfig(dir, [
      { name: 'l0', sizeBytes: ELEMENT_BYTES }, { name: 'l1', sizeBytes: ELEMENT_BYTES },
      { name: 'l2', sizeBytes: ELEMENT_BYTES }, { name: 'l3', sizeBytes: ELEMENT_BYTES },
      remote('rn0', `nbd://127.0.0.1:${nbdkit.port}/n0.img`),
      remote('rn1', `nbd://127.0.0.1:${nbdkit.port}/n1.img`),
      remote('ri0', tgtd.uri(CHAP.user, 1), { secretFile }),
      remote('ri1', tgtd.uri(CHAP.user, 2), { secretFile }),
    ], [
      { name: 'mnbd', layout: 'raid1', elements: ['l0', 'rn0'] },
      { name: 'miscsi', layout: 'raid1', elements: ['l1', 'ri0'] },
      // pairs (l2, rn1) and (l3, ri1): each pair mirrors a local disk onto a network disk
      { name: 'r10', layout: 'raid10', elements: ['l2', 'rn1', 'l3', 'ri1'], chunkKiB: 64 },
    ]);
    daemon = await Daemon.start({ dataDir: path.join(dir, 'data'), configPath, env: { ONESTACK_TRACE: 'ids' } });
  }, 120_000);

  afterAll(async () => {
    await daemon?.stop();
    await nbdkit?.stop();
    await tgtd?.stop();
    if (dir !== '') removeDir(dir);
  });

  it('status lists the remote elements by kind, active, and no secret anywhere', async () => {
    const status = await daemon!.status();
    const kinds = Object.fromEntries(status.elements.map((e) => [e.name, `${e.kind}/${e.state}`]));
    expect(kinds).toMatchObject({ l0: 'local/active', rn0: 'nbd/active', ri0: 'iscsi/active', rn1: 'nbd/active', ri1: 'iscsi/active' });
    expect(status.volumes.map((v) => `${v.name}:${v.state}`).sort()).toEqual(['miscsi:optimal', 'mnbd:optimal', 'r10:optimal']);
    expect(JSON.stringify(status)).not.toContain(CHAP.secret);
    expect(daemon!.stdout + daemon!.stderr).not.toContain(CHAP.secret);
  });

  it('the debug trace shows each sub-request ID with class local or remote by element', async () => {
    const r = await qemuIo(daemon!.uri('mnbd'), ['write -P 0x5a 1m 64k']);
    expect(qemuIoFailed(r), explain(r)).toBe(false);
    const trace = daemon!.stderr.split('\n').filter((l) => l.includes('trace:') && l.includes('op=WRITE') && l.includes('offset=5242880'));
    expect(trace.some((l) => /trace: remote\[0\] id=0x[0-9a-f]{16} class=remote op=WRITE .*element=/.test(l)), trace.join('\n')).toBe(true);
    expect(trace.some((l) => /trace: bottom id=0x[0-9a-f]{16} class=local op=WRITE .*element=/.test(l)), trace.join('\n')).toBe(true);
  });

  const cases: ReadonlyArray<{ volume: string; pairs: ReadonlyArray<readonly [string, string]>; legBytes: number }> = [
    { volume: 'mnbd', pairs: [['l0', 'n0']], legBytes: COPY_BYTES },
    { volume: 'miscsi', pairs: [['l1', 'i0']], legBytes: COPY_BYTES },
    { volume: 'r10', pairs: [['l2', 'n1'], ['l3', 'i1']], legBytes: COPY_BYTES / 2 },
  ];

  for (const c of cases) {
    it(`${c.volume}: 256 MiB nbdcopy round trip has equal sha256, and mirror legs are identical`, async () => {
      const src = path.join(dir, `${c.volume}-src.bin`);
      const back = path.join(dir, `${c.volume}-back.bin`);
      const want = await randomFile(src, COPY_BYTES);
      const up = await nbdcopy(src, daemon!.uri(c.volume), ['--flush']);
      expect(up.code, explain(up)).toBe(0);
      const down = await nbdcopy(daemon!.uri(c.volume), back); // the whole volume; its first 256 MiB are ours
      expect(down.code, explain(down)).toBe(0);
      expect(await sha256Range(back, 0, COPY_BYTES)).toBe(want);
      for (const [local, remote] of c.pairs) {
        const at = await firstDifference(file(local), file(remote), DATA_OFFSET_BYTES, c.legBytes);
        expect(at, `${local} and ${remote} differ at data offset ${at}`).toBe(-1);
      }
    }, 240_000);
  }
});
