// Picking the boot volume at run time: Engine.setBootVolume, saved in the state file, applied at
// the next start only while the config names the same boot volume as when it was picked.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
// Workers are .js files, so this imports the BUILT dist (run tsc -b packages/engine first).
import { Engine, embeddedDefaultConfig, mergeState, normalizeVolume, readStateFile } from '../dist/index.js';

let dir: string;
beforeEach(() => { dir = fs.mkdtempSync(path.join(os.tmpdir(), 'onestack-boot-')); });
afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

const quiet = (): undefined => undefined;
const bootOf = (engine: Engine): string[] => engine.status().volumes.filter((v) => v.boot).map((v) => v.name);

describe('boot volume picked at run time', () => {
  it('moves the boot flag, refuses an unknown volume without change, and survives a restart', async () => {
    let engine = await Engine.open({ dataDir: dir, log: quiet });
    try {
      await engine.createVolume({ name: 'v2', layout: 'raid1', elements: [path.join(dir, 'a.img'), path.join(dir, 'b.img')], sizeBytes: 8 * 2 ** 20 });
      expect(bootOf(engine)).toEqual(['default']);
      await engine.setBootVolume('v2');
      expect(bootOf(engine)).toEqual(['v2']);
      expect(engine.bootVolume()?.name).toBe('v2');
      await expect(engine.setBootVolume('nope')).rejects.toMatchObject({ code: 'not-found' });
      expect(bootOf(engine)).toEqual(['v2']);
      expect(readStateFile(dir).bootPick).toEqual({ volume: 'v2', configBoot: 'default' });
    } finally {
      await engine.close();
    }
    engine = await Engine.open({ dataDir: dir, log: quiet });
    try {
      expect(bootOf(engine)).toEqual(['v2']);
      await engine.setBootVolume('default');
      expect(bootOf(engine)).toEqual(['default']);
      // Back to what the config says: nothing left to remember.
      expect(readStateFile(dir).bootPick).toBeUndefined();
    } finally {
      await engine.close();
    }
  });

  it('gives way to the config when its boot volume changed since the pick', () => {
    const base = embeddedDefaultConfig(dir);
    const other = normalizeVolume({ name: 'other', layout: 'raid1', elements: ['d0', 'd1'] }, 'other', new Set(['d0', 'd1']));
    const config = { ...base, volumes: [{ ...base.volumes[0]!, boot: false }, other] };
    const warnings: string[] = [];
    const merged = mergeState(config, { elements: [], volumes: [], bootPick: { volume: 'other', configBoot: 'default' } }, (m) => warnings.push(m));
    expect(merged.config.volumes.filter((v) => v.boot)).toEqual([]);
    expect(warnings.join('\n')).toMatch(/boot volume other \(picked at run time\) ignored: the config names no boot volume now/);
    const kept = mergeState(base, { elements: [], volumes: [], bootPick: { volume: 'nope', configBoot: 'default' } }, (m) => warnings.push(m));
    expect(kept.config.volumes.filter((v) => v.boot).map((v) => v.name)).toEqual(['default']);
  });
});
