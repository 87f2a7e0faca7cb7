// Soak (issue 8): a raid1 of a local image and an nbdkit leg under fio QD32 mixed random
// read/write with verify=crc32c for a bounded time, sampling the daemon's RSS and open file
// descriptors every second; then NBD connect/disconnect cycles (handshake, NBD_OPT_GO, sometimes a
// READ, then NBD_CMD_DISC or an abrupt close). Passes when fio reports no error (verify
// included), every cycle worked, the RSS slope over the second half of the load stays under a
// bound, descriptors come back to their baseline after each phase, the legs end identical and
// the volume optimal. Prints one line per sample on stdout, progress on stderr; exit 1 on failure.
// Build: pnpm exec tsc -p bench    Run: node bench/dist/soak.js --minutes 30 [--json FILE]
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { open, writeFile } from 'node:fs/promises';
import { sparseImage } from './lib/images.js';
import { request } from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { nbdCycle } from './lib/nbd-cycle.js';
import { freePort, killAll, runCommand, startServer, stopServer, waitReady, type Server } from './lib/proc.js';
import { Sampler, median, rssTrend, settleFds, type RssTrend, type Sample } from './lib/soak-sample.js';

const REPO_ROOT = fileURLToPath(new URL('../..', import.meta.url));
const CLI_MAIN = path.join(REPO_ROOT, 'packages/cli/dist/main.js');
const MiB = 1024 * 1024;
const HEADER_BYTES = 4 * MiB;
const SAMPLE_MS = 1000;
const FD_SETTLE_MS = 15_000;
const WARMUP_SECONDS = 3;
const CYCLE_TIMEOUT_MS = 10_000;

const { values: opt } = parseArgs({
  options: {
    minutes: { type: 'string' }, seconds: { type: 'string' }, connects: { type: 'string', default: '1000' },
    concurrency: { type: 'string', default: '4' }, 'image-mib': { type: 'string', default: '256' },
    'rss-slope-max': { type: 'string', default: '4' }, 'rss-plateau-margin': { type: 'string', default: '48' },
    'rss-connect-growth-max': { type: 'string', default: '24' },
    json: { type: 'string' }, dir: { type: 'string' }, quiet: { type: 'boolean', default: false },
  },
});
const LOAD_SECONDS = opt.seconds !== undefined ? Number(opt.seconds) : Number(opt.minutes ?? '10') * 60;
const CONNECTS = Number(opt.connects);
const CONCURRENCY = Math.max(1, Math.min(64, Number(opt.concurrency)));
const IMAGE_BYTES = Number(opt['image-mib']) * MiB;
/**
 * RSS may rise this fast (MiB/min) over the second half of the load, or as fast as the GC noise
 * could fake over that half (short runs), and no faster.
 */
const RSS_SLOPE_MAX = Number(opt['rss-slope-max']);
/** The last quarter of the load may top the first half's highest RSS by this much (MiB): a plateau. */
const RSS_PLATEAU_MARGIN = Number(opt['rss-plateau-margin']);
/** RSS after the connect cycles may exceed RSS before them by this much (MiB). */
const RSS_CONNECT_GROWTH_MAX = Number(opt['rss-connect-growth-max']);

function progress(msg: string): void {
  process.stderr.write(`[soak ${new Date().toISOString().slice(11, 19)}] ${msg}\n`);
}

const mib = (b: number): string => (b / MiB).toFixed(1);

let tempDirToRemove: string | undefined;

interface Setup { dir: string; nbdkit: Server; daemon: Server; nbdPort: number; apiPort: number; dataDir: string; local: string; remote: string }

