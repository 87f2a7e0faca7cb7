// The GUI's text for transport figures and reshape progress (src/format-transport.ts): pure
// functions, tested in-process. The browser side is test/gui-transport.test.ts.
import { describe, expect, it } from 'vitest';
import { formatSeconds, formatUs, lagPercent, latencyText, reshapeEtaSeconds, reshapeLabel, retryText, writeBehindText } from '../src/format-transport.js';
import type { ReshapeStatus } from '../src/types.js';

const MiB = 1024 * 1024;

describe('latency', () => {
  it('formats µs, ms and s, and a dash before the first sample', () => {
    expect(formatUs(null)).toBe('–');
    expect(formatUs(15.4)).toBe('15 µs');
    expect(formatUs(1234)).toBe('1.23 ms');
    expect(formatUs(20_500)).toBe('20.5 ms');
    expect(formatUs(2_500_000)).toBe('2.50 s');
  });

  it('has no text for an element without figures or I/O', () => {
    expect(latencyText(undefined)).toBeNull();
    expect(latencyText({ readUsEwma: null, writeUsEwma: null, readMiBPerSec: 0, writeMiBPerSec: 0 })).toBeNull();
  });

  it('shows read and write EWMAs and both throughputs', () => {
    expect(latencyText({ readUsEwma: null, writeUsEwma: 10_250, readMiBPerSec: 0, writeMiBPerSec: 3.5 }))
      .toEqual({ read: 'read –', write: 'write 10.3 ms', throughput: '0.00 MiB/s read · 3.50 MiB/s write' });
  });
});

describe('write-behind lag', () => {
  const wb = { lagBytes: 1.5 * MiB, maxLagBytes: 64 * MiB, writesInFlight: 32, writesQueued: 310, writesDone: 9000, droppedWrites: 0, peakLagBytes: 27.9 * MiB };
  it('says lag of max, in flight, queued, dropped and peak', () => {
    expect(writeBehindText(wb)).toBe('write-behind: lag 1.5 MiB of 64.0 MiB · 32 in flight · 310 queued · 0 dropped · peak 27.9 MiB');
  });
  it('gives the share of the allowed lag, bounded', () => {
    expect(lagPercent(wb)).toBeCloseTo(2.34, 2);
    expect(lagPercent({ ...wb, lagBytes: 100 * MiB })).toBe(100);
    expect(lagPercent({ ...wb, maxLagBytes: 0 })).toBe(0);
  });
});

describe('retry of a stale leg', () => {
  const now = 1_796_002_608_316;
  it('says how long it is away, why, how many probes and when the next is', () => {
    const r = { attempts: 4, delayMs: 3000, nextAttemptMs: now + 2000, sinceMs: now - 15_000, lastError: 'connect ECONNREFUSED' };
    expect(retryText(r, now)).toBe('retrying: away 15 s (connect ECONNREFUSED) · 4 probes · next in 2 s (every 3 s)');
  });
  it('before the first probe, with no error yet, and after minutes', () => {
    const r = { attempts: 1, delayMs: 60_000, nextAttemptMs: null, sinceMs: now - 125_000, lastError: null };
    expect(retryText(r, now)).toBe('retrying: away 2 min 5 s · 1 probe · first probe soon (every 1 min)');
  });
  it('never shows a negative wait', () => {
    expect(formatSeconds(-3)).toBe('0 s');
    expect(formatSeconds(3725)).toBe('1 h 2 min');
  });
});

describe('reshape progress', () => {
  const running: ReshapeStatus = {
    from: { layout: 'raid5', count: 4 }, to: { layout: 'raid5', count: 5 },
    positionBytes: 96 * MiB, totalBytes: 192 * MiB, sizeBytes: 256 * MiB, percent: 50,
    state: 'running', rateMiBps: 12, backupSteps: 3, startedMs: 0,
  };
  it('shows from → to, percent, rate, ETA and the sizes', () => {
    expect(reshapeEtaSeconds(running)).toBe(8);
    expect(reshapeLabel(running)).toBe('reshape raid5 of 4 → raid5 of 5: 50.0% · 12.0 MiB/s · ETA 0:08 · 192 MiB → 256 MiB');
  });
  it('a level migration, paused, finishing, and no ETA without a rate', () => {
    const migrate = { ...running, from: { layout: 'raid1', count: 2 }, to: { layout: 'raid5', count: 3 } };
    expect(reshapeLabel({ ...migrate, state: 'paused' })).toBe('reshape raid1 of 2 → raid5 of 3: 50.0% · paused · 192 MiB → 256 MiB');
    expect(reshapeLabel({ ...running, state: 'finishing', percent: 100 })).toContain('100.0% · finishing');
    expect(reshapeEtaSeconds({ ...running, rateMiBps: 0 })).toBeNull();
    expect(reshapeLabel({ ...running, rateMiBps: 0 })).toContain('ETA –');
  });
});
