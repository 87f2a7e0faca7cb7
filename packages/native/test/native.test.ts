// The addon backend: contract tests plus addon-only facts (ioctls, SAB addresses, sysfs parity).
import { closeSync, existsSync, openSync } from 'node:fs';
import { describe, expect, it } from 'vitest';

import { blockDeviceSizeFromSysfs } from '../src/device.js';
import { nativeAddon, nativeInfo } from '../src/loader.js';
import { locateAddress } from '../src/locate.js';
import { addonFile, attachLoop, makeDiskDir, removeDir } from './helpers.js';
import { contractSuite } from './suite.js';

const built = existsSync(addonFile) && process.env['ONESTACK_NATIVE'] !== 'off';
const skipReason = `addon not built (${addonFile} missing; run pnpm build:native) or ONESTACK_NATIVE=off`;

describe.skipIf(!built)('native backend (skipped when the addon is not built: run pnpm build:native)', () => {
  it('loads', () => {
    expect(nativeInfo()).toMatchObject({ backend: 'native', version: '0.1.0' });
  });

  contractSuite('native');

  it('bufferAddress accepts SAB-backed views and agrees with /proc/self/mem', () => {
    const addon = nativeAddon();
    if (addon === null) throw new Error(skipReason);
    const sab = new SharedArrayBuffer(1 << 20);
    const address = addon.bufferAddress(new Uint8Array(sab));
    expect(address).toBeGreaterThan(0n);
    expect(addon.bufferAddress(new Uint8Array(sab, 4096))).toBe(address + 4096n);
    expect(locateAddress(new Uint8Array(sab))).toBe(address);
    expect(() => addon.bufferAddress(42 as unknown as Uint8Array)).toThrow(expect.objectContaining({ code: 'EINVAL' }));
  });

  it('block ioctls match sysfs on a loop device', (ctx) => {
    const addon = nativeAddon();
    if (addon === null) throw new Error(skipReason);
    const dir = makeDiskDir();
    if (dir === null) return ctx.skip('no disk-backed directory for the loop image');
    const sizeBytes = 32 * 1024 * 1024 + 512;
    const loop = attachLoop(dir, sizeBytes);
    try {
      if (typeof loop === 'string') return ctx.skip(loop);
      const fd = openSync(loop.path, 'r');
      try {
        expect(addon.blockDeviceSize(fd)).toBe(sizeBytes);
        expect(blockDeviceSizeFromSysfs(loop.path)).toBe(sizeBytes);
        expect(addon.logicalBlockSize(fd)).toBe(512); // losetup's default sector size
      } finally {
        closeSync(fd);
        loop.detach();
      }
    } finally {
      removeDir(dir);
    }
  });

  it('ioctls on a regular file fail with ENOTTY', (ctx) => {
    const addon = nativeAddon();
    if (addon === null) throw new Error(skipReason);
    const dir = makeDiskDir();
    if (dir === null) return ctx.skip('no disk-backed directory');
    const fd = openSync(`${dir}/f`, 'w');
    try {
      expect(() => addon.blockDeviceSize(fd)).toThrow(expect.objectContaining({ code: 'ENOTTY' }));
      expect(() => addon.logicalBlockSize(fd)).toThrow(/^ENOTTY: ioctl\(BLKSSZGET\)/);
    } finally {
      closeSync(fd);
      removeDir(dir);
    }
  });
});