async function setUp(): Promise<Setup> {
  const base = opt.dir ?? os.tmpdir();
  mkdirSync(base, { recursive: true });
  const dir = mkdtempSync(path.join(base, 'onestack-soak-'));
  tempDirToRemove = dir;
  const [local, remote] = [path.join(dir, 'l0.img'), path.join(dir, 'r0.img')];
  await sparseImage(local, HEADER_BYTES + IMAGE_BYTES);
  await sparseImage(remote, HEADER_BYTES + IMAGE_BYTES);
  const peerPort = await freePort();
  const nbdkit = startServer('nbdkit', 'nbdkit', ['-f', '--exit-with-parent', '-p', String(peerPort), '-i', '127.0.0.1', 'file', `dir=${dir}`]);
  await waitReady(nbdkit, peerPort, 15_000);
  const config = path.join(dir, 'onestack.yaml');
  await writeFile(config, [
    'elements:',
    `  - { name: l0, uri: "file:${local}", cache: writeback }`,
    `  - { name: r0, uri: "nbd://127.0.0.1:${peerPort}/r0.img", timeoutMs: 10000 }`,
    'volumes:',
    '  - { name: soak, layout: raid1, elements: [l0, r0] }',
  ].join('\n') + '\n');
  const [nbdPort, apiPort] = [await freePort(), await freePort()];
  const dataDir = path.join(dir, 'data');
  const daemon = startServer('onestack', process.execPath, [CLI_MAIN, 'serve', '--config', config, '--data-dir', dataDir,
    '--nbd', `127.0.0.1:${nbdPort}`, '--api', `127.0.0.1:${apiPort}`], REPO_ROOT);
  await waitReady(daemon, nbdPort, 30_000, /onestack: ready/);
  return { dir, nbdkit, daemon, nbdPort, apiPort, dataDir, local, remote };
}

/** GET status on a connection of its own that closes (agent: false): no keep-alive descriptor left behind. */
function status(s: Setup): Promise<{ volumes: { name: string; state: string; elements: { name: string; state: string; errors: number }[] }[] }> {
  const token = readFileSync(path.join(s.dataDir, 'api-token'), 'utf8').trim();
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port: s.apiPort, path: '/api/v1/status', agent: false, headers: { authorization: `Bearer ${token}`, connection: 'close' }, timeout: 10_000 }, (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (d: string) => { body += d; }).on('end', () => {
        try { resolve(JSON.parse(body)); } catch (e) { reject(new Error(`status: ${res.statusCode ?? '?'} ${body.slice(0, 200)} (${String(e)})`)); }
      });
    });
    req.on('timeout', () => req.destroy(new Error('status timed out')));
    req.on('error', reject);
    req.end();
  });
}

interface FioResult { code: number | null; error: number; readBytes: number; writeBytes: number; readIops: number; writeIops: number; tail: string }

async function fio(s: Setup, seconds: number, verify: boolean): Promise<FioResult> {
  const args = [
    '--name=soak', '--ioengine=nbd', `--uri=nbd://127.0.0.1:${s.nbdPort}/soak`, '--rw=randrw', '--rwmixread=50',
    '--bssplit=4k/60:64k/30:1m/10', '--iodepth=32', `--size=${IMAGE_BYTES}`, '--time_based', `--runtime=${seconds}`,
    '--output-format=json', '--verify_state_save=0',
    ...(verify ? ['--verify=crc32c', '--verify_backlog=4096', '--verify_fatal=1', '--verify_dump=0'] : []),
  ];
  const r = await runCommand('fio', args, (seconds + 120) * 1000, s.dir);
  let job: { error: number; read: { io_bytes: number; iops: number }; write: { io_bytes: number; iops: number } } | undefined;
  try {
    job = (JSON.parse(r.stdout.slice(Math.max(0, r.stdout.indexOf('{')))) as { jobs: NonNullable<typeof job>[] }).jobs[0];
  } catch {
    job = undefined;
  }
  return {
    code: r.code, error: job?.error ?? -1, readBytes: job?.read.io_bytes ?? 0, writeBytes: job?.write.io_bytes ?? 0,
    readIops: job?.read.iops ?? 0, writeIops: job?.write.iops ?? 0, tail: `${r.stderr.slice(-1500)}${job === undefined ? r.stdout.slice(-1500) : ''}`,
  };
}

