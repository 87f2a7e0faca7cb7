import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { EngineError } from '../src/api-types.js';
import { embeddedDefaultConfig } from '../src/config/load.js';
import { normalizeElement, normalizeVolume } from '../src/config/validate.js';
import { API_TOKEN_FILE, ensureApiToken, ensureDataDir, readApiToken } from '../src/state/data-dir.js';
import { mergeState, readStateFile, STATE_FILE, writeStateFile } from '../src/state/state-file.js';

let dir: string;
beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'onestack-state-'));
});
afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

describe('data dir and API token', () => {
  it('creates the data dir and refuses a file in its place', () => {
    expect(ensureDataDir(path.join(dir, 'a/b'))).toBe(path.join(dir, 'a/b'));
    expect(fs.statSync(path.join(dir, 'a/b')).isDirectory()).toBe(true);
    fs.writeFileSync(path.join(dir, 'file'), 'x');
    expect(() => ensureDataDir(path.join(dir, 'file'))).toThrow(EngineError);
  });

  it('creates a 0600 token once, keeps it, and repairs its mode', () => {
    expect(readApiToken(dir)).toBeUndefined();
    const token = ensureApiToken(dir);
    expect(token).toMatch(/^[A-Za-z0-9_-]{43}$/);
    const file = path.join(dir, API_TOKEN_FILE);
    expect(fs.statSync(file).mode & 0o777).toBe(0o600);
    expect(ensureApiToken(dir)).toBe(token);
    expect(readApiToken(dir)).toBe(token);
    fs.chmodSync(file, 0o644);
    expect(ensureApiToken(dir)).toBe(token);
    expect(fs.statSync(file).mode & 0o777).toBe(0o600);
    fs.writeFileSync(file, '\n');
    const fresh = ensureApiToken(dir);
    expect(fresh).not.toBe(token);
    expect(fs.statSync(file).mode & 0o777).toBe(0o600);
  });
});

describe('runtime state file', () => {
  const element = (name: string, uri: string) => normalizeElement({ name, uri }, name, '/srv');
  const volume = (name: string, elements: string[], boot = false) => normalizeVolume({ name, layout: 'raid1', elements, boot }, name, new Set(elements));

  it('round-trips elements and volumes atomically, with absolute local paths', () => {
    expect(readStateFile(dir)).toEqual({ elements: [], volumes: [] });
    const state = { elements: [element('a', 'a.img'), element('b', 'file:/x/b.img'), element('r', 'nbd://h/e')], volumes: [volume('v', ['a', 'b'])] };
    writeStateFile(dir, state);
    expect(fs.readdirSync(dir)).toEqual([STATE_FILE]);
    const back = readStateFile(dir);
    expect(back.volumes).toEqual(state.volumes);
    expect(back.elements.map((e) => [e.name, e.location])).toEqual([
      ['a', { kind: 'local', path: '/srv/a.img' }], ['b', { kind: 'local', path: '/x/b.img' }],
      ['r', { kind: 'nbd', uri: 'nbd://h/e', tls: false, host: 'h', port: 10809, exportName: 'e' }],
    ]);
  });

  it('never stores an iSCSI secret', () => {
    writeStateFile(dir, { elements: [element('i', 'iscsi://u%hunter2@h/iqn.2026-11.x:y/0')], volumes: [] });
    expect(fs.readFileSync(path.join(dir, STATE_FILE), 'utf8')).not.toContain('hunter2');
  });

  it('reports a damaged state file instead of dropping it', () => {
    fs.writeFileSync(path.join(dir, STATE_FILE), '{ not json');
    expect(() => readStateFile(dir)).toThrow(/cannot read the runtime state/);
    fs.writeFileSync(path.join(dir, STATE_FILE), JSON.stringify({ version: 1, elements: [], volumes: [{ name: 'v', layout: 'raid1', elements: 'x' }] }));
    expect(() => readStateFile(dir)).toThrow(/invalid runtime state: volumes\[0\]\.elements: expected a list/);
  });

  it('keeps a run-time volume over config-file elements; one naming an element defined nowhere is ignored with a warning', () => {
    fs.writeFileSync(path.join(dir, STATE_FILE), JSON.stringify({ version: 1, elements: [], volumes: [
      { name: 'v', layout: 'raid1', elements: ['d0', 'd1'] }, { name: 'w', layout: 'raid1', elements: ['d0', 'gone'] }] }));
    const state = readStateFile(dir);
    expect(state.volumes.map((v) => v.elements)).toEqual([['d0', 'd1'], ['d0', 'gone']]);
    const config = { ...embeddedDefaultConfig('/data'), volumes: [] };
    const warnings: string[] = [];
    const merged = mergeState(config, state, (m) => warnings.push(m));
    expect(merged.config.volumes.map((v) => v.name)).toEqual(['v']);
    expect(merged.runtime.volumes.map((v) => v.name)).toEqual(['v']);
    expect(warnings).toEqual(['runtime volume w ignored: one of its elements is defined neither in the config nor in the state file']);
  });

  it('merges with the config, which wins every clash', () => {
    const config = embeddedDefaultConfig('/data');
    const warnings: string[] = [];
    const merged = mergeState(config, {
      elements: [element('d0', 'other.img'), element('x', 'file:/data/disk1.img'), element('e1', 'e1.img'), element('e2', 'e2.img')],
      volumes: [volume('default', ['e1', 'e2']), volume('v1', ['d0', 'e1']), volume('v2', ['e1', 'e2'], true)],
    }, (m) => warnings.push(m));
    expect(merged.config.elements.map((e) => e.name)).toEqual(['d0', 'd1', 'e1', 'e2']);
    expect(merged.config.volumes.map((v) => [v.name, v.boot])).toEqual([['default', true], ['v2', false]]);
    expect(merged.runtime.volumes.map((v) => v.name)).toEqual(['v2']);
    expect(warnings).toEqual([
      'runtime element d0 ignored: the config defines the same name "d0"',
      'runtime element x ignored: the config defines the same file /data/disk1.img',
      'runtime volume default ignored: the config defines a volume of that name',
      'runtime volume v1 ignored: one of its elements clashes with the config',
      'runtime volume v2 is no longer the boot volume: the config names one',
    ]);
  });
});
