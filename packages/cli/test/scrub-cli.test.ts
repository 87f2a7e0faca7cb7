// Scrub and replace through the API and the CLI, against the in-memory engine (its scrub moves in
// timed steps, each a 'change' event): routes and their validation, progress on the SSE stream,
// `volume scrub --wait` exit codes, `element replace` finding the volume, the progress bar in
// `status --watch`, and the pure rendering of progress and results. The real engine and daemon:
// packages/engine/test/scrub.test.ts and test/scrub.test.ts.
import * as path from 'node:path';
import { beforeEach, describe, expect, it } from 'vitest';
import type { ScrubStatus } from '@onestack/engine';
import { startApiServer } from '../src/api/server.js';
import { run } from '../src/cli.js';
import { redrawInPlace } from '../src/commands/status.js';
import { formatEta, progressBar, progressLine, scrubSummary } from '../src/render.js';
import { FakeEngine, useFakeDaemon } from './fake-engine.js';
import { captureIo, type CapturedIo } from './helpers.js';

const TOKEN = 'scrub-token-0123456789abcdef012345';
const daemon = useFakeDaemon(TOKEN);
beforeEach(() => {
  daemon.engine.scrubPlan = { steps: 3, stepMs: 60, mismatchedUnits: 0, repairable: true };
});

