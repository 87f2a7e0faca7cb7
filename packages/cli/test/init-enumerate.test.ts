// `onestack init` enumeration on fixtures: a /sys/block-like tree (disks, partitions, empty
// loop/ram/zram devices, a loop with a backing file, held and read-only devices), /proc mounts
// and swaps text, image files in a data dir (one holding a onestack superblock), and remote URIs
// classified as one disk or a server to ask (with a fake discover).
import { mkdirSync, mkdtempSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DATA_OFFSET_BYTES, encodeSuperblock } from '@onestack/engine';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CliError } from '../src/errors.js';
import { classifyRemote, listImages, parseMounts, readBlockDevices, remoteCandidates, withUser, type DiscoverFn } from '../src/commands/init-enumerate.js';

const MiB = 1024 * 1024;
let dir = '';

/** Writes files of a tree: { 'sda/size': '100' } → DIR/sda/size. */
function tree(root: string, files: Readonly<Record<string, string>>): void {
  for (const [rel, text] of Object.entries(files)) {
    const file = join(root, rel);
    mkdirSync(join(file, '..'), { recursive: true });
    if (rel.endsWith('/')) mkdirSync(file, { recursive: true }); else writeFileSync(file, `${text}\n`);
  }
}

beforeAll(() => { dir = mkdtempSync(join(tmpdir(), 'onestack-init-enum-')); });
afterAll(() => { rmSync(dir, { recursive: true, force: true }); });

describe('mounts and swaps', () => {
  it('maps device names to their use, through symlinks and octal escapes', () => {
    const mounts = [
      '/dev/sda1 /boot ext4 rw 0 0',
      '/dev/mapper/vg-root /my\\040disk ext4 rw 0 0',
      'proc /proc proc rw 0 0',
      'tmpfs /dev/shm tmpfs rw 0 0',
      '/dev/sda1 /again ext4 rw 0 0',
    ].join('\n');
    const swaps = 'Filename\tType\tSize\tUsed\tPriority\n/dev/sdd2  partition  1024  0  -2\n';
    const links: Record<string, string> = { '/dev/mapper/vg-root': '/dev/dm-0' };
    const used = parseMounts(mounts, swaps, (p) => links[p] ?? p);
    expect([...used]).toEqual([['sda1', 'mounted at /boot'], ['dm-0', 'mounted at /my disk'], ['sdd2', 'used as swap']]);
  });
});

describe('block devices from a /sys/block-like tree', () => {
  it('lists disks and partitions with size and model; skips empty virtual devices; marks the busy ones', () => {
    const sys = join(dir, 'sys-block');
    tree(sys, {
      'sda/size': String(16 * 2048), 'sda/ro': '0', 'sda/device/vendor': 'ATA', 'sda/device/model': 'Samsung SSD',
      'sda/sda1/partition': '1', 'sda/sda1/size': String(2048), 'sda/sda2/partition': '2', 'sda/sda2/size': String(4096),
      'sdb/size': String(32 * 2048), 'sdb/ro': '0', 'sdb/device/vendor': '0x1af4', 'sdb/device/model': 'QEMU HARDDISK',
      'sdc/size': String(2048), 'sdc/holders/dm-3': '',
      'sr0/size': '0', 'sr0/ro': '1',
      'loop0/size': '0', 'loop1/size': String(4096), 'loop1/loop/backing_file': '/srv/disk.img',
      'ram0/size': '0', 'zram0/size': '0',
      'nvme0n1/size': String(2048), 'nvme0n1/ro': '1',
    });
    const got = readBlockDevices({ sysBlockDir: sys, devDir: '/dev', used: new Map([['sda1', 'mounted at /boot']]) });
    expect(got.map((c) => [c.uri, c.sizeBytes, c.description, c.inUse])).toEqual([
      ['/dev/loop1', 2 * MiB, 'block device, loop over /srv/disk.img', undefined],
      ['/dev/nvme0n1', MiB, 'block device', 'read-only'],
      ['/dev/sda', 16 * MiB, 'block device, ATA Samsung SSD, partitions sda1, sda2', 'partition sda1 mounted at /boot'],
      ['/dev/sda1', MiB, 'block device, partition of sda', 'mounted at /boot'],
      ['/dev/sda2', 2 * MiB, 'block device, partition of sda', undefined],
      ['/dev/sdb', 32 * MiB, 'block device, QEMU HARDDISK', undefined],
      ['/dev/sdc', MiB, 'block device', 'held by dm-3'],
    ]);
    expect(got.every((c) => c.kind === 'block')).toBe(true);
  });

  it('a missing /sys/block gives no devices rather than an error', () => {
    expect(readBlockDevices({ sysBlockDir: join(dir, 'nowhere'), devDir: '/dev', used: new Map() })).toEqual([]);
  });
});

