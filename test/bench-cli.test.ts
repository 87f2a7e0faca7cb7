// `onestack bench --uri` end to end: the built CLI runs fio's nbd engine against nbdkit's memory
// plugin and reports the figures as JSON (and as a table).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLI_MAIN } from './lib/daemon.js';
import { explain, missingTools, run } from './lib/proc.js';
import { startNbdkit, type NbdkitPeer } from './lib/remotes.js';

const missing = missingTools(['nbdkit', 'fio']);

describe.skipIf(missing !== null)(`onestack bench${missing !== null ? ` (skipped: ${missing})` : ''}`, () => {
  let nbdkit: NbdkitPeer | null = null;
  beforeAll(async () => { nbdkit = await startNbdkit(['memory', '64M']); });
  afterAll(async () => { await nbdkit?.stop(); });

  const bench = (args: readonly string[]) => run(process.execPath, [CLI_MAIN, 'bench', '--uri', `nbd://127.0.0.1:${nbdkit!.port}/`, ...args], { timeoutMs: 60_000 });

  it('randread4k for 1 s: exit 0, JSON with iops > 0', async () => {
    const r = await bench(['--workload', 'randread4k', '--seconds', '1', '--json']);
    expect(r.code, explain(r)).toBe(0);
    const out = JSON.parse(r.stdout) as { results: { workload: string; qd: number; iops: number; mibps: number; latMeanUs: number }[] };
    expect(out.results).toHaveLength(1);
    const [res] = out.results;
    expect(res?.workload).toBe('randread4k');
    expect(res?.qd).toBe(32);
    expect(res?.iops).toBeGreaterThan(0);
    expect(res?.mibps).toBeGreaterThan(0);
    expect(res?.latMeanUs).toBeGreaterThan(0);
    expect(r.stderr).toMatch(/randread4k QD32\n/); // the progress line, off stdout
  });

  it('randwrite4k with --qd 4: warns, prints a progress line and the table', async () => {
    const r = await bench(['--workload', 'randwrite4k', '--seconds', '1', '--qd', '4']);
    expect(r.code, explain(r)).toBe(0);
    expect(r.stderr).toMatch(/warning: randwrite4k overwrites the data/);
    expect(r.stdout).toMatch(/\[=+\] 2\/2 s {2}randwrite4k QD4\n/);
    expect(r.stdout).toMatch(/WORKLOAD +QD +IOPS +MiB\/s +LAT MEAN µs\nrandwrite4k +4 +[1-9]\d* +\d+\.\d +\d+\.\d\n/);
  });

  it('an unreachable NBD server fails with exit 1', async () => {
    const r = await run(process.execPath, [CLI_MAIN, 'bench', '--uri', `nbd://127.0.0.1:1/`, '--seconds', '1'], { timeoutMs: 60_000 });
    expect(r.code, explain(r)).toBe(1);
    expect(r.stderr).toMatch(/onestack: error: fio randread4k failed/);
  });
});