async function api(method: string, path: string, body?: unknown): Promise<Response> {
  return fetch(`http://127.0.0.1:${daemon.port}/api/v1${path}`, {
    method, headers: { authorization: `Bearer ${TOKEN}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    body: body === undefined ? null : JSON.stringify(body), signal: AbortSignal.timeout(5000),
  });
}

async function cli(argv: readonly string[], tty = false): Promise<{ code: number; out: string; err: string }> {
  const base: CapturedIo = captureIo({ ONESTACK_TOKEN: TOKEN });
  const code = await run([...argv, '--api', `127.0.0.1:${daemon.port}`], { ...base, stdoutIsTty: tty });
  return { code, out: base.out(), err: base.err() };
}

const finished = async (volume: string): Promise<void> => {
  // Bounded: the fake scrub ends after steps × stepMs.
  for (let i = 0; i < 100 && daemon.engine.volumes.get(volume)?.rebuild !== null; i++) await new Promise((r) => setTimeout(r, 20));
};

describe('scrub and replace routes', () => {
  it('POST /volumes/NAME/scrub answers 202 with the run, 409 while one runs, DELETE cancels', async () => {
    daemon.engine.scrubPlan = { ...daemon.engine.scrubPlan, steps: 50 };
    const res = await api('POST', '/volumes/m/scrub', { repair: true, maxMiBPerSec: 50 });
    expect(res.status).toBe(202);
    const body = await res.json() as Record<string, unknown>;
    expect(body).toMatchObject({ volume: 'm', kind: 'repair', progress: { kind: 'repair', element: null, percent: 0 } });
    expect(typeof body['startedMs']).toBe('number');
    expect(daemon.engine.scrubs.at(-1)).toEqual({ volume: 'm', opts: { repair: true, maxMiBPerSec: 50 } });
    const again = await api('POST', '/volumes/m/scrub', {});
    expect(again.status).toBe(409);
    expect(await again.json()).toMatchObject({ code: 'conflict' });
    expect(await (await api('DELETE', '/volumes/m/scrub')).json()).toEqual({ volume: 'm', cancelled: true });
    expect(await (await api('DELETE', '/volumes/m/scrub')).json()).toEqual({ volume: 'm', cancelled: false });
    expect(await (await api('GET', '/volumes/m')).json()).toMatchObject({ rebuild: null, scrub: { outcome: 'cancelled' } });
  });

  it('answers 400 naming the field for bad scrub and replace bodies, 404 for an unknown volume', async () => {
    const cases: [string, unknown, string][] = [
      ['/volumes/m/scrub', { repair: 'yes' }, 'repair'], ['/volumes/m/scrub', { maxMiBPerSec: -1 }, 'maxMiBPerSec'],
      ['/volumes/m/scrub', { maxMiBPerSec: '5' }, 'maxMiBPerSec'], ['/volumes/m/scrub', { fast: true }, 'fast'],
      ['/volumes/m/replace', { old: 'd0' }, 'new'], ['/volumes/m/replace', { old: 'd0', new: 'd0' }, 'new'],
      ['/volumes/m/replace', { old: '../x', new: 'd2' }, 'old'],
    ];
    for (const [path, body, where] of cases) {
      const res = await api('POST', path, body);
      expect(res.status, JSON.stringify(body)).toBe(400);
      expect(await res.json()).toMatchObject({ code: 'invalid', where });
    }
    expect((await api('POST', '/volumes/nope/scrub', {})).status).toBe(404);
    expect((await api('DELETE', '/volumes/nope/scrub')).status).toBe(404);
  });

  it('streams scrub progress as SSE change events', async () => {
    daemon.engine.scrubPlan = { ...daemon.engine.scrubPlan, steps: 4, stepMs: 40 };
    const controller = new AbortController();
    const res = await fetch(`http://127.0.0.1:${daemon.port}/api/v1/events`, { headers: { authorization: `Bearer ${TOKEN}` }, signal: controller.signal });
    const reader = res.body!.getReader();
    const decoder = new TextDecoder();
    let text = '';
    expect((await api('POST', '/volumes/m/scrub', {})).status).toBe(202);
    const deadline = Date.now() + 5000;
    while (!/"scrub":\{"kind":"check"/.test(text) && Date.now() < deadline) {
      const { value, done } = await reader.read();
      if (done) break;
      text += decoder.decode(value);
    }
    controller.abort();
    const percents = [...text.matchAll(/event: change\ndata: .*?"rebuild":\{"kind":"check","element":null,"percent":(\d+)/g)].map((m) => Number(m[1]));
    expect(percents).toEqual([0, 25, 50, 75]);
    expect(text).toMatch(/event: change\ndata: .*"rebuild":null,"scrub":\{"kind":"check"/);
  });

  it('POST /volumes/NAME/replace answers 202 with the rebuilding volume; 501 when the engine cannot replace', async () => {
    const res = await api('POST', '/volumes/m/replace', { old: 'd1', new: 'd2' });
    expect(res.status).toBe(202);
    expect(await res.json()).toMatchObject({ name: 'm', state: 'rebuilding', rebuild: { kind: 'rebuild', element: 'd2' } });
    expect(daemon.engine.replaced.at(-1)).toEqual({ volume: 'm', old: 'd1', new: 'd2' });
    expect((await api('POST', '/volumes/m/replace', { old: 'd2', new: 'd0' })).status).toBe(409);
    const bare = Object.assign(new FakeEngine(), { replaceElement: undefined });
    const other = await startApiServer({ engine: bare, token: TOKEN }, { host: '127.0.0.1', port: 0 });
    try {
      const r = await fetch(`http://127.0.0.1:${other.port}/api/v1/volumes/m/replace`, {
        method: 'POST', headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' }, body: JSON.stringify({ old: 'a', new: 'b' }),
      });
      expect(r.status).toBe(501);
    } finally {
      await other.close();
    }
    // Back to a healthy volume for the CLI tests below.
    daemon.engine.volumes.set('m', { ...daemon.engine.volumes.get('m')!, state: 'optimal', rebuild: null });
  });
});

describe('onestack volume scrub / element replace / status --watch', () => {
  it('scrub --wait prints the result: exit 0 when clean or repaired, 1 when a check leaves mismatches', async () => {
    const clean = await cli(['volume', 'scrub', 'm', '--wait']);
    expect(clean.code, clean.err).toBe(0);
    expect(clean.out).toMatch(/^check of volume m \(1\.00 GiB\)\.\.\.\ncheck of m: done in \d+\.\d s, 1\.00 GiB compared .*no mismatch\n$/);
    daemon.engine.scrubPlan = { ...daemon.engine.scrubPlan, mismatchedUnits: 3 };
    const found = await cli(['volume', 'scrub', 'm', '--wait']);
    expect(found.code).toBe(1);
    expect(found.out).toContain('3 units mismatched (30 bytes differ)');
    expect(found.err).toBe('onestack: error: volume m: 3 mismatched units left as found (volume scrub)\nonestack: hint: repair with: onestack volume scrub m --repair\n');
    const repaired = await cli(['volume', 'scrub', 'm', '--repair', '--wait', '--json']);
    expect(repaired.code).toBe(0);
    expect(JSON.parse(repaired.out)).toMatchObject({ kind: 'repair', outcome: 'done', mismatchedUnits: 3, repairedUnits: 3 });
  });

  it('scrub without --wait says how to follow it; on a terminal --wait draws the bar in place; --cancel stops it', async () => {
    daemon.engine.scrubPlan = { ...daemon.engine.scrubPlan, steps: 6, stepMs: 150 };
    const started = await cli(['volume', 'scrub', 'm', '--max-mib-per-sec', '100']);
    expect(started).toMatchObject({ code: 0, out: 'started check of volume m (1.00 GiB); follow it with: onestack status --watch\n' });
    expect(daemon.engine.scrubs.at(-1)?.opts).toEqual({ repair: false, maxMiBPerSec: 100 });
    expect((await cli(['volume', 'scrub', 'm', '--cancel'])).out).toBe('cancelled the scrub of volume m\n');
    const tty = await cli(['volume', 'scrub', 'm', '--repair', '--wait'], true);
    expect(tty.code).toBe(0);
    expect(tty.out).toMatch(/\r\[=+> *\] \d+\.\d%  512\.0 MiB\/s  ETA \d:\d\d  repair of m\x1b\[K/);
    await finished('m');
  });

  it('scrub usage errors exit 2 before asking; daemon refusals exit 1', async () => {
    for (const argv of [['volume', 'scrub'], ['volume', 'scrub', 'm', '--cancel', '--repair'], ['volume', 'scrub', 'm', '--max-mib-per-sec', 'fast'], ['volume', 'scrub', 'm', '--fix']]) {
      const r = await cli(argv);
      expect(r.code, argv.join(' ')).toBe(2);
    }
    const missing = await cli(['volume', 'scrub', 'nope']);
    expect(missing.code).toBe(1);
    expect(missing.err).toMatch(/^onestack: error: no volume named nope/);
  });

  it('element replace finds the volume of OLD, or takes --volume; clear errors otherwise', async () => {
    const r = await cli(['element', 'replace', 'd0', 'd3']);
    expect(r.code, r.err).toBe(0);
    expect(r.out).toBe('replacing element d0 with d3 in volume m: rebuilding (rebuild 0.0%); follow it with: onestack status --watch\n');
    expect(daemon.engine.replaced.at(-1)).toEqual({ volume: 'm', old: 'd0', new: 'd3' });
    const second = await cli(['element', 'replace', 'd2', 'd0', '--volume', 'm']);
    expect(second.code, second.err).toBe(0);
    const notMember = await cli(['element', 'replace', 'd1', 'd2', '--volume', 'm']);
    expect(notMember.code).toBe(2); // the engine says invalid: HTTP 400
    expect((await cli(['element', 'replace', 'zz', 'd2'])).err).toMatch(/^onestack: error: no element named zz/);
    expect((await cli(['element', 'replace', 'd2', 'd2'])).code).toBe(2);
    expect((await cli(['element', 'replace', 'd2'])).code).toBe(2);
    daemon.engine.volumes.set('m', { ...daemon.engine.volumes.get('m')!, state: 'optimal', rebuild: null });
  });

  it('status --watch shows the progress bar line while a scrub runs', async () => {
    daemon.engine.scrubPlan = { ...daemon.engine.scrubPlan, steps: 40, stepMs: 100 };
    await cli(['volume', 'scrub', 'm']);
    const plain = await cli(['status', '--watch', '--count', '2']);
    expect(plain.code).toBe(0);
    expect(plain.out.match(/^ {6}\[[= >]{20}\] \d+\.\d%  512\.0 MiB\/s  ETA (\d+:\d\d|--:--)  check of m$/gm)?.length).toBe(2);
    expect(plain.out).not.toContain('\x1b');
    const tty = await cli(['status', '--watch', '--count', '2'], true);
    expect(tty.out).toContain('(every 0.25s, Ctrl-C to stop)');
    expect(tty.out.startsWith('\x1b[H')).toBe(true);
    await cli(['volume', 'scrub', 'm', '--cancel']);
  });
});

describe('progress rendering', () => {
  it('draws bars, ETAs and progress lines', () => {
    expect(progressBar(0)).toBe(`[>${' '.repeat(19)}]`);
    expect(progressBar(42)).toBe(`[========>${' '.repeat(11)}]`);
    expect(progressBar(100)).toBe(`[${'='.repeat(20)}]`);
    expect(progressBar(Number.NaN)).toBe(progressBar(0));
    expect([formatEta(null), formatEta(37.4), formatEta(725), formatEta(3723)]).toEqual(['--:--', '0:37', '12:05', '1:02:03']);
    expect(progressLine({ kind: 'resync', element: 'd1', percent: 5, mibPerSec: 9.96, etaSeconds: null, doneBytes: 1, totalBytes: 20 }, 'v'))
      .toBe(`[=>${' '.repeat(18)}] 5.0%  10.0 MiB/s  ETA --:--  resync of d1`);
  });

  it('summarises scrub results', () => {
    const base: ScrubStatus = {
      kind: 'repair', startedMs: 1000, finishedMs: 3000, outcome: 'done', checkedBytes: 64 * 2 ** 20, skippedBytes: 0,
      mismatchedUnits: 4, mismatchedBytes: 4197, repairedUnits: 4, ioErrors: 0,
    };
    expect(scrubSummary(base, 'm')).toBe('repair of m: done in 2.0 s, 64.00 MiB compared (32.0 MiB/s), 4 units mismatched (4197 bytes differ), 4 repaired');
    expect(scrubSummary({ ...base, kind: 'check', outcome: 'failed', message: 'boom', mismatchedUnits: 0, skippedBytes: 2 ** 20, ioErrors: 1 }, 'm'))
      .toBe('check of m: failed after 2.0 s (boom), 64.00 MiB compared (32.0 MiB/s), 1.00 MiB skipped (fewer than two usable copies), no mismatch, 1 I/O error');
  });

  it('redraws a frame in place', () => {
    expect(redrawInPlace('a\nbb\n')).toBe('\x1b[Ha\x1b[K\nbb\x1b[K\n\x1b[J');
  });
});

describe('element add and secrets', () => {
  it('refuses a secret inside the URI without sending anything, and passes --secret-file as an absolute path', async () => {
    const before = daemon.engine.lastAdd;
    const inline = await cli(['element', 'add', 'iscsi://alice%s3cretPassw0rd@10.0.0.5/iqn.2026-11.lab:d/1']);
    expect(inline.code).toBe(2);
    expect(inline.err).toMatch(/carries a secret/);
    expect(inline.out + inline.err).not.toContain('s3cretPassw0rd');
    expect(daemon.engine.lastAdd).toBe(before);
    const ok = await cli(['element', 'add', 'iscsi://alice@10.0.0.5/iqn.2026-11.lab:d/1', '--secret-file', 'chap.secret', '--name', 'chap0']);
    expect(ok.code, ok.err).toBe(0);
    expect(daemon.engine.lastAdd?.secretFile).toBe(path.resolve('chap.secret'));
  });
});

