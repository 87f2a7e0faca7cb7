// Acceptance (issue 12, GUI): Debian's chromium, driven by playwright-core, shows how a real
// daemon reaches an rbd:// element of the real one-node Ceph (test/lib/ceph.ts) and who holds its
// ownership lock. A raid1 of a local file and an image of this test's own (never rbd/img): the
// Elements table and the volume card show the rbd path the daemon reports in status (librbd, or
// the qemu-nbd gateway with its pid, restarts and why librbd was not used), its state, and the
// lock line "held by this host (HOST-ID) · lease 4 s". With the lock taken away behind the
// daemon's back (rados lock break + a thief's lock), the page shows, live, "lock LOST: …" in the
// warning style and the state status reports. The path this daemon does not run, FENCED and a
// gateway's fallback reason are drawn from a status rewritten in a page route.
// Screenshots: test/artifacts/gui-rbd-*.png.
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chromiumMissing, openDashboard, pageUntil, screenshot } from './lib/browser.js';
import { Daemon, REPO_ROOT } from './lib/daemon.js';
import { DATA_OFFSET_BYTES, MiB, removeDir, tempDir, writeConfig } from './lib/files.js';
import { PEER_ENV, explain, run, sleep } from './lib/proc.js';
import { CEPH_CONF, cephMissing, cephRunning, ensureCeph } from './lib/ceph.js';

const IMAGE_MIB = 64;
const LEASE_MS = 4000;
const IMAGE = `gui-test-${process.pid}`;
const CEPH_ENV = { ...PEER_ENV, CEPH_CONF };
const skipReason = chromiumMissing() ?? cephMissing();

interface Rbd {
  path: 'librbd' | 'gateway'; pool: string; image: string; pid: number | null; restarts: number; state: string;
  error?: string; fallback?: string; clientAddrs?: string[]; inFlight?: number; lock?: { host: string; leaseMs: number; lost?: string };
}

const ceph = (tool: string, args: readonly string[]) => run(tool, args, { env: CEPH_ENV, timeoutMs: 60_000 });
const escape = (s: string): string => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/** What the GUI must print for this status (the wording of packages/web/src/format-rbd.ts, written out). */
function expectedLine(rbd: Rbd): RegExp {
  const via = rbd.path === 'librbd' ? 'librbd' : `qemu-nbd gateway${rbd.fallback !== undefined ? ` (librbd not loaded: ${rbd.fallback})` : ''}`;
  const state = rbd.state === 'fenced' ? 'FENCED (ownership lock lost: nothing more is written to the image)' : rbd.state;
  let parts = `rbd/${IMAGE} · ${escape(state)}`;
  if (rbd.pid !== null) parts += ` · pid ${rbd.pid}`;
  if (rbd.path === 'gateway' || rbd.restarts > 0) parts += ` · ${rbd.restarts} restarts?`;
  const addrs = rbd.clientAddrs ?? [];
  if (addrs.length > 0) parts += ` · clients? ${escape(addrs.join(' '))}`;
  // In flight moves with I/O: any count.
  if (rbd.inFlight !== undefined) parts += ' · \\d+ in flight';
  const error = rbd.state !== 'up' && rbd.error !== undefined ? `: ${escape(rbd.error)}` : '';
  return new RegExp(`^rbd via ${escape(via)}: ${parts}${error}$`);
}

