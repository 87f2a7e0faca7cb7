// `onestack init` against the real daemon and real peers: (a) --yes writes a config `onestack
// serve --config` runs (volume optimal; the empty NBD export name serves the boot volume, checked
// with nbdinfo); (b) the interactive path through a pseudo-terminal (a small python3 pty relay):
// each prompt is awaited before it is answered, a bad layout is asked again, a CHAP secret is
// typed without echo and lands in a 0600 file, Ctrl-C writes nothing; (c) remote disks served by
// nbdkit become nbd elements, named by URI or found by asking the server; (d) bad answers
// without a terminal fail clearly and write nothing.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { loadConfig } from '@onestack/engine';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLI_MAIN, Daemon } from './lib/daemon.js';
import { MiB, GiB, removeDir, sparseFile, tempDir } from './lib/files.js';
import { exportSize } from './lib/peers.js';
import { explain, missingTools, run, sleep, stopChild, track, waitExit, type RunResult } from './lib/proc.js';
import { startNbdkit, type NbdkitPeer } from './lib/remotes.js';

const SECRET = 'init-e2e-chap-secret-8086';
const PROMPT_WAIT_MS = 15_000;
const missing = missingTools(['python3', 'nbdkit', 'nbdinfo']);

/** Runs its command on a fresh pty (python3's pty module), relaying our pipes to it; ^D on stdin's end. */
const PTY_RELAY = `
import os, pty, select, sys
pid, fd = pty.fork()
if pid == 0:
    os.execvp(sys.argv[1], sys.argv[1:])
stdin_open = True
while True:
    r, _, _ = select.select([fd] + ([0] if stdin_open else []), [], [], 60)
    if not r:
        break
    if 0 in r:
        data = os.read(0, 4096)
        if data:
            os.write(fd, data)
        else:
            stdin_open = False
            os.write(fd, b'\\x04')
    if fd in r:
        try:
            data = os.read(fd, 4096)
        except OSError:
            break
        if not data:
            break
        os.write(1, data)
_, status = os.waitpid(pid, 0)
sys.exit(os.waitstatus_to_exitcode(status))
`;