/** `count` cycles, `concurrency` at a time; variants by index: READ on odd ones, abrupt close on every fourth. */
async function connectCycles(s: Setup, count: number, concurrency: number): Promise<{ ok: number; failures: string[]; seconds: number }> {
  const started = Date.now();
  const failures: string[] = [];
  let next = 0;
  let ok = 0;
  const lane = async (): Promise<void> => {
    while (next < count) {
      const i = next++;
      try {
        await nbdCycle(s.nbdPort, 'soak', { read: i % 2 === 1, end: i % 4 === 3 ? 'abrupt' : 'disc', timeoutMs: CYCLE_TIMEOUT_MS });
        ok++;
      } catch (e) {
        if (failures.length < 20) failures.push(`cycle ${i}: ${(e as Error).message}`);
      }
    }
  };
  await Promise.all(Array.from({ length: concurrency }, lane));
  return { ok, failures, seconds: (Date.now() - started) / 1000 };
}

async function firstDifference(a: string, b: string): Promise<number> {
  const [fa, fb] = [await open(a, 'r'), await open(b, 'r')];
  try {
    const [ba, bb] = [Buffer.alloc(4 * MiB), Buffer.alloc(4 * MiB)];
    for (let pos = 0; pos < IMAGE_BYTES; pos += ba.length) {
      await fa.read(ba, 0, ba.length, HEADER_BYTES + pos);
      await fb.read(bb, 0, bb.length, HEADER_BYTES + pos);
      if (!ba.equals(bb)) return pos + ba.findIndex((x, i) => x !== bb[i]);
    }
    return -1;
  } finally { await fa.close(); await fb.close(); }
}

export interface SoakReport {
  loadSeconds: number; connects: number;
  baseline: { rssBytes: number; fds: number; peerFds: number };
  fio: FioResult;
  afterLoad: { rssBytes: number; fds: number; peerFds: number; rssMaxBytes: number; trend: RssTrend; slopeBoundMiBPerMin: number };
  cycles: { ok: number; failures: string[]; seconds: number };
  end: { rssBytes: number; fds: number; peerFds: number };
  legsFirstDifference: number;
  volumeState: string; elementErrors: number;
  problems: string[];
  samples: Sample[];
}

function judge(r: Omit<SoakReport, 'problems' | 'samples'>): string[] {
  const p: string[] = [];
  if (r.fio.code !== 0 || r.fio.error !== 0) p.push(`fio failed (exit ${String(r.fio.code)}, job error ${r.fio.error}):\n${r.fio.tail}`);
  if (r.fio.readBytes === 0 || r.fio.writeBytes === 0) p.push('fio moved no data one way');
  if (r.cycles.ok !== r.connects) p.push(`${r.connects - r.cycles.ok} of ${r.connects} connect cycles failed: ${r.cycles.failures.join('; ')}`);
  const t = r.afterLoad.trend;
  if (t.slopeMiBPerMin > r.afterLoad.slopeBoundMiBPerMin) {
    p.push(`RSS grew ${t.slopeMiBPerMin.toFixed(2)} MiB/min over the second half of the load (bound ${r.afterLoad.slopeBoundMiBPerMin.toFixed(2)})`);
  }
  if (t.lastQuarterMaxBytes > t.firstHalfMaxBytes + RSS_PLATEAU_MARGIN * MiB) {
    p.push(`RSS kept rising: ${mib(t.lastQuarterMaxBytes)} MiB in the last quarter of the load, at most ${mib(t.firstHalfMaxBytes)} MiB in the first half (margin ${RSS_PLATEAU_MARGIN} MiB)`);
  }
  if (r.afterLoad.fds > r.baseline.fds) p.push(`open fds after the load: ${r.afterLoad.fds}, baseline ${r.baseline.fds}`);
  if (r.end.fds > r.baseline.fds) p.push(`open fds after ${r.connects} connect cycles: ${r.end.fds}, baseline ${r.baseline.fds}`);
  if (r.end.peerFds > r.baseline.peerFds) p.push(`nbdkit fds at the end: ${r.end.peerFds}, baseline ${r.baseline.peerFds}`);
  if (r.end.rssBytes > r.afterLoad.rssBytes + RSS_CONNECT_GROWTH_MAX * MiB) {
    p.push(`RSS after the connect cycles ${mib(r.end.rssBytes)} MiB, before them ${mib(r.afterLoad.rssBytes)} MiB (bound +${RSS_CONNECT_GROWTH_MAX} MiB)`);
  }
  if (r.legsFirstDifference >= 0) p.push(`the legs differ at data offset ${r.legsFirstDifference}`);
  if (r.volumeState !== 'optimal' || r.elementErrors !== 0) p.push(`volume ${r.volumeState}, ${r.elementErrors} element errors`);
  return p;
}

