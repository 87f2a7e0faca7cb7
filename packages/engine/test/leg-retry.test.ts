// The leg watch's probe pace for a remote leg that went away (docs/durability.md "Legs that come
// back"): every 3 s for the first 2 minutes of an outage, then doubling, never slower than once a
// minute.
import { describe, expect, it } from 'vitest';
import { FAST_WINDOW_MS, PROBE_FAST_MS, PROBE_MAX_MS, probeDelayMs } from '../dist/durable/leg-watch.js';

describe('probe pace', () => {
  it('3 s for the first 2 minutes, then doubling up to once a minute', () => {
    expect(probeDelayMs(PROBE_FAST_MS, 0, PROBE_FAST_MS)).toBe(3000);
    expect(probeDelayMs(PROBE_FAST_MS, FAST_WINDOW_MS - 1, PROBE_FAST_MS)).toBe(3000);
    // Walk an outage probe by probe: the pace after the window, and how long a remote waits at most.
    let delay = PROBE_FAST_MS;
    let at = 0;
    const after: number[] = [];
    while (at < 10 * 60_000) {
      delay = probeDelayMs(PROBE_FAST_MS, at, delay);
      if (at >= FAST_WINDOW_MS && after.length < 6) after.push(delay);
      at += delay;
    }
    expect(after).toEqual([6000, 12_000, 24_000, 48_000, 60_000, 60_000]);
    expect(delay).toBe(PROBE_MAX_MS);
  });

  it('a flapping leg (slower base pace) is still capped at once a minute', () => {
    expect(probeDelayMs(48_000, 0, 48_000)).toBe(48_000);
    expect(probeDelayMs(48_000, FAST_WINDOW_MS, 48_000)).toBe(PROBE_MAX_MS);
  });
});