/** An `onestack init` on a pseudo-terminal: wait for each prompt, then type the answer. */
class PtySession {
  #raw = '';
  #consumed = 0;
  private constructor(readonly child: ChildProcess) {
    child.stdout?.setEncoding('utf8').on('data', (s: string) => { this.#raw += s; });
    child.stderr?.setEncoding('utf8').on('data', (s: string) => { this.#raw += s; });
  }

  static start(args: readonly string[], cwd: string): PtySession {
    const env = { ...process.env, TERM: 'xterm-256color', ONESTACK_DATA_DIR: '' };
    const child = spawn('python3', ['-c', PTY_RELAY, process.execPath, CLI_MAIN, 'init', ...args], { cwd, env, stdio: ['pipe', 'pipe', 'pipe'] });
    return new PtySession(track(child));
  }

  /** Everything the terminal showed, escape sequences and carriage returns removed. */
  get text(): string {
    return this.#raw.replace(/\x1b\[[0-9;?]*[A-Za-z]/g, '').replace(/\r/g, '');
  }

  get raw(): string { return this.#raw; }

  /** Waits (bounded) until `pattern` shows after what was already matched. */
  async expect(pattern: RegExp): Promise<void> {
    const deadline = Date.now() + PROMPT_WAIT_MS;
    while (Date.now() < deadline) {
      const rest = this.text.slice(this.#consumed);
      const m = pattern.exec(rest);
      if (m !== null) { this.#consumed += m.index + m[0].length; return; }
      if (this.child.exitCode !== null) break;
      await sleep(25);
    }
    throw new Error(`no ${String(pattern)} within ${PROMPT_WAIT_MS} ms; the terminal showed:\n${this.text.slice(-3000)}`);
  }

  /** Waits for the prompt, then types the answer and Enter. */
  async answer(prompt: RegExp, text: string): Promise<void> {
    await this.expect(prompt);
    this.child.stdin?.write(`${text}\r`);
  }

  type(bytes: string): void { this.child.stdin?.write(bytes); }

  async exitCode(): Promise<number | null> {
    this.child.stdin?.end();
    await waitExit(this.child, PROMPT_WAIT_MS);
    if (this.child.exitCode === null) await stopChild(this.child, 1000, 'SIGKILL');
    return this.child.exitCode;
  }
}

describe.skipIf(missing !== null)(`onestack init${missing !== null ? ` (skipped: ${missing})` : ''}`, () => {
  let dir = '';
  let nbdkit: NbdkitPeer | null = null;
  let nbdkitDir: NbdkitPeer | null = null;
  const daemons: Daemon[] = [];

  function init(args: readonly string[], cwd: string): Promise<RunResult> {
    return run(process.execPath, [CLI_MAIN, 'init', ...args], { timeoutMs: 30_000, cwd, env: { ...process.env, ONESTACK_DATA_DIR: '' } });
  }

  async function serve(sub: string): Promise<Daemon> {
    const d = await Daemon.start({ dataDir: path.join(sub, 'data'), configPath: path.join(sub, 'onestack.yaml') });
    daemons.push(d);
    return d;
  }

  async function fresh(name: string): Promise<string> {
    const sub = path.join(dir, name);
    await mkdir(sub);
    return sub;
  }

  beforeAll(async () => {
    dir = tempDir('init');
    await mkdir(path.join(dir, 'remote'));
    await sparseFile(path.join(dir, 'remote', 'leg.img'), 64 * MiB + 4 * MiB);
    nbdkit = await startNbdkit(['file', `file=${path.join(dir, 'remote', 'leg.img')}`]);
    await mkdir(path.join(dir, 'exports'));
    for (const f of ['a.img', 'b.img']) await sparseFile(path.join(dir, 'exports', f), 64 * MiB + 4 * MiB);
    nbdkitDir = await startNbdkit(['file', `dir=${path.join(dir, 'exports')}`]);
  });

  afterAll(async () => {
    for (const d of daemons) await d.stop();
    await nbdkit?.stop();
    await nbdkitDir?.stop();
    if (dir !== '') removeDir(dir);
  });

  it('(a) init --yes writes a config that serve runs: raid1 optimal, boot volume on the empty export name', async () => {
    const sub = await fresh('yes');
    const data = path.join(sub, 'data');
    const r = await init(['--yes', '--data-dir', data, '--element', `file:${data}/a.img`, '--element', `file:${data}/b.img`,
      '--layout', 'raid1', '--boot', 'default'], sub);
    expect(r.code, explain(r)).toBe(0);
    expect(r.stdout).toContain(`wrote ${path.join(sub, 'onestack.yaml')}: volume "default" (raid1 over 2 elements, boot)`);
    const d = await serve(sub);
    const st = await d.status();
    expect(st.volumes.map((v) => [v.name, v.layout, v.state])).toEqual([['default', 'raid1', 'optimal']]);
    expect(st.volumes[0]?.elements.map((e) => [e.name, e.kind, e.state])).toEqual([['d0', 'local', 'active'], ['d1', 'local', 'active']]);
    expect(await exportSize(`nbd://127.0.0.1:${d.nbdPort}/`)).toBe(GiB);
    await d.stop();
  });

  it('(b) the interactive path on a terminal: prompts with defaults, a bad layout asked again, then serve', async () => {
    const sub = await fresh('pty');
    const pty = PtySession.start(['--data-dir', './data'], sub);
    await pty.answer(/Remote disk or server to add \(.*\): $/m, '');
    await pty.answer(/Layout \[raid1\]: $/m, 'raid7');
    await pty.expect(/! unknown layout "raid7" \(did you mean raid0\?\).* - please answer again\n/);
    await pty.answer(/Layout \[raid1\]: $/m, 'raid1');
    await pty.answer(/Create 2 new image files in .*\? \[Y\/n\]: $/m, 'y');
    await pty.answer(/Size of each new image in GiB \[1\]: $/m, '');
    await pty.answer(/Elements for the raid1 volume, in role order .* \[1,2\]: $/m, '');
    await pty.answer(/Volume name \(also its NBD export name\) \[default\]: $/m, 'vm');
    await pty.answer(/Make "vm" the boot volume .*\? \[Y\/n\]: $/m, '');
    await pty.answer(/Write .*onestack\.yaml\? \[Y\/n\]: $/m, 'y');
    await pty.expect(/wrote .*onestack\.yaml: volume "vm" \(raid1 over 2 elements, boot\)/);
    expect(await pty.exitCode(), pty.text).toBe(0);
    const config = loadConfig({ path: path.join(sub, 'onestack.yaml') });
    expect(config.elements.map((e) => [e.name, e.uri, e.createSizeBytes])).toEqual([['d0', 'file:./data/disk0.img', GiB], ['d1', 'file:./data/disk1.img', GiB]]);
    expect(config.volumes).toMatchObject([{ name: 'vm', layout: 'raid1', elements: ['d0', 'd1'], boot: true }]);
    const d = await serve(sub);
    expect((await d.status()).volumes.map((v) => [v.name, v.state])).toEqual([['vm', 'optimal']]);
    await d.stop();
  });

  it('(b) on a terminal a CHAP secret is typed without echo and stored 0600, referenced by secretFile', async () => {
    const sub = await fresh('pty-chap');
    const pty = PtySession.start(['--data-dir', './data', '--layout', 'linear'], sub);
    await pty.answer(/Remote disk or server to add \(.*\): $/m, 'iscsi://alice@127.0.0.1:3260/iqn.2026-11.test:disk/1');
    await pty.answer(/CHAP secret for alice \(input hidden\): $/m, SECRET);
    await pty.expect(/added iscsi:\/\/alice@127\.0\.0\.1:3260\/iqn\.2026-11\.test:disk\/1 \(iSCSI LUN\)/);
    await pty.answer(/Remote disk or server to add \(.*\): $/m, '');
    await pty.answer(/Elements for the linear volume, in role order .* \[1\]: $/m, '');
    await pty.answer(/Volume name .*\[default\]: $/m, '');
    await pty.answer(/Make "default" the boot volume .*\? \[Y\/n\]: $/m, '');
    await pty.answer(/Write .*onestack\.yaml\? \[Y\/n\]: $/m, 'y');
    expect(await pty.exitCode(), pty.text).toBe(0);
    expect(pty.raw).not.toContain(SECRET);
    const secretFile = path.join(sub, 'data', 'chap-alice.secret');
    expect(readFileSync(secretFile, 'utf8')).toBe(`${SECRET}\n`);
    expect(statSync(secretFile).mode & 0o777).toBe(0o600);
    const text = readFileSync(path.join(sub, 'onestack.yaml'), 'utf8');
    expect(text).not.toContain(SECRET);
    expect(text).toContain('secretFile: ./data/chap-alice.secret');
  });

  it('(d) Ctrl-C at a prompt stops the wizard and writes nothing', async () => {
    const sub = await fresh('pty-ctrl-c');
    const pty = PtySession.start(['--data-dir', './data'], sub);
    await pty.answer(/Remote disk or server to add \(.*\): $/m, '');
    await pty.expect(/Layout \[raid1\]: $/m);
    pty.type('\x03');
    await pty.expect(/onestack: error: interrupted before "Layout" was answered; nothing written/);
    expect(await pty.exitCode()).toBe(1);
    expect(existsSync(path.join(sub, 'onestack.yaml'))).toBe(false);
  });

  it('(c) a remote disk served by nbdkit, named by its URI, becomes an nbd element of an optimal raid1', async () => {
    const sub = await fresh('nbd');
    const r = await init(['--yes', '--data-dir', './data', '--layout', 'raid1', '--element', 'file:./data/local.img', '--remote', nbdkit!.uri, '--boot', 'default'], sub);
    expect(r.code, explain(r)).toBe(0);
    const config = loadConfig({ path: path.join(sub, 'onestack.yaml') });
    expect(config.elements.map((e) => [e.name, e.location.kind, e.uri])).toEqual([['d0', 'local', 'file:./data/local.img'], ['n0', 'nbd', nbdkit!.uri]]);
    const d = await serve(sub);
    const st = await d.status();
    expect(st.volumes.map((v) => [v.name, v.layout, v.state]), d.logs()).toEqual([['default', 'raid1', 'optimal']]);
    expect(st.volumes[0]?.elements.map((e) => [e.name, e.kind, e.state])).toEqual([['d0', 'local', 'active'], ['n0', 'nbd', 'active']]);
    await d.stop();
  });

  it('(c) a bare NBD server URI is asked for its exports (NBD_OPT_LIST), each one an element', async () => {
    const sub = await fresh('nbd-list');
    const server = `nbd://127.0.0.1:${nbdkitDir!.port}`;
    const r = await init(['--yes', '--data-dir', './data', '--remote', server], sub);
    expect(r.code, explain(r)).toBe(0);
    const config = loadConfig({ path: path.join(sub, 'onestack.yaml') });
    expect(config.elements.map((e) => [e.name, e.uri])).toEqual([['n0', `${server}/a.img`], ['n1', `${server}/b.img`]]);
    const d = await serve(sub);
    const st = await d.status();
    expect(st.volumes.map((v) => [v.layout, v.state]), d.logs()).toEqual([['raid1', 'optimal']]);
    expect(st.volumes[0]?.elements.map((e) => e.kind)).toEqual(['nbd', 'nbd']);
    await d.stop();
  });

  it('(d) bad answers without a terminal: asked again, then a clear failure; nothing written', async () => {
    const sub = await fresh('bad');
    const ended = await run('sh', ['-c', `printf '\\nraid7\\nriad1\\n' | "${process.execPath}" "${CLI_MAIN}" init --data-dir ./data`], { cwd: sub, timeoutMs: 30_000 });
    expect(ended.code, explain(ended)).toBe(2);
    expect(ended.stdout).toMatch(/Layout \[raid1\]: raid7\n {2}! unknown layout "raid7".*please answer again\nLayout \[raid1\]: riad1\n {2}! unknown layout "riad1" \(did you mean raid1\?\)/);
    expect(ended.stderr).toMatch(/^onestack: error: input ended before "Layout" was answered; nothing written \(init\)$/m);
    const flag = await init(['--yes', '--layout', 'raid7'], sub);
    expect(flag.code, explain(flag)).toBe(2);
    expect(flag.stderr).toMatch(/--layout does not accept "raid7"/);
    expect(existsSync(path.join(sub, 'onestack.yaml'))).toBe(false);
    expect(existsSync(path.join(sub, 'data'))).toBe(false);
  });
});
