// Acceptance (issue 7): Debian's chromium, driven by playwright-core, uses the web GUI of a real
// daemon. Without the token the page asks for it; with it the dashboard shows. Through the GUI:
// add a local image and an NBD export served by nbdkit, create a raid1 of them and see it
// optimal; fail the remote leg and see it degraded; replace it by another nbdkit export and see
// the rebuild progress move to 100% and the volume optimal; run fio against the volume and see
// the IOPS chart leave zero. Screenshots go to test/artifacts/gui-*.png.
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chromiumMissing, launchBrowser, pageUntil, screenshot, watchProblems } from './lib/browser.js';
import { Daemon, REPO_ROOT } from './lib/daemon.js';
import { MiB, removeDir, sparseFile, tempDir } from './lib/files.js';
import { fio } from './lib/peers.js';
import { explain, missingTools } from './lib/proc.js';
import { startNbdkit, type NbdkitPeer } from './lib/remotes.js';

/** 4 MiB header + 64 MiB of data per leg; the rebuild throttle makes the copy last ~4 s. */
const LEG_BYTES = 68 * MiB;
const REBUILD_MIB_PER_SEC = 16;
const skipReason = chromiumMissing() ?? missingTools(['nbdkit', 'fio']);

describe.skipIf(skipReason !== null)(`web GUI in chromium${skipReason !== null ? ` (skipped: ${skipReason})` : ''}`, () => {
  let dir = '';
  let daemon: Daemon | null = null;
  let browser: Browser | null = null;
  let page: Page;
  let problems: string[] = [];
  const remotes: NbdkitPeer[] = [];
  let base = '';
  let token = '';

  beforeAll(async () => {
    const index = path.join(REPO_ROOT, 'packages/web/dist/index.html');
    if (!existsSync(index)) throw new Error(`the web GUI is not built (${index} is missing): run \`pnpm run build\``);
    dir = tempDir('gui');
    const dataDir = path.join(dir, 'data');
    await mkdir(dataDir);
    await sparseFile(path.join(dataDir, 'local0.img'), LEG_BYTES);
    const configPath = path.join(dir, 'onestack.yaml');
    await writeFile(configPath, `# no volumes: the test builds them through the GUI\nrebuild: { maxMiBPerSec: ${REBUILD_MIB_PER_SEC} }\n`);
    for (let i = 0; i < 3; i++) remotes.push(await startNbdkit(['memory', `${LEG_BYTES}`]));
    daemon = await Daemon.start({ dataDir, configPath });
    token = readFileSync(path.join(dataDir, 'api-token'), 'utf8').trim();
    base = `http://127.0.0.1:${daemon.apiPort}`;
    browser = await launchBrowser();
    page = await browser.newPage({ viewport: { width: 1360, height: 900 } });
    page.setDefaultTimeout(15_000);
    page.on('dialog', (d) => { void d.accept(); });
    problems = watchProblems(page);
  });

  afterAll(async () => {
    await browser?.close();
    await daemon?.stop();
    for (const r of remotes) await r.stop();
    if (dir !== '') removeDir(dir);
  });

  const byId = (id: string) => page.getByTestId(id);
  const stateOf = (volume: string) => byId(`volume-state-${volume}`).locator('[data-state]').getAttribute('data-state');
  const memberState = (element: string) => byId(`member-${element}`).locator('[data-state]').getAttribute('data-state');

  const until = <T>(what: string, probe: () => Promise<T>, ok: (v: T) => boolean, timeoutMs?: number): Promise<T> =>
    pageUntil(page, what, probe, ok, timeoutMs, () => daemon?.logs() ?? '');

  async function addElement(uri: string, name: string): Promise<void> {
    await byId('element-uri').fill(uri);
    await byId('element-name').fill(name);
    await byId('element-add').click();
    await expect.poll(async () => byId('element-msg').textContent(), { timeout: 15_000 }).toContain(`element ${name} added`);
    await byId(`element-${name}`).waitFor();
  }

  it('asks for the token without it, and says so when the token is wrong', async () => {
    expect((await fetch(`${base}/api/v1/status`)).status).toBe(401);
    await page.goto(`${base}/`);
    await byId('token-form').waitFor();
    await screenshot(page, 'token');
    await byId('token-input').fill('not-the-token-0123456789');
    await byId('token-submit').click();
    await byId('token-refused').waitFor();
    // A string, evaluated in the page (the test's own lib has no DOM types).
    expect(await page.evaluate('window.sessionStorage.getItem("onestack.apiToken")')).toBe('not-the-token-0123456789');
  });

  it('opens the dashboard with the token from the URL and takes the token out of the address bar', async () => {
    await page.goto(`${base}/?token=${encodeURIComponent(token)}`);
    await byId('dashboard').waitFor();
    expect(page.url()).toBe(`${base}/`);
    await until('live mode', () => byId('live-mode').getAttribute('data-mode'), (m) => m === 'events');
    await byId('candidates').getByTestId('candidate-local0.img').waitFor();
  });

  it('adds a local image and an NBD export, creates a raid1 of them and shows it optimal', async () => {
    await byId('use-local0.img').click();
    expect(await byId('element-uri').inputValue()).toBe(`file:${path.join(dir, 'data', 'local0.img')}`);
    await addElement(await byId('element-uri').inputValue(), 'loc0');
    await addElement(`${remotes[0]!.uri}disk`, 'rem0');
    await byId('array-name').fill('guivol');
    await byId('array-layout').selectOption('raid1');
    await byId('array-element-loc0').check();
    await byId('array-element-rem0').check();
    await byId('array-create').click();
    await byId('volume-guivol').waitFor();
    await until('guivol state', () => stateOf('guivol'), (s) => s === 'optimal');
    expect(await memberState('rem0')).toBe('active');
    expect((await daemon!.status()).volumes.find((v) => v.name === 'guivol')?.state).toBe('optimal');
    await screenshot(page, 'optimal');
  });

  it('fails the remote leg and shows the volume degraded', async () => {
    await byId('fail-rem0').click();
    await until('guivol state', () => stateOf('guivol'), (s) => s === 'degraded');
    expect(await memberState('rem0')).toBe('failed');
    await screenshot(page, 'degraded');
  });

  it('discovers the exports of an NBD server', async () => {
    await byId('discover-uri').fill(`nbd://127.0.0.1:${remotes[1]!.port}`);
    await byId('discover-submit').click();
    await expect.poll(async () => byId('discover-msg').textContent()).toMatch(/found at/);
    await byId('discover-results').getByRole('button', { name: 'Use' }).first().click();
    expect(await byId('element-uri').inputValue()).toMatch(new RegExp(`^nbd://127\\.0\\.0\\.1:${remotes[1]!.port}/`));
  });

  it('replaces it by another NBD export: the rebuild progress moves to 100% and the volume is optimal', async () => {
    await addElement(await byId('element-uri').inputValue(), 'rem1');
    await byId('replace-with-rem0').selectOption('rem1');
    await byId('replace-rem0').click();
    const seen: number[] = [];
    let midShot = false;
    const deadline = Date.now() + 40_000;
    for (;;) {
      const percent = await byId('rebuild-guivol').getAttribute('data-percent', { timeout: 1000 }).catch(() => null);
      if (percent !== null) seen.push(Number(percent));
      if (!midShot && percent !== null && Number(percent) > 0 && Number(percent) < 100) {
        midShot = true;
        await screenshot(page, 'rebuilding');
      }
      if (Number(percent) === 100 && (await stateOf('guivol')) === 'optimal') break;
      if (Date.now() > deadline) throw new Error(`rebuild did not reach 100% (seen ${seen.join(', ')})\n${daemon?.logs() ?? ''}`);
      await page.waitForTimeout(150);
    }
    expect(seen.some((p) => p > 0 && p < 100), `progress in between (seen ${seen.join(', ')})`).toBe(true);
    expect(seen.every((p, i) => i === 0 || p >= (seen[i - 1] ?? 0)), 'progress never goes back').toBe(true);
    expect(await memberState('rem1')).toBe('active');
    expect(await byId('rebuild-guivol').textContent()).toContain('done');
    await screenshot(page, 'rebuilt');
  });

  it('shows non-zero IOPS in the volume chart while fio runs', async () => {
    const run = fio(['--name=gui', '--ioengine=nbd', `--uri=${daemon!.uri('guivol')}`, '--rw=randrw', '--bs=4k', '--iodepth=8',
      '--size=32m', '--time_based', '--runtime=5'], dir, 60_000);
    const last = await until('IOPS chart', async () => Number(await byId('chart-iops-guivol').getAttribute('data-last')), (v) => v > 0, 15_000);
    expect(last).toBeGreaterThan(0);
    expect(Number(await byId('chart-mibs-guivol').getAttribute('data-max'))).toBeGreaterThan(0);
    await screenshot(page, 'fio');
    const { result, jobs } = await run;
    expect(result.code, explain(result)).toBe(0);
    expect((jobs[0]?.read.iops ?? 0) + (jobs[0]?.write.iops ?? 0)).toBeGreaterThan(0);
    expect(Number(await byId('chart-iops-guivol').getAttribute('data-max'))).toBeGreaterThan(0);
  });

  it('mirrors onto a third remote disk through the mirror form, and picks the boot volume', async () => {
    await byId('mirror-volume').selectOption('guivol');
    await byId('mirror-leg').selectOption('rem1');
    await byId('mirror-uri').fill(`${remotes[2]!.uri}disk`);
    await byId('mirror-name').fill('rem2');
    await byId('mirror-submit').click();
    await expect.poll(async () => byId('mirror-msg').textContent(), { timeout: 15_000 }).toContain('element rem2 added; rebuilding rem1');
    await until('rem2 state', () => memberState('rem2'), (s) => s === 'active', 40_000);
    await until('guivol state', () => stateOf('guivol'), (s) => s === 'optimal');
    await byId('boot-guivol').click();
    await byId('boot-flag-guivol').waitFor();
    const status = await daemon!.status() as unknown as { volumes: { name: string; boot: boolean }[] };
    expect(status.volumes.find((v) => v.name === 'guivol')?.boot).toBe(true);
    await screenshot(page, 'boot');
  });

  it('starts a checkpoint from the volume card and lists it', async () => {
    await byId('checkpoint-new-guivol').click();
    await byId('checkpoint-guivol-ckpt-1').waitFor({ timeout: 15_000 });
    const status = await daemon!.status() as unknown as { volumes: { name: string; checkpoints?: { name: string }[] }[] };
    expect(status.volumes.find((v) => v.name === 'guivol')?.checkpoints?.map((c) => c.name)).toEqual(['ckpt-1']);
    expect(await byId('checkpoints-guivol').textContent()).toContain('ckpt-1');
  });

  it('raised no CSP violation or script error', () => {
    // 401 answers to the wrong token show as failed loads; anything else is a fault.
    expect(problems.filter((p) => !/status of 401/.test(p))).toEqual([]);
  });
});
