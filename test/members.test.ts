// Acceptance (issue 11, online topology changes, first piece): under a running fio verify job
// over NBD, a raid1 gains a third leg (`onestack volume add-member`, a local file, and then an
// nbdkit remote) that is rebuilt while fio writes, and loses one again (`volume remove-member`);
// fio sees no error and no verify failure, and the legs' data areas are identical (sha256). A
// restart keeps the membership (config still lists the old one: state-file record), and a kill -9
// mid-rebuild of an added leg rebuilds it again after the restart (fio --verify_only then passes).
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLI_MAIN, Daemon, REPO_ROOT } from './lib/daemon.js';
import { DATA_OFFSET_BYTES, MiB, removeDir, sha256Range, sparseFile, tempDir, writeConfig } from './lib/files.js';
import { fio } from './lib/peers.js';
import { explain, missingTools, run, sleep } from './lib/proc.js';
import { startNbdkit, type NbdkitPeer } from './lib/remotes.js';

const DATA_BYTES = 64 * MiB;
const ELEMENT_BYTES = DATA_OFFSET_BYTES + DATA_BYTES;
const missing = missingTools(['fio', 'nbdkit']);

interface Status {
  volumes: { name: string; state: string; sizeBytes: number; rebuild: { element: string | null; doneBytes: number } | null;
    lastRebuild: { element: string | null; outcome: string } | null; elements: { name: string; state: string }[] }[];
  elements: { name: string; state: string; volume: string | null }[];
}

/** fio writes at a bounded pace, so the membership change lands in the middle of its write phase. */
function fioVerifyArgs(uri: string): string[] {
  return ['--name=verify', '--ioengine=nbd', `--uri=${uri}`, '--rw=randwrite', '--bs=4k', '--iodepth=16', '--size=48m', '--rate_iops=2000',
    '--verify=crc32c', '--do_verify=1', '--verify_fatal=1', '--verify_dump=0'];
}

