// Acceptance (issue 4): volumes over a mix of local files and remote elements served by real
// peers — nbdkit (NBD) and tgtd (iSCSI with CHAP) — carry a 256 MiB nbdcopy round trip with
// equal sha256, and afterwards every mirror leg holds the same bytes, read straight from the
// local image and from the files behind nbdkit and tgtd.
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLI_MAIN, Daemon, REPO_ROOT } from './lib/daemon.js';
import { DATA_OFFSET_BYTES, MiB, firstDifference, randomFile, removeDir, sha256Range, sparseFile, tempDir, writeConfig } from './lib/files.js';
import { nbdcopy, qemuIo, qemuIoFailed } from './lib/peers.js';
import { explain, missingTools, run } from './lib/proc.js';
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

  it('element add nbd:// at run time (a wrong export refused), volume create over it, and a restart reassembles it from the state file', async () => {
    for (const name of ['n2']) await sparseFile(file(name), DATA_OFFSET_BYTES + 16 * MiB);
    const cli = (args: readonly string[]) => run(process.execPath, [CLI_MAIN, ...args, '--api', `127.0.0.1:${daemon!.apiPort}`],
      { timeoutMs: 30_000, cwd: REPO_ROOT, env: { ...process.env, ONESTACK_DATA_DIR: daemon!.dataDir } });
    const added = await cli(['element', 'add', `nbd://127.0.0.1:${nbdkit!.port}/n2.img`, '--name', 'rn2']);
    expect(added.code, explain(added)).toBe(0);
    expect(added.stdout).toMatch(/added element rn2: nbd, 16(\.0+)? MiB, spare/);
    const wrong = await cli(['element', 'add', `nbd://127.0.0.1:${nbdkit!.port}/no-such-export`, '--name', 'bad']);
    expect(wrong.code, explain(wrong)).toBe(1);
    expect(wrong.stderr).toMatch(/onestack: error: .*cannot reach nbd:\/\/127\.0\.0\.1:\d+\/no-such-export/);
    await sparseFile(file('late0'), DATA_OFFSET_BYTES + 8 * MiB);
    const local = await cli(['element', 'add', `file:${file('late0')}`, '--name', 'late0']);
    expect(local.code, explain(local)).toBe(0);
    const created = await cli(['volume', 'create', 'late', '--layout', 'raid1', '--element', 'rn2', '--element', 'late0']);
    expect(created.code, explain(created)).toBe(0);
    const w = await qemuIo(daemon!.uri('late'), ['write -P 0x6c 0 1m']);
    expect(qemuIoFailed(w), explain(w)).toBe(false);
    const { dataDir, nbdPort, apiPort } = daemon!;
    await daemon!.stop();
    daemon = await Daemon.start({ dataDir, configPath: path.join(dir, 'onestack.yaml'), nbdPort, apiPort });
    const r = await qemuIo(daemon.uri('late'), ['read -P 0x6c 0 1m']);
    expect(qemuIoFailed(r), explain(r)).toBe(false);
    const late = (await daemon.status()).volumes.find((v) => v.name === 'late');
    expect(late?.state).toBe('optimal');
    expect(late?.elements.map((e) => `${e.name}:${e.kind}`)).toEqual(['rn2:nbd', 'late0:local']);
  }, 120_000);

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
