// `onestack status` line for a remote leg that went away and is being probed (state `stale`).
import { describe, expect, it } from 'vitest';
import { retryLine } from '../src/render-retry.js';

describe('status text', () => {
  const base = { name: 'far', kind: 'nbd' as const, uri: 'nbd://h/', state: 'stale' as const, sizeBytes: 1, volume: 'v', role: 1, errors: 0 };
  it('a probed leg gets a retry line, others none', () => {
    const now = 1_000_000;
    const line = retryLine({ ...base, retry: { attempts: 4, delayMs: 3000, nextAttemptMs: now + 2000, sinceMs: now - 14_000, lastError: 'connect ECONNREFUSED' } }, now);
    expect(line).toBe('        retrying: away 14 s (connect ECONNREFUSED), 4 probe(s), next in 2 s (every 3 s)');
    expect(retryLine({ ...base, state: 'failed' }, now)).toBeNull();
  });
});