async function soak(s: Setup): Promise<SoakReport> {
  const pid = s.daemon.child.pid!;
  const sampler = new Sampler(pid, s.nbdkit.child.pid, (x) => {
    if (!opt.quiet) process.stdout.write(`sample t=${x.t.toFixed(0)}s phase=${x.phase} rssMiB=${mib(x.rssBytes)} fds=${x.fds} nbdkitFds=${x.peerFds}\n`);
  });
  sampler.start(SAMPLE_MS);
  try {
    sampler.phase = 'warmup';
    progress(`warm-up: ${WARMUP_SECONDS} s of fio (opens the remote link, warms the heap)`);
    const warm = await fio(s, WARMUP_SECONDS, false);
    if (warm.code !== 0) throw new Error(`warm-up fio failed:\n${warm.tail}`);
    sampler.phase = 'idle';
    await new Promise((r) => setTimeout(r, 3 * SAMPLE_MS));
    const idle = [sampler.take(), sampler.take(), sampler.take()];
    const baseline = { rssBytes: median(idle.map((x) => x.rssBytes)), fds: Math.max(...idle.map((x) => x.fds)), peerFds: Math.max(...idle.map((x) => x.peerFds)) };
    progress(`baseline: RSS ${mib(baseline.rssBytes)} MiB, ${baseline.fds} fds (nbdkit ${baseline.peerFds}); fio QD32 randrw verify=crc32c for ${LOAD_SECONDS} s`);
    sampler.phase = 'load';
    const fioResult = await fio(s, LOAD_SECONDS, true);
    const load = sampler.of('load');
    sampler.phase = 'settle';
    const fdsAfterLoad = await settleFds(pid, baseline.fds, FD_SETTLE_MS);
    const a = sampler.take();
    const trend = rssTrend(load);
    const afterLoad = {
      rssBytes: a.rssBytes, fds: fdsAfterLoad, peerFds: a.peerFds, rssMaxBytes: Math.max(...load.map((x) => x.rssBytes)),
      trend, slopeBoundMiBPerMin: Math.max(RSS_SLOPE_MAX, trend.noiseMiBPerMin),
    };
    progress(`fio: exit ${String(fioResult.code)}, error ${fioResult.error}, ${mib(fioResult.readBytes)} MiB read, ${mib(fioResult.writeBytes)} MiB written; ` +
      `RSS slope ${trend.slopeMiBPerMin.toFixed(2)} MiB/min (bound ${afterLoad.slopeBoundMiBPerMin.toFixed(2)}); ${CONNECTS} connect cycles`);
    sampler.phase = 'connect';
    const cycles = await connectCycles(s, CONNECTS, CONCURRENCY);
    sampler.phase = 'end';
    const fdsEnd = await settleFds(pid, baseline.fds, FD_SETTLE_MS);
    await new Promise((r) => setTimeout(r, SAMPLE_MS));
    const e = sampler.take();
    const end = { rssBytes: e.rssBytes, fds: fdsEnd, peerFds: e.peerFds };
    const st = await status(s);
    const v = st.volumes.find((x) => x.name === 'soak');
    const partial = {
      loadSeconds: LOAD_SECONDS, connects: CONNECTS, baseline, fio: fioResult, afterLoad, cycles, end,
      legsFirstDifference: await firstDifference(s.local, s.remote),
      volumeState: v?.state ?? 'absent', elementErrors: (v?.elements ?? []).reduce((n, x) => n + x.errors, 0),
    };
    return { ...partial, problems: judge(partial), samples: sampler.samples };
  } finally {
    sampler.stop();
  }
}