describe.skipIf(skipReason !== null)(`web GUI: rbd path and ownership lock${skipReason !== null ? ` (skipped: ${skipReason})` : ''}`, () => {
  let dir = '';
  let daemon: Daemon | null = null;
  let browser: Browser | null = null;
  let imageMade = false;
  let page: Page;
  let problems: string[] = [];
  const byId = (id: string) => page.getByTestId(id);
  const r0 = async (): Promise<Rbd> => {
    const e = ((await daemon!.status()).elements as unknown as { name: string; rbd?: Rbd }[]).find((x) => x.name === 'r0');
    if (e?.rbd === undefined) throw new Error(`no rbd status for r0: ${JSON.stringify(e)}`);
    return e.rbd;
  };
  const until = <T>(what: string, probe: () => Promise<T>, ok: (v: T) => boolean, timeoutMs?: number): Promise<T> =>
    pageUntil(page, what, probe, ok, timeoutMs, () => daemon?.logs() ?? '');
  const header = async (): Promise<string> => {
    const info = await ceph('rbd', ['info', '--format', 'json', `rbd/${IMAGE}`]);
    if (info.code !== 0) throw new Error(explain(info));
    return `rbd_header.${(JSON.parse(info.stdout) as { id: string }).id}`;
  };

  const lockers = async (h: string): Promise<{ name: string; cookie: string }[]> => {
    const info = await ceph('rados', ['-p', 'rbd', 'lock', 'info', h, 'onestack', '--format', 'json']);
    if (info.code !== 0) throw new Error(explain(info));
    return (JSON.parse(info.stdout) as { lockers: { name: string; cookie: string }[] }).lockers;
  };

  beforeAll(async () => {
    const index = path.join(REPO_ROOT, 'packages/web/dist/index.html');
    if (!existsSync(index)) throw new Error(`the web GUI is not built (${index} is missing): run \`pnpm run build\``);
    // A running cluster is used as it is (other suites may share it); only a stopped one is started.
    if (!(await cephRunning())) await ensureCeph();
    const made = await ceph('rbd', ['create', `rbd/${IMAGE}`, '--size', `${IMAGE_MIB}M`]);
    expect(made.code, explain(made)).toBe(0);
    imageMade = true;
    dir = tempDir('gui-rbd');
    const { configPath } = await writeConfig(dir, [
      { name: 'l0', sizeBytes: IMAGE_MIB * MiB },
      { name: 'r0', uri: `rbd://rbd/${IMAGE}?conf=${CEPH_CONF}&id=admin` },
    ], [{ name: 'v', layout: 'raid1', elements: ['l0', 'r0'] }]);
    daemon = await Daemon.start({ dataDir: path.join(dir, 'data'), configPath, readyTimeoutMs: 90_000, env: { ONESTACK_RBD_LEASE_MS: String(LEASE_MS) } });
    ({ browser, page, problems } = await openDashboard(daemon.apiPort, daemon.dataDir, () => daemon?.logs() ?? ''));
  }, 300_000);

  afterAll(async () => {
    await browser?.close();
    await daemon?.stop();
    if (imageMade) {
      // The thief's lock of the last test, then the image (a watcher of a stopped client may linger briefly).
      const h = await header().catch(() => null);
      for (const l of h === null ? [] : await lockers(h)) await ceph('rados', ['-p', 'rbd', 'lock', 'break', h!, 'onestack', l.name, '--lock-cookie', l.cookie]);
      for (let i = 0; i < 20; i++) {
        const rm = await ceph('rbd', ['rm', '--no-progress', `rbd/${IMAGE}`]);
        if (rm.code === 0 || /No such file/.test(rm.stderr)) break;
        await sleep(3000);
      }
    }
    if (dir !== '') removeDir(dir);
  }, 120_000);

  it('shows the path status reports (librbd or the qemu-nbd gateway), its state and the lock line, in the Elements table and the volume card', async () => {
    const rbd = await until('r0 up with its lock', r0, (r) => r.state === 'up' && r.lock !== undefined && r.lock.lost === undefined, 60_000);
    const line = byId('rbd-r0');
    await line.waitFor();
    // The page shows exactly the path and state the daemon reports, whichever path that is.
    expect(await line.getAttribute('data-path')).toBe(rbd.path);
    expect(await line.getAttribute('data-state')).toBe('up');
    expect(await line.getAttribute('data-fallback')).toBe(rbd.fallback ?? '');
    const text = await until('the rbd line', async () => (await line.textContent()) ?? '', (t) => expectedLine(rbd).test(t));
    if (rbd.path === 'gateway') {
      expect(rbd.pid).toBeGreaterThan(1);
      expect(text).toContain(`pid ${rbd.pid} · ${rbd.restarts} restart`);
      expect(await line.getAttribute('data-pid')).toBe(String(rbd.pid));
    } else {
      expect(text).toMatch(/^rbd via librbd: /);
      expect(await line.getAttribute('data-client-addrs')).toBe((rbd.clientAddrs ?? []).join(' '));
    }
    expect(await line.getAttribute('class')).not.toContain('detail-warn');

    // The lock: held by this daemon's host id, with the lease it was started with.
    const hostId = readFileSync(path.join(daemon!.dataDir, 'host-id'), 'utf8').trim();
    expect(rbd.lock).toEqual({ host: hostId, leaseMs: LEASE_MS });
    expect(await byId('rbd-lock-r0').textContent()).toBe(`lock: held by this host (${hostId}) · lease 4 s`);
    expect(await byId('rbd-lock-r0').getAttribute('data-host')).toBe(hostId);
    // The same lines in the volume card; none under the local leg.
    expect(await byId('member-rbd-r0').textContent()).toMatch(expectedLine(rbd));
    expect(await byId('member-rbd-lock-r0').textContent()).toBe(`lock: held by this host (${hostId}) · lease 4 s`);
    expect(await byId('rbd-l0').count()).toBe(0);
    await screenshot(page, 'rbd-up');
    process.stdout.write(`gui-rbd: path ${rbd.path}${rbd.fallback !== undefined ? ` (fallback: ${rbd.fallback})` : ''}; GUI: ${text}\n`);
  }, 90_000);

  it('with the lock taken away behind its back, the page shows, live, "lock LOST" in the warning style and the state status reports', async () => {
    const h = await header();
    const hostId = readFileSync(path.join(daemon!.dataDir, 'host-id'), 'utf8').trim();
    const all = await lockers(h);
    const mine = all.find((l) => l.cookie === hostId);
    expect(mine, JSON.stringify(all)).toBeDefined();
    const broke = await ceph('rados', ['-p', 'rbd', 'lock', 'break', h, 'onestack', mine!.name, '--lock-cookie', mine!.cookie]);
    expect(broke.code, explain(broke)).toBe(0);
    const stole = await ceph('rados', ['-p', 'rbd', 'lock', 'get', h, 'onestack', '--lock-cookie', 'thief', '--lock-tag', 'onestack']);
    expect(stole.code, explain(stole)).toBe(0);

    // The daemon notices within a renewal (lease / 3); the page follows without a reload.
    const lock = byId('rbd-lock-r0');
    const lostText = await until('lock LOST on the page', async () => (await lock.textContent()) ?? '', (t) => t.startsWith('lock LOST: '), 30_000);
    const rbd = await r0();
    expect(rbd.lock?.lost).toBeDefined();
    expect(lostText).toBe(`lock LOST: ${rbd.lock!.lost!}`);
    expect(lostText).toMatch(/thief|removed/);
    expect(await lock.getAttribute('class')).toContain('detail-warn');
    expect(await lock.getAttribute('data-lost')).toBe(rbd.lock!.lost!);
    // The path line: the state status reports now (stopped, or fenced where the daemon fences), in the warning style.
    const line = byId('rbd-r0');
    const state = await until('state on the page = status', async () => [await line.getAttribute('data-state'), (await r0()).state],
      ([shown, reported]) => shown === reported && reported !== 'up', 15_000);
    expect(await line.getAttribute('class')).toContain('detail-warn');
    if (state[1] === 'fenced') {
      expect(await line.textContent()).toContain('FENCED (ownership lock lost: nothing more is written to the image)');
      expect(await line.getAttribute('class')).toContain('rbd-fenced');
    }
    expect(await line.textContent()).toMatch(expectedLine(await r0()));
    expect(await byId('member-rbd-lock-r0').textContent()).toBe(lostText);
    await screenshot(page, 'rbd-lock-lost');
  }, 90_000);

  // The path this daemon does not run and the fenced state are drawn from its status rewritten in
  // a page route (as test/gui-transport.test.ts does for reshape): this checks the drawing, not the engine.
  it('draws the other states from a rewritten status: librbd with client and in flight, FENCED, the gateway with its fallback reason', async () => {
    const hostId = readFileSync(path.join(daemon!.dataDir, 'host-id'), 'utf8').trim();
    expect(problems).toEqual([]);
    let rbd: Rbd = { path: 'librbd', pool: 'rbd', image: IMAGE, pid: null, restarts: 0, state: 'up', clientAddrs: ['127.0.0.1:0/4242'], inFlight: 3,
      lock: { host: hostId, leaseMs: 15_000 } };
    await page.route('**/api/v1/events', (route) => route.fulfill({ status: 503, body: 'no stream in this test' }));
    await page.route('**/api/v1/status', async (route) => {
      const response = await route.fetch();
      const body = await response.json() as { elements: Record<string, unknown>[]; volumes: { elements: Record<string, unknown>[] }[] };
      for (const e of [...body.elements, ...body.volumes.flatMap((v) => v.elements)]) if (e['name'] === 'r0') e['rbd'] = rbd;
      await route.fulfill({ response, json: body });
    });
    try {
      await page.reload();
      await until('live mode', () => byId('live-mode').getAttribute('data-mode'), (m) => m === 'polling');
      const line = byId('rbd-r0');
      await until('librbd drawn', () => line.textContent(), (t) => t === `rbd via librbd: rbd/${IMAGE} · up · client 127.0.0.1:0/4242 · 3 in flight`);
      expect(await byId('rbd-lock-r0').textContent()).toBe(`lock: held by this host (${hostId}) · lease 15 s`);
      expect(await line.getAttribute('data-in-flight')).toBe('3');
      rbd = { ...rbd, state: 'fenced', inFlight: 0, error: 'blocklisted by hostb', lock: { host: hostId, leaseMs: 15_000, lost: 'the lock is now held by host hostb' } };
      await until('fenced drawn', () => line.getAttribute('data-state'), (s) => s === 'fenced');
      expect(await line.textContent()).toBe(`rbd via librbd: rbd/${IMAGE} · FENCED (ownership lock lost: nothing more is written to the image) · client 127.0.0.1:0/4242 · 0 in flight: blocklisted by hostb`);
      expect(await line.getAttribute('class')).toContain('rbd-fenced');
      expect(await byId('rbd-lock-r0').textContent()).toBe('lock LOST: the lock is now held by host hostb');
      await screenshot(page, 'rbd-fenced');
      rbd = { path: 'gateway', pool: 'rbd', image: IMAGE, pid: 4321, restarts: 2, state: 'up', fallback: 'librbd.so.1: cannot open shared object file' };
      await until('gateway drawn', () => line.getAttribute('data-path'), (p) => p === 'gateway');
      expect(await line.textContent()).toBe(`rbd via qemu-nbd gateway (librbd not loaded: librbd.so.1: cannot open shared object file): rbd/${IMAGE} · up · pid 4321 · 2 restarts`);
      expect(await line.getAttribute('class')).not.toContain('detail-warn');
      expect(await byId('rbd-lock-r0').count()).toBe(0);
    } finally {
      await page.unrouteAll({ behavior: 'wait' });
    }
    // The refused event stream (503) is logged by the browser; nothing else may be.
    expect(problems.filter((p) => !/status of 503/.test(p))).toEqual([]);
  }, 90_000);
});
