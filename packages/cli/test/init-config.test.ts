// `onestack init`, the pure parts: answers (a plan) → config object → YAML text, read back by the
// engine's own loader; the YAML writer's quoting; the answer parsers.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfig } from '@onestack/engine';
import { afterAll, describe, expect, it } from 'vitest';
import {
  buildConfig, configText, defaultLayout, elementNames, parseGib, parseLayout, parseSelection, relativeTo, secretFileFor, type InitPlan,
} from '../src/commands/init-config.js';
import { toYaml, yamlScalar } from '../src/commands/init-yaml.js';

const dir = mkdtempSync(join(tmpdir(), 'onestack-init-config-'));
afterAll(() => { rmSync(dir, { recursive: true, force: true }); });

function loadText(text: string, name = 'onestack.yaml'): ReturnType<typeof loadConfig> {
  const file = join(dir, name);
  writeFileSync(file, text);
  return loadConfig({ path: file });
}

const PLAN: InitPlan = {
  configPath: join(dir, 'onestack.yaml'),
  dataDir: join(dir, 'data'),
  layout: 'raid1',
  elements: [
    { kind: 'local', uri: join(dir, 'data', 'disk0.img'), createSizeBytes: 1024 ** 3 },
    { kind: 'nbd', uri: 'nbd://127.0.0.1:10810/disk' },
    { kind: 'iscsi', uri: 'iscsi://alice@127.0.0.1:3260/iqn.2026-11.test:disk/1', secretFile: join(dir, 'data', 'chap-alice.secret') },
    { kind: 'local', uri: '/dev/sdz' },
  ],
  volume: 'default',
  boot: true,
};

describe('plan → config object', () => {
  it('names elements by kind in role order and writes paths relative to the config file', () => {
    expect(elementNames(PLAN.elements)).toEqual(['d0', 'n0', 'i0', 'd1']);
    expect(buildConfig(PLAN)).toEqual({
      dataDir: './data',
      nbd: { listen: '127.0.0.1:10809' },
      api: { listen: '127.0.0.1:9090' },
      elements: [
        { name: 'd0', uri: 'file:./data/disk0.img', createSizeBytes: 1073741824, secretFile: undefined },
        { name: 'n0', uri: 'nbd://127.0.0.1:10810/disk', createSizeBytes: undefined, secretFile: undefined },
        { name: 'i0', uri: 'iscsi://alice@127.0.0.1:3260/iqn.2026-11.test:disk/1', createSizeBytes: undefined, secretFile: './data/chap-alice.secret' },
        { name: 'd1', uri: 'file:/dev/sdz', createSizeBytes: undefined, secretFile: undefined },
      ],
      volumes: [{ name: 'default', layout: 'raid1', elements: ['d0', 'n0', 'i0', 'd1'], boot: true }],
    });
  });

  it('keeps paths outside the config directory absolute', () => {
    expect(relativeTo('/etc/onestack', '/etc/onestack/data/a.img')).toBe('./data/a.img');
    expect(relativeTo('/etc/onestack', '/var/lib/onestack/a.img')).toBe('/var/lib/onestack/a.img');
    expect(relativeTo('/etc/onestack', '/etc/onestack')).toBe('.');
    expect(relativeTo('/etc/onestack', '/etc/onestack-other/x')).toBe('/etc/onestack-other/x');
    expect(secretFileFor('/d', 'alice')).toBe('/d/chap-alice.secret');
    expect(secretFileFor('/d', '../x y')).toBe('/d/chap-.._x_y.secret');
  });
});