function printSummary(r: SoakReport): void {
  const out = [
    `soak: ${r.loadSeconds} s of fio QD32 randrw verify=crc32c on raid1 local + nbdkit: exit ${String(r.fio.code)}, error ${r.fio.error}, ` +
      `${mib(r.fio.readBytes)} MiB read (${r.fio.readIops.toFixed(0)} IOPS), ${mib(r.fio.writeBytes)} MiB written (${r.fio.writeIops.toFixed(0)} IOPS)`,
    `soak: RSS ${mib(r.baseline.rssBytes)} MiB baseline → ${mib(r.afterLoad.rssMaxBytes)} MiB peak → ${mib(r.afterLoad.rssBytes)} MiB after the load ` +
      `(second-half slope ${r.afterLoad.trend.slopeMiBPerMin.toFixed(2)} MiB/min, bound ${r.afterLoad.slopeBoundMiBPerMin.toFixed(2)}; ` +
      `last-quarter peak ${mib(r.afterLoad.trend.lastQuarterMaxBytes)} vs first-half peak ${mib(r.afterLoad.trend.firstHalfMaxBytes)} MiB) → ${mib(r.end.rssBytes)} MiB after the connect cycles`,
    `soak: fds ${r.baseline.fds} baseline → ${r.afterLoad.fds} after the load → ${r.end.fds} after the connect cycles (nbdkit ${r.baseline.peerFds} → ${r.end.peerFds})`,
    `soak: ${r.cycles.ok}/${r.connects} connect/disconnect cycles in ${r.cycles.seconds.toFixed(1)} s; legs ${r.legsFirstDifference < 0 ? 'identical' : `differ at ${r.legsFirstDifference}`}; volume ${r.volumeState}`,
    r.problems.length === 0 ? 'soak: PASS' : `soak: FAIL\n${r.problems.map((p) => `  - ${p}`).join('\n')}`,
  ];
  process.stdout.write(out.join('\n') + '\n');
}

async function main(): Promise<number> {
  if (!(LOAD_SECONDS > 0) || !(CONNECTS >= 0) || !(IMAGE_BYTES >= 16 * MiB)) throw new Error('usage: soak.js [--minutes N | --seconds N] [--connects N] [--concurrency N] [--image-mib N ≥ 16] [--json FILE] [--dir DIR] [--quiet]');
  const s = await setUp();
  try {
    const report = await soak(s);
    printSummary(report);
    if (opt.json !== undefined) await writeFile(opt.json, JSON.stringify(report, null, 1) + '\n');
    return report.problems.length === 0 ? 0 : 1;
  } catch (e) {
    process.stderr.write(`soak: ${(e as Error).stack ?? String(e)}\n--- daemon output\n${s.daemon.output().slice(-3000)}\n`);
    return 1;
  } finally {
    await stopServer(s.daemon);
    await stopServer(s.nbdkit);
    rmSync(s.dir, { recursive: true, force: true });
  }
}

process.once('SIGINT', () => {
  killAll();
  if (tempDirToRemove !== undefined) rmSync(tempDirToRemove, { recursive: true, force: true });
  process.exit(130);
});
process.once('exit', () => killAll());
main().then((code) => { process.exitCode = code; }, (e: unknown) => {
  progress(String((e as Error).stack ?? e));
  killAll();
  if (tempDirToRemove !== undefined) rmSync(tempDirToRemove, { recursive: true, force: true });
  process.exitCode = 1;
});
