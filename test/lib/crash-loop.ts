// The crash-consistency loop (issues 5 and 8), shared by its variants: start the daemon, read back
// every block the writer's log knows (every flushed write must be there), run the variant's own
// check once the volume has settled (raid1: legs identical after the resync; raid5: parity right
// on every row after the journal replay), write at random for a random while, SIGKILL, repeat.
// One cycle in four the kill comes while the resync after the previous kill may still run, with
// writes going on (the resync cut short must start again at the next open).
import path from 'node:path';
import { NbdClient } from '@onestack/nbd';
import { CrashWriter, BLOCK_BYTES, type WriterStats } from './crash-writer.js';
import { Daemon } from './daemon.js';
import { sleep } from './proc.js';

const RESYNC_WAIT_MS = 60_000;

export interface CrashLoopOptions {
  readonly volume: string;
  readonly dataDir: string;
  readonly configPath: string;
  readonly volumeBytes: number;
  readonly cycles: number;
  readonly seed: number;
  /** After the restart and the read-back, once the volume is optimal: a problem, or null. */
  readonly settled: (daemon: Daemon) => Promise<string | null>;
  /** Per cycle, for the long run's progress (stderr). */
  readonly progress?: (line: string) => void;
}

export interface CrashLoopResult {
  readonly cycles: number;
  readonly seconds: number;
  readonly stats: WriterStats;
  /** Cycles whose kill came before the volume was checked settled (mid-resync kills). */
  readonly earlyKills: number;
}

/** Volume state once it is optimal with no copy running, or the last state seen at the deadline. */
export async function waitOptimal(d: Daemon, volume: string, timeoutMs = RESYNC_WAIT_MS): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = (await d.status()).volumes.find((x) => x.name === volume) as { state: string; rebuild?: unknown } | undefined;
    if (v !== undefined && v.state === 'optimal' && (v.rebuild ?? null) === null) return v.state;
    if (Date.now() > deadline) return v?.state ?? 'absent';
    await sleep(100);
  }
}

function lcg(seed: number): (bound: number) => number {
  let s = seed >>> 0;
  return (bound) => {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    return (s >>> 16) % bound; // an LCG's low bits have short periods: use the high ones
  };
}

/** Throws (with the offset of every lost block, or the variant's problem) at the first bad cycle. */
export async function crashLoop(o: CrashLoopOptions): Promise<CrashLoopResult> {
  const started = Date.now();
  const writer = new CrashWriter(o.volumeBytes / BLOCK_BYTES, o.seed);
  const rand = lcg(o.seed ^ 0x9e3779b9);
  let daemon: Daemon | null = null;
  let earlyKills = 0;
  try {
    for (let cycle = 0; cycle <= o.cycles; cycle++) {
      daemon = await Daemon.start({ dataDir: o.dataDir, configPath: o.configPath, ...(daemon !== null ? { nbdPort: daemon.nbdPort, apiPort: daemon.apiPort } : {}) });
      // Short timeout: after the kill, in-flight writes give up fast (and never reach the next daemon).
      const client = await NbdClient.connect({ host: '127.0.0.1', port: daemon.nbdPort, exportName: o.volume, timeoutMs: 1500 });
      const problems = await writer.verify(client);
      if (problems.length > 0) throw new Error(`cycle ${cycle}: after the restart, flushed writes are not intact:\n${problems.join('\n')}\n${daemon.logs()}`);
      // The last pass (cycle === o.cycles) only checks: the volume must settle after the last kill.
      const early = cycle < o.cycles && cycle > 0 && rand(4) === 0;
      if (!early) {
        const state = await waitOptimal(daemon, o.volume);
        if (state !== 'optimal') throw new Error(`cycle ${cycle}: volume ${o.volume} is ${state}, not optimal, ${RESYNC_WAIT_MS} ms after the restart\n${daemon.logs()}`);
        const problem = await o.settled(daemon);
        if (problem !== null) throw new Error(`cycle ${cycle}: ${problem}\n${daemon.logs()}`);
      }
      if (cycle === o.cycles) {
        await client.close().catch(() => undefined);
        break;
      }
      if (early) earlyKills++;
      const ac = new AbortController();
      const run = writer.run(client, ac.signal, { flushEvery: 1 + rand(48), queueDepth: 1 + rand(32), fuaEvery: rand(3) === 0 ? 0 : 2 + rand(14) });
      await sleep(early ? rand(300) : 150 + rand(600));
      await daemon.crash();
      ac.abort();
      await run;
      await client.close().catch(() => undefined);
      o.progress?.(`cycle ${cycle + 1}/${o.cycles}: ${writer.stats.writes} writes, ${writer.stats.flushes} flushes, ${writer.stats.blocksChecked} blocks checked, ${((Date.now() - started) / 1000).toFixed(0)} s`);
    }
  } finally {
    await daemon?.stop();
  }
  return { cycles: o.cycles, seconds: (Date.now() - started) / 1000, stats: writer.stats, earlyKills };
}

export function summary(name: string, r: CrashLoopResult): string {
  const s = r.stats;
  return `crash loop ${name}: ${r.cycles} SIGKILL cycles (${r.earlyKills} during the resync) in ${r.seconds.toFixed(0)} s; ` +
    `${s.writes} writes acknowledged (${s.fuaWrites} FUA), ${s.flushes} flushes, ${s.failedWrites} writes cut by the kill; ` +
    `${s.blocksChecked} block reads checked after restarts: ${s.flushedWritesChecked} flushed writes (FUA included) checked, ` +
    `${s.durableChecked} blocks with a generation they had to hold; ` +
    `acknowledged-unflushed writes found on disk: ${s.ackedUnflushedFound}/${s.ackedUnflushedTotal}`;
}

export const dataDirOf = (dir: string): string => path.join(dir, 'data');
