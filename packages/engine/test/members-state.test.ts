// The state file's `members` record (state/state-file.ts withMembers): a config-file raid1 whose
// members were added or removed at run time reassembles with them while the config still lists
// the members it listed then; a config that caught up is silent; any other config wins, warned.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { embeddedDefaultConfig } from '../src/config/load.js';
import { normalizeElement, normalizeVolume } from '../src/config/validate.js';
import type { EngineConfig } from '../src/config/types.js';
import { mergeState, readStateFile, writeStateFile } from '../src/state/state-file.js';

let dir: string;
beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'onestack-members-state-'));
});
afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

const names = ['a', 'b', 'c', 'd'];
function configWith(elements: string[], layout = 'raid1'): EngineConfig {
  const base = embeddedDefaultConfig(dir);
  return {
    ...base,
    elements: names.map((n) => normalizeElement({ name: n, uri: `file:/x/${n}.img` }, n, dir)),
    volumes: [normalizeVolume({ name: 'm', layout, elements, spares: ['d'].filter((s) => !elements.includes(s)) }, 'm', new Set(names))],
  };
}

describe('state file: members added or removed at run time', () => {
  it('applies the record while the config lists the old members; silent once the config caught up; the config wins otherwise', () => {
    writeStateFile(dir, { elements: [], volumes: [], members: [{ volume: 'm', configElements: ['a', 'b'], elements: ['a', 'b', 'c', 'd'] }] });
    const state = readStateFile(dir);
    expect(state.members).toEqual([{ volume: 'm', configElements: ['a', 'b'], elements: ['a', 'b', 'c', 'd'] }]);
    const warnings: string[] = [];
    const warn = (msg: string): void => void warnings.push(msg);

    const applied = mergeState(configWith(['a', 'b']), state, warn);
    expect(applied.config.volumes[0]!.elements).toEqual(['a', 'b', 'c', 'd']);
    expect(applied.config.volumes[0]!.spares ?? [], 'a spare that became a member is no spare').toEqual([]);
    expect(applied.runtime.members).toHaveLength(1);
    expect(warnings).toEqual([]);

    const caughtUp = mergeState(configWith(['d', 'c', 'b', 'a']), state, warn);
    expect(caughtUp.config.volumes[0]!.elements).toEqual(['d', 'c', 'b', 'a']);
    expect(warnings).toEqual([]);

    const edited = mergeState(configWith(['a', 'c']), state, warn);
    expect(edited.config.volumes[0]!.elements).toEqual(['a', 'c']);
    expect(edited.runtime.members, 'a record the config overrode is dropped').toEqual([]);
    expect(warnings).toEqual(['volume m: run-time change of its members (a, b, c, d) ignored: the config lists a, c now']);
  });

  it('rejects a damaged record with a clear error', () => {
    fs.writeFileSync(path.join(dir, 'onestack-state.json'), JSON.stringify({ version: 1, elements: [], volumes: [], members: [{ volume: 'm', configElements: 'a', elements: [] }] }));
    expect(() => readStateFile(dir)).toThrow(/members: configElements must be a list of element names/);
  });
});