describe.skipIf(missing !== null)(`raid1 members added and removed under fio verify${missing !== null ? ` (skipped: ${missing})` : ''}`, () => {
  let dir = '';
  let daemon: Daemon | null = null;
  let remote: NbdkitPeer | null = null;
  const img = (name: string): string => path.join(dir, `${name}.img`);
  const cli = (args: readonly string[]) => run(process.execPath, [CLI_MAIN, ...args, '--api', `127.0.0.1:${daemon!.apiPort}`],
    { timeoutMs: 60_000, cwd: REPO_ROOT, env: { ...process.env, ONESTACK_DATA_DIR: daemon!.dataDir } });
  // The API directly (no CLI start-up per poll), so short rebuild windows are not missed.
  const status = async (): Promise<Status> => (await daemon!.status()) as unknown as Status;
  const mirror = async (): Promise<Status['volumes'][number]> => (await status()).volumes.find((v) => v.name === 'm')!;
  const legSha = (file: string): Promise<string> => sha256Range(file, DATA_OFFSET_BYTES, DATA_BYTES);

  async function untilOptimal(what: string, timeoutMs = 120_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const v = await mirror();
      if (v.state === 'optimal' && v.rebuild === null) return;
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}: ${JSON.stringify(v)}\n${daemon!.logs()}`);
      await sleep(200);
    }
  }

  beforeAll(async () => {
    dir = tempDir('members');
    await sparseFile(img('remote'), ELEMENT_BYTES);
    remote = await startNbdkit(['file', img('remote')]);
    const { configPath } = await writeConfig(dir, [
      { name: 'a', sizeBytes: ELEMENT_BYTES }, { name: 'b', sizeBytes: ELEMENT_BYTES }, { name: 'c', sizeBytes: ELEMENT_BYTES },
      { name: 'r', uri: `nbd://127.0.0.1:${remote.port}/`, options: { timeoutMs: 5000 } },
    ], [{ name: 'm', layout: 'raid1', elements: ['a', 'b'] }], ['rebuild: { maxMiBPerSec: 32 }']);
    daemon = await Daemon.start({ dataDir: path.join(dir, 'data'), configPath });
  }, 60_000);

  afterAll(async () => {
    await daemon?.stop();
    await remote?.stop();
    if (dir !== '') removeDir(dir);
  });

  it('add-member under fio verify: the third leg is rebuilt while fio writes; fio clean; three identical legs; status shows 3 legs', async () => {
    expect((await mirror()).elements.map((e) => e.name)).toEqual(['a', 'b']);
    let fioDone = false;
    const job = fio(fioVerifyArgs(daemon!.uri('m')), dir).finally(() => { fioDone = true; });
    await sleep(1500);
    const added = await cli(['volume', 'add-member', 'm', 'c']);
    expect(added.code, explain(added)).toBe(0);
    expect(added.stdout).toMatch(/volume m: added c; 3 legs: a active, b active, c rebuilding/);
    const during = await mirror();
    expect(during.elements.map((e) => e.name)).toEqual(['a', 'b', 'c']);
    expect(during.rebuild, 'the rebuild of c runs').toMatchObject({ element: 'c' });
    expect(fioDone, 'fio still runs while c is rebuilt').toBe(false);
    await untilOptimal('the rebuild of c');
    const { result, jobs } = await job;
    expect(result.code, explain(result)).toBe(0);
    expect(jobs[0]?.error, result.stdout).toBe(0);
    expect(jobs[0]?.write.io_bytes, 'fio wrote its whole size').toBe(48 * MiB);
    const json = await cli(['status', '--json']);
    expect(json.code, explain(json)).toBe(0);
    const v = (JSON.parse(json.stdout) as Status).volumes.find((x) => x.name === 'm')!;
    expect(v.elements.map((e) => [e.name, e.state])).toEqual([['a', 'active'], ['b', 'active'], ['c', 'active']]);
    expect(v.lastRebuild).toMatchObject({ element: 'c', outcome: 'done' });
    const text = await cli(['status']);
    expect(text.stdout, 'mdstat-like view of 3 legs').toMatch(/\[3\/3\] \[UUU\]/);
    const sums = await Promise.all(['a', 'b', 'c'].map((n) => legSha(img(n))));
    expect(new Set(sums).size, `sha256 of the data areas: ${sums.join(' ')}`).toBe(1);
  }, 180_000);

  it('add-member of an nbdkit remote, then remove-member of two legs under fio verify: fio clean, status shows 2 legs', async () => {
    const addRemote = await cli(['volume', 'add-member', 'm', 'r']);
    expect(addRemote.code, explain(addRemote)).toBe(0);
    await untilOptimal('the rebuild of the remote leg');
    const four = await Promise.all([img('a'), img('remote')].map(legSha));
    expect(four[1], 'the remote leg holds the volume').toBe(four[0]);

    let fioDone = false;
    const job = fio(fioVerifyArgs(daemon!.uri('m')), dir).finally(() => { fioDone = true; });
    await sleep(1500);
    const refused = await cli(['volume', 'remove-member', 'm', 'zz']);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/element zz is not a member of volume m/);
    const removed = await cli(['volume', 'remove-member', 'm', 'b']);
    expect(removed.code, explain(removed)).toBe(0);
    expect(removed.stdout).toMatch(/removed b; 3 legs: a active, c active, r active/);
    await sleep(1000);
    const again = await cli(['volume', 'remove-member', 'm', 'r']);
    expect(again.code, explain(again)).toBe(0);
    expect(fioDone, 'both legs left while fio ran').toBe(false);
    const { result, jobs } = await job;
    expect(result.code, explain(result)).toBe(0);
    expect(jobs[0]?.error, result.stdout).toBe(0);
    const st = await status();
    const v = st.volumes.find((x) => x.name === 'm')!;
    expect(v.elements.map((e) => [e.name, e.state])).toEqual([['a', 'active'], ['c', 'active']]);
    expect(st.elements.find((e) => e.name === 'b')).toMatchObject({ state: 'spare', volume: null });
    const text = await cli(['status']);
    expect(text.stdout).toMatch(/\[2\/2\] \[UU\]/);
    const last = await cli(['volume', 'remove-member', 'm', 'c']);
    expect(last.code).toBe(1);
    expect(last.stderr).toMatch(/has 2 legs; a raid1 keeps at least 2/);
    const [sa, sc] = await Promise.all([img('a'), img('c')].map(legSha));
    expect(sc).toBe(sa);
  }, 180_000);

  const restart = async (): Promise<void> => {
    daemon = await Daemon.start({ dataDir: path.join(dir, 'data'), configPath: path.join(dir, 'onestack.yaml'), nbdPort: daemon!.nbdPort, apiPort: daemon!.apiPort });
  };

  it('a restart assembles the volume with the members it has now (config still lists a, b)', async () => {
    await daemon!.stop();
    await restart();
    const v = await mirror();
    expect(v.elements.map((e) => [e.name, e.state])).toEqual([['a', 'active'], ['c', 'active']]);
  }, 60_000);

  it('kill -9 in the middle of an added leg\'s rebuild: the restart rebuilds it again, and the legs end identical', async () => {
    // A pattern written (and acknowledged) before the crash, verified after it by fio --verify_only.
    const pattern = fioVerifyArgs(daemon!.uri('m')).filter((a) => !a.startsWith('--rate_iops') && !a.startsWith('--do_verify'));
    const laid = await fio([...pattern, '--do_verify=0'], dir);
    expect(laid.result.code, explain(laid.result)).toBe(0);
    const added = await cli(['volume', 'add-member', 'm', 'b']); // b was removed earlier: it comes back empty
    expect(added.code, explain(added)).toBe(0);
    const deadline = Date.now() + 30_000;
    let v = await mirror();
    while ((v.rebuild?.element !== 'b' || v.rebuild.doneBytes === 0) && Date.now() < deadline) {
      await sleep(50);
      v = await mirror();
    }
    expect(v.rebuild, 'the rebuild of b is under way').toMatchObject({ element: 'b' });
    await daemon!.crash();
    await restart();
    v = await mirror();
    expect(v.elements.map((e) => e.name), 'the membership survived the crash').toEqual(['a', 'c', 'b']);
    expect(v.elements[2]?.state, 'b is rebuilt again (its superblock still says it holds nothing)').toBe('rebuilding');
    await untilOptimal('the rebuild of b after the crash');
    const sums = await Promise.all(['a', 'c', 'b'].map((n) => legSha(img(n))));
    expect(new Set(sums).size, `sha256 of the data areas: ${sums.join(' ')}`).toBe(1);
    const checked = await fio([...pattern, '--do_verify=1', '--verify_only'], dir);
    expect(checked.result.code, explain(checked.result)).toBe(0);
    expect(checked.jobs[0]?.error, checked.result.stdout).toBe(0);
    expect(checked.jobs[0]?.read.io_bytes, 'fio read back the whole pattern').toBe(48 * MiB);
  }, 120_000);
});
