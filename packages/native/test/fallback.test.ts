// The pure-JS backend, forced with ONESTACK_NATIVE=off before the package is first loaded
// (vitest isolates test files, so this does not leak into native.test.ts).
import { describe, expect, it } from 'vitest';

import { attachLoop, makeDiskDir, removeDir } from './helpers.js';

process.env['ONESTACK_NATIVE'] = 'off';
const { contractSuite } = await import('./suite.js');
const { blockDeviceSizeFromSysfs, devMajorMinor } = await import('../src/device.js');
const { formatRdmaLine, rdmaProbe } = await import('../src/rdma.js');

describe('pure-JS backend (ONESTACK_NATIVE=off)', () => {
  contractSuite('js');

  it('rdmaProbe cannot probe without the addon and says why, in a "no RDMA device" line', () => {
    const probe = rdmaProbe();
    expect(probe).toEqual({ library: 'unknown', devices: [], reason: 'native addon not loaded: ONESTACK_NATIVE=off' });
    expect(formatRdmaLine(probe)).toBe('rdma: no RDMA device (not probed: native addon not loaded: ONESTACK_NATIVE=off)');
  });

  it('splits dev_t like glibc', () => {
    expect(devMajorMinor(0x0700n)).toEqual({ major: 7, minor: 0 });
    expect(devMajorMinor(0x0103n)).toEqual({ major: 1, minor: 3 });
    // major 259 (blkext), minor 300: high bits of both live above bit 20
    const rdev = (259n & 0xfffn) << 8n | (300n & 0xffn) | ((300n & ~0xffn) << 12n);
    expect(devMajorMinor(rdev)).toEqual({ major: 259, minor: 300 });
  });

  it('sysfs size of a loop device matches its backing file', (ctx) => {
    const dir = makeDiskDir();
    if (dir === null) return ctx.skip('no disk-backed directory for the loop image');
    try {
      const loop = attachLoop(dir, 8 * 1024 * 1024 + 1024);
      if (typeof loop === 'string') return ctx.skip(loop);
      try {
        expect(blockDeviceSizeFromSysfs(loop.path)).toBe(8 * 1024 * 1024 + 1024);
      } finally {
        loop.detach();
      }
    } finally {
      removeDir(dir);
    }
  });
});