describe('image files in the data dir', () => {
  it('lists *.img and *.raw with sizes; too small ones are in use; a superblock says whose element it was', () => {
    const data = join(dir, 'data');
    mkdirSync(data, { recursive: true });
    for (const [name, size] of [['b.raw', 8 * MiB], ['a.img', 8 * MiB], ['small.img', MiB], ['notes.txt', 8 * MiB]] as const) {
      writeFileSync(join(data, name), '');
      truncateSync(join(data, name), size);
    }
    mkdirSync(join(data, 'dir.img'));
    const sb = encodeSuperblock({
      arrayUuid: '11111111-2222-4333-8444-555555555555', elementUuid: '66666666-7777-4888-8999-aaaaaaaaaaaa', volumeName: 'vm',
      layout: 'raid1', chunkBytes: 65536, role: 1, count: 2, dataOffsetBytes: DATA_OFFSET_BYTES, dataSizeBytes: 4 * MiB,
      volumeSizeBytes: 4 * MiB, eventCount: 1, clean: true, needsRebuild: false, createdMs: 0, bitmapOffsetBytes: 0, bitmapSizeBytes: 0,
    });
    writeFileSync(join(data, 'c.img'), sb);
    truncateSync(join(data, 'c.img'), 8 * MiB);
    const got = listImages(data);
    expect(got.map((c) => [c.uri, c.sizeBytes, c.description, c.inUse !== undefined])).toEqual([
      [join(data, 'a.img'), 8 * MiB, 'image file', false],
      [join(data, 'b.raw'), 8 * MiB, 'image file', false],
      [join(data, 'c.img'), 8 * MiB, 'image file, holds onestack volume "vm" (raid1, role 1)', false],
      [join(data, 'small.img'), MiB, 'image file', true],
    ]);
    expect(got[3]?.inUse).toMatch(/too small/);
    expect(listImages(join(dir, 'no-such-dir'))).toEqual([]);
  });
});

describe('remote URIs', () => {
  it('tells one disk from a server to ask', () => {
    expect(classifyRemote('nbd://h')).toEqual({ kind: 'nbd', form: 'server', user: '' });
    expect(classifyRemote('nbd://h:10810')).toEqual({ kind: 'nbd', form: 'server', user: '' });
    expect(classifyRemote('nbd://h:10810/')).toEqual({ kind: 'nbd', form: 'disk', user: '' });
    expect(classifyRemote('nbds://h/disk')).toEqual({ kind: 'nbd', form: 'disk', user: '' });
    expect(classifyRemote('nbd+unix:///?socket=/s')).toEqual({ kind: 'nbd', form: 'server', user: '' });
    expect(classifyRemote('nbd+unix:///e?socket=/s')).toEqual({ kind: 'nbd', form: 'disk', user: '' });
    expect(classifyRemote('iscsi://alice@h:3260')).toEqual({ kind: 'iscsi', form: 'server', user: 'alice' });
    expect(classifyRemote('iscsi://h/iqn.2026-11.x:y/1')).toEqual({ kind: 'iscsi', form: 'disk', user: '' });
    expect(classifyRemote('file:/x')).toBeUndefined();
    expect(classifyRemote('/dev/sda')).toBeUndefined();
    expect(withUser('iscsi://h/iqn.x:y/1', 'bob')).toBe('iscsi://bob@h/iqn.x:y/1');
    expect(withUser('iscsi://al@h/iqn.x:y/1', 'bob')).toBe('iscsi://al@h/iqn.x:y/1');
    expect(withUser('nbd://h/e', 'bob')).toBe('nbd://h/e');
  });

  it('a disk URI is one candidate (checked by the engine parser); a server is asked with the credentials', async () => {
    const calls: unknown[] = [];
    const fake: DiscoverFn = async (uri, opts) => {
      calls.push({ uri, ...opts });
      return uri.startsWith('nbd')
        ? { kind: 'nbd', where: uri, items: [{ name: 'a', uri: `${uri}/a` }, { name: 'b', uri: `${uri}/b`, description: 'second' }] }
        : { kind: 'iscsi', where: uri, items: [{ name: 'iqn.2026-11.t:x', uri: 'iscsi://alice@h:3260/iqn.2026-11.t:x/1' }] };
    };
    expect(await remoteCandidates('nbd://h:1/e', {}, fake)).toEqual([{ kind: 'nbd', uri: 'nbd://h:1/e', description: 'NBD export' }]);
    expect(calls).toEqual([]);
    expect(await remoteCandidates('nbd://h:1', {}, fake)).toEqual([
      { kind: 'nbd', uri: 'nbd://h:1/a', description: 'NBD export "a"' },
      { kind: 'nbd', uri: 'nbd://h:1/b', description: 'NBD export "b" (second)' },
    ]);
    expect(await remoteCandidates('iscsi://alice@h:3260', { secret: 's3cret-value' }, fake)).toEqual([
      { kind: 'iscsi', uri: 'iscsi://alice@h:3260/iqn.2026-11.t:x/1', description: 'iSCSI target iqn.2026-11.t:x', chapUser: 'alice' },
    ]);
    expect(calls).toEqual([{ uri: 'nbd://h:1', timeoutMs: 5000 }, { uri: 'iscsi://alice@h:3260', timeoutMs: 5000, secret: 's3cret-value' }]);
    await expect(remoteCandidates('iscsi://h/not-an-iqn/1', {}, fake)).rejects.toThrow(CliError);
    await expect(remoteCandidates('http://h/x', {}, fake)).rejects.toThrow(/not a remote disk URI/);
  });
});