describe('config object → YAML text → the engine loader', () => {
  it('writes a file the loader reads back as the same configuration, with a header and no secret', () => {
    const text = configText(PLAN, new Date('2026-11-29T12:00:00Z'));
    expect(text).toMatch(/^# onestack configuration, written by "onestack init" on 2026-11-29\.\n/);
    expect(text).toContain('    elements: [d0, n0, i0, d1]\n');
    const config = loadText(text);
    expect(config.dataDir).toBe(join(dir, 'data'));
    expect(config.elements.map((e) => [e.name, e.location.kind])).toEqual([['d0', 'local'], ['n0', 'nbd'], ['i0', 'iscsi'], ['d1', 'local']]);
    expect(config.elements[0]).toMatchObject({ createSizeBytes: 1024 ** 3, location: { path: join(dir, 'data', 'disk0.img') } });
    expect(config.elements[2]).toMatchObject({ secretFile: join(dir, 'data', 'chap-alice.secret') });
    expect(config.volumes).toEqual([{ name: 'default', layout: 'raid1', elements: ['d0', 'n0', 'i0', 'd1'], chunkKiB: 64, order: 'fifo', boot: true }]);
    const fromObject = loadConfig({ object: JSON.parse(JSON.stringify(buildConfig(PLAN))) as unknown, baseDir: dir });
    const { sourcePath: _source, ...fromText } = config;
    expect(fromText).toEqual(fromObject);
  });

  it('quotes every string that would read back as something else, and the loader agrees', () => {
    for (const word of ['true', 'no', 'null', '~', '1.5', '0x1f', '12', '-x', '? x', 'a: b', 'a #b', 'x:', '', "it's", '"q"', '[a]', 'é', '@x', '%x']) {
      expect(yamlScalar(word), word).toMatch(/^"/);
    }
    for (const word of ['raid1', 'file:./data/disk0.img', 'nbd://127.0.0.1:10809/x', 'nbd+unix:///e?socket=/run/s', 'iscsi://a@h:3260/iqn.2026-11.x:y/1']) {
      expect(yamlScalar(word), word).toBe(word);
    }
    // Odd file names survive the trip through YAML into the engine's parsed path.
    const names = ['we ird#1: x.img', 'true', '"q".img', "it's [1].img", 'tab\there.img'];
    const text = toYaml({ elements: names.map((n, i) => ({ name: `d${i}`, uri: `file:./${n}` })), volumes: [] });
    const config = loadText(text, 'odd.yaml');
    expect(config.elements.map((e) => (e.location.kind === 'local' ? e.location.path : ''))).toEqual(names.map((n) => join(dir, n)));
  });

  it('writes nested lists, empty collections and numbers', () => {
    expect(toYaml({ a: [], b: {}, c: [1, true, 'x'], d: [{ e: [{ f: 'g' }] }] }, ['top', ''])).toBe(
      '# top\n#\na: []\nb: {}\nc: [1, true, x]\nd:\n  - e:\n      - f: g\n');
  });
});

describe('answer parsers', () => {
  it('layout: the six words, with a did-you-mean for a typo', () => {
    expect(parseLayout(' RAID5 ')).toEqual({ ok: 'raid5' });
    expect(parseLayout('riad1')).toEqual({ problem: expect.stringMatching(/unknown layout "riad1" \(did you mean raid1\?\); one of linear, raid0, raid1, raid10, raid5, raid6/) as unknown });
    expect(parseLayout('mirror')).toEqual({ problem: expect.stringMatching(/^unknown layout "mirror"; one of/) as unknown });
    expect(defaultLayout(0)).toBe('linear');
    expect(defaultLayout(1)).toBe('linear');
    expect(defaultLayout(3)).toBe('raid1');
  });

  it('selection: numbers, ranges and all, in the order given; paths come back as extras', () => {
    expect(parseSelection('3,1', 3)).toEqual({ ok: { numbers: [3, 1], extra: [] } });
    expect(parseSelection('1-3 5', 5)).toEqual({ ok: { numbers: [1, 2, 3, 5], extra: [] } });
    expect(parseSelection('all', 2)).toEqual({ ok: { numbers: [1, 2], extra: [] } });
    expect(parseSelection('1, ./x.img', 2)).toEqual({ ok: { numbers: [1], extra: ['./x.img'] } });
    expect(parseSelection('4', 3)).toEqual({ problem: '4: choose numbers from 1 to 3' });
    expect(parseSelection('3-1', 3)).toEqual({ problem: '3-1: choose numbers from 1 to 3' });
    expect(parseSelection('1,1', 3)).toEqual({ problem: '1 is chosen twice' });
    expect(parseSelection(' ', 3)).toEqual({ problem: 'choose at least one element' });
  });

  it('sizes in GiB: whole numbers within bounds', () => {
    expect(parseGib('4')).toEqual({ ok: 4 });
    for (const bad of ['0', '-1', '1.5', 'x', '99999999']) expect(parseGib(bad)).toHaveProperty('problem');
  });
});
