// Pure test of the element latency suffix in `onestack status` text (docs/transport.md).
import { describe, expect, it } from 'vitest';
import type { ElementStatus } from '@onestack/engine';
import { latencySuffix } from '../src/render-latency.js';

const el = (latency?: ElementStatus['latency']): ElementStatus => ({
  name: 'r0', kind: 'nbd', uri: 'nbd://h/x', state: 'active', sizeBytes: 1, volume: 'v', role: 1, errors: 0, ...(latency !== undefined ? { latency } : {}),
});

describe('latencySuffix', () => {
  it('shows µs below 1 ms, ms above, and MiB/s; "-" for a direction with no sample', () => {
    expect(latencySuffix(el({ readUsEwma: 24135.9, writeUsEwma: 15.6, readMiBPerSec: 3.25, writeMiBPerSec: 0 })))
      .toBe('  lat read 24.1ms write 16µs, 3.3 MiB/s read 0.0 MiB/s write');
    expect(latencySuffix(el({ readUsEwma: 9, writeUsEwma: null, readMiBPerSec: 0, writeMiBPerSec: 0 }))).toContain('write -,');
  });

  it('says nothing for older daemons or elements without I/O', () => {
    expect(latencySuffix(el())).toBe('');
    expect(latencySuffix(el({ readUsEwma: null, writeUsEwma: null, readMiBPerSec: 0, writeMiBPerSec: 0 }))).toBe('');
  });
});
