// Acceptance (issue 8, soak): the short form of bench/soak.ts — a raid1 of a local image and an
// nbdkit leg under fio QD32 mixed random read/write with verify=crc32c for 50 s, the daemon's RSS
// and open fds sampled every second, then 1,000 NBD connect/disconnect cycles (NBD_OPT_GO, some
// with a READ, NBD_CMD_DISC or an abrupt close). No fio error (verify included), every cycle
// works, RSS stops rising (second-half slope within its bound, the last quarter no higher than
// the first half's peak + 48 MiB), fds back to the baseline after each phase, legs identical.
// The long form is one command: `node bench/dist/soak.js --minutes 30` (bench/README.md).
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { REPO_ROOT } from './lib/daemon.js';
import { removeDir, tempDir } from './lib/files.js';
import { explain, missingTools, run } from './lib/proc.js';

const SOAK_JS = path.join(REPO_ROOT, 'bench/dist/soak.js');
const LOAD_SECONDS = Number(process.env['SOAK_SECONDS'] ?? '50');
const CONNECTS = 1000;
const missing = missingTools(['nbdkit', 'fio']);

interface Report {
  loadSeconds: number; connects: number;
  baseline: { rssBytes: number; fds: number; peerFds: number };
  fio: { code: number | null; error: number; readBytes: number; writeBytes: number };
  afterLoad: { rssBytes: number; fds: number; rssMaxBytes: number; slopeBoundMiBPerMin: number;
    trend: { slopeMiBPerMin: number; firstHalfMaxBytes: number; lastQuarterMaxBytes: number } };
  cycles: { ok: number; failures: string[] };
  end: { rssBytes: number; fds: number; peerFds: number };
  legsFirstDifference: number; volumeState: string; elementErrors: number;
  problems: string[];
  samples: { t: number; phase: string; rssBytes: number; fds: number }[];
}

const MiB = 1024 * 1024;

describe.skipIf(missing !== null)(`soak: raid1 local + nbdkit under fio verify, then ${CONNECTS} connect cycles${missing !== null ? ` (skipped: ${missing})` : ''}`, () => {
  let dir = '';
  beforeAll(() => { dir = tempDir('soak'); });
  afterAll(() => { if (dir !== '') removeDir(dir); });

  it(`${LOAD_SECONDS} s of QD32 randrw with verify and ${CONNECTS} connect/disconnect cycles: no error, nothing grows`, async () => {
    expect(existsSync(SOAK_JS), `${SOAK_JS} is missing: run \`pnpm exec tsc -p bench\` (./scripts/test.sh does)`).toBe(true);
    const json = path.join(dir, 'soak.json');
    const r = await run(process.execPath, [SOAK_JS, '--seconds', String(LOAD_SECONDS), '--connects', String(CONNECTS), '--json', json, '--dir', dir, '--quiet'],
      { timeoutMs: (LOAD_SECONDS + 180) * 1000, cwd: REPO_ROOT });
    console.log(r.stdout.trim());
    expect(r.code, explain(r)).toBe(0);
    const rep = JSON.parse(readFileSync(json, 'utf8')) as Report;
    expect(rep.problems).toEqual([]);
    expect(rep.fio.error).toBe(0);
    expect(rep.fio.writeBytes).toBeGreaterThan(0);
    expect(rep.fio.readBytes, 'reads, verify reads included').toBeGreaterThan(rep.fio.writeBytes / 2);
    expect(rep.cycles.ok, rep.cycles.failures.join('\n')).toBe(CONNECTS);
    // Sampled every second through the load.
    expect(rep.samples.filter((s) => s.phase === 'load').length).toBeGreaterThanOrEqual(LOAD_SECONDS * 0.8);
    expect(rep.samples.every((s) => Number.isFinite(s.rssBytes) && s.fds > 0), 'the daemon stayed up').toBe(true);
    expect(rep.afterLoad.fds, 'fds back to baseline after the load').toBeLessThanOrEqual(rep.baseline.fds);
    expect(rep.end.fds, `fds back to baseline after ${CONNECTS} connect cycles`).toBeLessThanOrEqual(rep.baseline.fds);
    expect(rep.end.peerFds, 'nbdkit holds no more connections than at the start').toBeLessThanOrEqual(rep.baseline.peerFds);
    expect(rep.afterLoad.trend.slopeMiBPerMin).toBeLessThanOrEqual(rep.afterLoad.slopeBoundMiBPerMin);
    expect(rep.afterLoad.trend.lastQuarterMaxBytes).toBeLessThanOrEqual(rep.afterLoad.trend.firstHalfMaxBytes + 48 * MiB);
    expect(rep.end.rssBytes, 'RSS after the connect cycles near what it was before them').toBeLessThanOrEqual(rep.afterLoad.rssBytes + 24 * MiB);
    expect(rep.legsFirstDifference, 'local and nbdkit legs identical').toBe(-1);
    expect(rep.volumeState).toBe('optimal');
    expect(rep.elementErrors).toBe(0);
  }, (LOAD_SECONDS + 240) * 1000);
});
