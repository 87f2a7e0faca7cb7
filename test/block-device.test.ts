// Local elements that are block devices, in both cache modes: a raid1 of two loop devices, one
// opened with O_DIRECT (cache: none) and one through the page cache (cache: writeback).
// qemu-io writes through the export; the test then reads both devices directly.
import { existsSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Daemon } from './lib/daemon.js';
import { DATA_OFFSET_BYTES, MiB, readAt, removeDir, sparseFile, tempDir } from './lib/files.js';
import { exportSize, qemuIo, qemuIoFailed } from './lib/peers.js';
import { explain, missingTools, run, runOk } from './lib/proc.js';

const LEG_BYTES = 64 * MiB;

function skipReason(): string | null {
  if (process.getuid?.() !== 0) return 'needs root for losetup (run ./scripts/test.sh as root)';
  if (!existsSync('/dev/loop-control')) return '/dev/loop-control is missing (loop devices unavailable here)';
  return missingTools(['losetup', 'qemu-io']);
}

const skip = skipReason();

describe.skipIf(skip !== null)(`block-device elements, O_DIRECT and page cache${skip === null ? '' : ` (skipped: ${skip})`}`, () => {
  let dir = '';
  const loops: string[] = [];
  let daemon: Daemon | null = null;

  beforeAll(async () => {
    dir = tempDir('blockdev');
    for (const name of ['b0', 'b1']) {
      const img = path.join(dir, `${name}.img`);
      await sparseFile(img, LEG_BYTES);
      const r = await runOk('losetup', ['-f', '--show', img]);
      loops.push(r.stdout.trim());
    }
    const configPath = path.join(dir, 'onestack.yaml');
    await writeFile(configPath, [
      'elements:',
      `  - { name: b0, uri: "${loops[0]}", cache: none }`,
      `  - { name: b1, uri: "${loops[1]}", cache: writeback }`,
      'volumes:',
      '  - { name: dev, layout: raid1, elements: [b0, b1] }',
      '',
    ].join('\n'));
    daemon = await Daemon.start({ dataDir: path.join(dir, 'data'), configPath });
  });

  afterAll(async () => {
    try {
      await daemon?.stop();
    } finally {
      for (const loop of loops) await run('losetup', ['-d', loop], { timeoutMs: 10_000 });
      if (dir !== '') removeDir(dir);
    }
  });

  it('serves the devices\' size, and writes land identically on the O_DIRECT and the buffered leg', async () => {
    const uri = daemon!.uri('dev');
    expect(await exportSize(uri)).toBe(LEG_BYTES - DATA_OFFSET_BYTES);
    const writes = [
      ['write -P 0x5a 0 64k', 0, 64 * 1024, 0x5a],
      ['write -P 0xa5 1M 4k', MiB, 4096, 0xa5],
      ['write -P 0x3c 10M 1M', 10 * MiB, MiB, 0x3c],
    ] as const;
    const w = await qemuIo(uri, [...writes.map((x): string => x[0]), 'flush']);
    expect(qemuIoFailed(w), explain(w)).toBe(false);
    const r = await qemuIo(uri, ['read -P 0x5a 0 64k', 'read -P 0xa5 1M 4k', 'read -P 0x3c 10M 1M', 'read -P 0 2M 1M']);
    expect(qemuIoFailed(r), explain(r)).toBe(false);
    for (const [, offset, length, byte] of writes) {
      for (const loop of loops) {
        const onDevice = await readAt(loop, DATA_OFFSET_BYTES + offset, length);
        expect(onDevice.equals(Buffer.alloc(length, byte)), `${loop} at ${offset}`).toBe(true);
      }
    }
    const token = (await readFile(path.join(daemon!.dataDir, 'api-token'), 'utf8')).trim();
    const res = await fetch(`http://127.0.0.1:${daemon!.apiPort}/api/v1/status`, { headers: { authorization: `Bearer ${token}` } });
    const status = (await res.json()) as { elements: { name: string; state: string }[] };
    expect(status.elements.filter((e) => e.name === 'b0' || e.name === 'b1').map((e) => e.state)).toEqual(['active', 'active']);
  });
});
