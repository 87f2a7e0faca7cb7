// Acceptance: a config with errors gives one line `onestack: error: …` naming the field (and the
// line, for YAML), exit status 2, and no daemon left running.
import { existsSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EngineError, loadConfig } from '@onestack/engine';
import { CLI_MAIN, REPO_ROOT } from './lib/daemon.js';
import { removeDir, sparseFile, tempDir } from './lib/files.js';
import { freePort, run } from './lib/proc.js';

interface BadConfig {
  readonly title: string;
  readonly file: string;
  readonly text: (img: string) => string;
  /** Must appear in the error: the field (or the offending value). */
  readonly field: RegExp;
  /** 1-based line(s) where the mistake may be reported, for YAML. */
  readonly line?: number | readonly number[];
}

const good = (img: string): string[] => [
  'elements:',
  `  - { name: d0, uri: "file:${img}" }`,
  `  - { name: d1, uri: "file:${img}1" }`,
  'volumes:',
];

const cases: readonly BadConfig[] = [
  { title: 'unknown layout', file: 'layout.yaml', field: /layout|raid9/, line: 5,
    text: (img) => [...good(img), '  - { name: v, layout: raid9, elements: [d0] }'].join('\n') },
  { title: 'volume names an element that does not exist', file: 'element.yaml', field: /elements|nope/, line: 5,
    text: (img) => [...good(img), '  - { name: v, layout: linear, elements: [d0, nope] }'].join('\n') },
  { title: 'chunkKiB is not a positive number', file: 'chunk.yaml', field: /chunkKiB/, line: 8,
    text: (img) => [...good(img), '  - name: v', '    layout: raid0', '    elements: [d0, d1]', '    chunkKiB: -64'].join('\n') },
  { title: 'bad listen address', file: 'listen.yaml', field: /listen|nbd/, line: 1,
    text: (img) => ['nbd: { listen: "not-an-address" }', ...good(img), '  - { name: v, layout: linear, elements: [d0] }'].join('\n') },
  { title: 'element without a uri', file: 'uri.yaml', field: /uri/, line: 2,
    text: () => ['elements:', '  - { name: d0 }', 'volumes:', '  - { name: v, layout: linear, elements: [d0] }'].join('\n') },
  { title: 'unknown key (typo)', file: 'typo.yaml', field: /volumez/, line: 4,
    text: (img) => [...good(img).slice(0, 3), 'volumez:', '  - { name: v, layout: linear, elements: [d0] }'].join('\n') },
  { title: 'YAML syntax error', file: 'syntax.yaml', field: /yaml|syntax|parse|indent|map|flow|collection/i, line: [5, 6],
    text: (img) => [...good(img), '  - { name: v, layout: linear, elements: [d0'].join('\n') },
  { title: 'scrub every is not a duration', file: 'scrub.yaml', field: /scrub\.every|fortnight/, line: 1,
    text: (img) => ['scrub: { every: fortnight }', ...good(img), '  - { name: v, layout: raid1, elements: [d0, d1] }'].join('\n') },
  { title: 'a volume scrub every shorter than a minute', file: 'scrub-short.yaml', field: /volumes\[0\]\.scrub\.every/, line: 8,
    text: (img) => [...good(img), '  - name: v', '    layout: raid1', '    elements: [d0, d1]', '    scrub: { every: 30s }'].join('\n') },
  { title: 'JSON config with a wrong type', file: 'config.json', field: /layout/,
    text: (img) => JSON.stringify({ elements: [{ name: 'd0', uri: `file:${img}` }], volumes: [{ name: 'v', layout: 42, elements: ['d0'] }] }, null, 2) },
];

describe('config errors', () => {
  let dir = '';
  let img = '';
  beforeAll(async () => {
    dir = tempDir('config');
    img = path.join(dir, 'd0.img');
    await sparseFile(img, 64 * 1024 * 1024);
    await sparseFile(`${img}1`, 64 * 1024 * 1024);
  });
  afterAll(() => { if (dir !== '') removeDir(dir); });

  for (const c of cases) {
    it(`${c.title} → exit 2, \`onestack: error:\` naming ${c.field.source}${c.line === undefined ? '' : ` at line ${c.line}`}`, async () => {
      const file = path.join(dir, c.file);
      await writeFile(file, c.text(img) + '\n');
      const args = [CLI_MAIN, 'serve', '--config', file, '--data-dir', path.join(dir, `data-${c.file}`),
        '--nbd', `127.0.0.1:${await freePort()}`, '--api', `127.0.0.1:${await freePort()}`];
      const r = await run(process.execPath, args, { timeoutMs: 20_000, cwd: REPO_ROOT });
      const out = `${r.stderr}\n${r.stdout}`;
      expect(r.timedOut, `the daemon started on a bad config instead of refusing it\n${out}`).toBe(false);
      expect(r.code, out).toBe(2);
      const line = out.split('\n').find((l) => l.includes('onestack: error:'));
      expect(line, out).toBeDefined();
      expect(line, 'the error names the field').toMatch(c.field);
      if (c.line !== undefined) {
        const lines = typeof c.line === 'number' ? [c.line] : c.line;
        const at = lines.join('|');
        expect(line, `the error names line ${at}`).toMatch(new RegExp(`(line\\s*(${at})\\b|:(${at})(:\\d+)?\\b)`));
      }
      expect(out).not.toMatch(/onestack: ready/);
      expect(out, 'no stack trace for a user error').not.toMatch(/\n\s+at .+\(.+:\d+:\d+\)/);
    });
  }
});

// Every top-level section and every kind of nested field (mapping, list, list item, scalar of each
// type; block and flow style; keys that are missing, unknown or conflicting): the loader names the
// exact field path and the line where it is written (the line marked `#<` below, 1-based). Run
// in-process through the engine's loader (fast), then a sample per section through `onestack serve`.
interface FieldCase {
  /** The field path the error must name (empty: the document itself). */
  readonly path: string;
  readonly lines: readonly string[];
  readonly json?: boolean;
}

const E = ['elements:', '  - { name: d0, uri: "file:d0.img" }', '  - { name: d1, uri: "file:d1.img" }'];
const V = ['volumes:', '  - { name: v, layout: raid1, elements: [d0, d1] }'];
const el = (...extra: string[]): string[] => [...E, ...extra, ...V];
const vol = (...items: string[]): string[] => [...E, 'volumes:', ...items];
const top = (...lines: string[]): string[] => [...lines, ...E, ...V];

const fieldCases: readonly FieldCase[] = [
  { path: '', lines: ['- just #<', '- a list'] },
  { path: 'pool', lines: top('pool: { bottom: 2 } #<') },
  { path: 'dataDir', lines: top('dataDir: 42 #<') },
  { path: 'dataDir', lines: top('dataDir: "" #<') },
  { path: 'nbd', lines: top('nbd: 5 #<') },
  { path: 'nbd.listen', lines: top('nbd:', '  listen: "nope" #<') },
  { path: 'nbd.listen', lines: top('nbd: { listen: "127.0.0.1:70000" } #<') },
  { path: 'nbd.tls.key', lines: top('nbd:', '  tls: #<', '    cert: /etc/x.pem') },
  { path: 'nbd.tls.require', lines: top('nbd:', '  tls:', '    cert: /etc/x.pem', '    key: /etc/x.key', '    require: "yes" #<') },
  { path: 'nbd.tls.verifyClient', lines: top('nbd:', '  tls: { cert: /x.pem, key: /x.key,', '    verifyClient: true } #<') },
  { path: 'nbd.tls.certs', lines: top('nbd:', '  tls:', '    certs: /x.pem #<') },
  { path: 'nbd.allow', lines: top('nbd:', '  allow: "10.0.0.0/8" #<') },
  { path: 'nbd.allow[1]', lines: top('nbd:', '  allow:', '    - 10.0.0.0/8', '    - 300.1.2.3/8 #<') },
  { path: 'api.listen', lines: top('api: { listen: 9090 } #<') },
  { path: 'api.port', lines: top('api:', '  port: 9090 #<') },
  { path: 'pools.top', lines: top('pools:', '  top: 2 #<') },
  { path: 'pools.middle', lines: top('pools: { middle: -1 } #<') },
  { path: 'pools.bottom', lines: top('pools:', '  bottom: two #<') },
  { path: 'pools.remote', lines: top('pools:', '  remote: 9 #<') },
  { path: 'queue.depth', lines: top('queue:', '  depth: 1000 #<') },
  { path: 'queue.slots', lines: top('queue: { slots: 0 } #<') },
  { path: 'queue.slotKiB', lines: top('queue:', '  slotKiB: 6 #<') },
  { path: 'queue', lines: top('queue: #<', '  slots: 65536', '  slotKiB: 16384') },
  { path: 'cache.readMiB', lines: top('cache:', '  readMiB: -1 #<') },
  { path: 'cache.size', lines: top('cache:', '  size: 64 #<') },
  { path: 'rebuild.maxMiBPerSec', lines: top('rebuild:', '  maxMiBPerSec: fast #<') },
  { path: 'elements', lines: ['elements: { d0: "file:d0.img" } #<', ...V] },
  { path: 'elements[0].name', lines: ['elements:', '  - uri: "file:d0.img" #<', ...V] },
  { path: 'elements[1].name', lines: ['elements:', '  - { name: d0, uri: "file:d0.img" }', '  - { name: "bad name", uri: "file:d1.img" } #<', ...V] },
  { path: 'elements[1].name', lines: ['elements:', '  - { name: d0, uri: "file:d0.img" }', '  - name: d0 #<', '    uri: "file:d1.img"', ...V] },
  { path: 'elements[1].uri', lines: ['elements:', '  - { name: d0, uri: "file:d0.img" }', '  - name: d1', '    uri: "file:./d0.img" #<', ...V] },
  { path: 'elements[2].uri', lines: el('  - { name: x, uri: "ftp://host/x" } #<') },
  { path: 'elements[2].cache', lines: el('  - name: x', '    uri: "file:x.img"', '    cache: writethrough #<') },
  { path: 'elements[2].timeoutMs', lines: el('  - { name: x, uri: "nbd://127.0.0.1:1/x", timeoutMs: 0 } #<') },
  { path: 'elements[2].secretFile', lines: el('  - name: x', '    uri: "file:x.img"', '    secretFile: /etc/secret #<') },
  { path: 'elements[2].createSizeBytes', lines: el('  - name: x', '    uri: "file:x.img"', '    createSizeBytes: 1XB #<') },
  { path: 'elements[2].createSizeBytes', lines: el('  - name: x', '    uri: "file:x.img"', '    createSizeBytes: 5000000 #<') },
  { path: 'elements[2].tls', lines: el('  - name: x', '    uri: "nbd://127.0.0.1:1/x"', '    tls: { ca: /ca.pem } #<') },
  { path: 'elements[2].tls.cert', lines: el('  - name: x', '    uri: "nbds://127.0.0.1:1/x"', '    tls:', '      cert: 42 #<', '      key: /k.pem') },
  { path: 'elements[2].connections', lines: el('  - name: x', '    uri: "nbd://127.0.0.1:1/x"', '    connections: 17 #<') },
  { path: 'elements[2].digest', lines: el('  - name: x', '    uri: "nbd://127.0.0.1:1/x"', '    digest: crc32c #<') },
  { path: 'elements[2].digest', lines: el('  - name: x', '    uri: "iscsi://127.0.0.1/iqn.2026-01.x:t/1"', '    digest: md5 #<') },
  { path: 'elements[2].targetUser', lines: el('  - name: x', '    uri: "iscsi://127.0.0.1/iqn.2026-01.x:t/1"', '    targetUser: tgt #<') },
  { path: 'elements[2].cacheTier', lines: el('  - name: x', '    uri: "file:x.img"', '    cacheTier: { path: /c.cache, sizeMiB: 64 } #<') },
  { path: 'elements[2].cacheTier.sizeMiB', lines: el('  - name: x', '    uri: "nbd://127.0.0.1:1/x"', '    cacheTier: #<', '      path: /c.cache') },
  { path: 'elements[2].cacheTier.blockKiB', lines: el('  - name: x', '    uri: "nbd://127.0.0.1:1/x"', '    cacheTier:', '      path: /c.cache', '      sizeMiB: 64', '      blockKiB: 12 #<') },
  { path: 'elements[2].colour', lines: el('  - { name: x, uri: "file:x.img", colour: red } #<') },
  { path: 'volumes', lines: [...E, 'volumes: v #<'] },
  { path: 'volumes[0].name', lines: vol('  - layout: raid1 #<', '    elements: [d0, d1]') },
  { path: 'volumes[0].layout', lines: vol('  - name: v', '    layout: [raid1] #<', '    elements: [d0, d1]') },
  { path: 'volumes[0].elements', lines: vol('  - { name: v, layout: raid1, elements: d0 } #<') },
  { path: 'volumes[0].elements', lines: vol('  - name: v', '    layout: raid1', '    elements: [d0] #<') },
  { path: 'volumes[0].elements[1]', lines: vol('  - name: v', '    layout: raid1', '    elements:', '      - d0', '      - d0 #<') },
  { path: 'volumes[0].chunkKiB', lines: vol('  - { name: v, layout: raid0, elements: [d0, d1], chunkKiB: 48 } #<') },
  { path: 'volumes[0].order', lines: vol('  - name: v', '    layout: raid1', '    elements: [d0, d1]', '    order: random #<') },
  { path: 'volumes[0].boot', lines: vol('  - name: v', '    layout: raid1', '    elements: [d0, d1]', '    boot: "yes" #<') },
  { path: 'volumes[1].boot', lines: vol('  - { name: a, layout: linear, elements: [d0], boot: true }', '  - { name: b, layout: linear, elements: [d1], boot: true } #<') },
  { path: 'volumes[0].sizeBytes', lines: vol('  - name: v', '    layout: raid1', '    elements: [d0, d1]', '    sizeBytes: 1000 #<') },
  { path: 'volumes[0].spares', lines: vol('  - name: v', '    layout: linear', '    elements: [d0]', '    spares: [d1] #<') },
  { path: 'volumes[0].spares[0]', lines: vol('  - name: v', '    layout: raid1', '    elements: [d0, d1]', '    spares:', '      - d9 #<') },
  { path: 'volumes[0].bitmapRegionKiB', lines: vol('  - name: v', '    layout: raid0', '    elements: [d0, d1]', '    bitmapRegionKiB: 4096 #<') },
  { path: 'volumes[1].name', lines: vol('  - { name: v, layout: linear, elements: [d0] }', '  - { name: v, layout: linear, elements: [d1] } #<') },
  { path: 'volumes[1].elements[0]', lines: vol('  - { name: a, layout: linear, elements: [d0] }', '  - name: b', '    layout: linear', '    elements:', '      - d0 #<') },
  { path: 'volumes[1].spares[0]', lines: vol('  - { name: a, layout: linear, elements: [d0] }', '  - name: b', '    layout: raid1', '    elements: [d1, d0]', '    spares:', '      - d0 #<') },
  { path: 'volumes[0].layout', json: true, lines: [
    '{', '  "elements": [{ "name": "d0", "uri": "file:d0.img" }],', '  "volumes": [', '    { "name": "v",', '      "layout": "raid9", #<',
    '      "elements": ["d0"] }', '  ]', '}'] },
  { path: 'queue.slots', json: true, lines: ['{', '  "queue": {', '    "slots": "many" #<', '  },', '  "elements": [],', '  "volumes": []', '}'] },
];

const escape = (s: string): string => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

describe('config errors: every section and field kind names its path and line', () => {
  let dir = '';
  beforeAll(() => { dir = tempDir('config-fields'); });
  afterAll(() => { if (dir !== '') removeDir(dir); });

  const write = async (c: FieldCase, i: number): Promise<{ file: string; line: number }> => {
    const line = c.lines.findIndex((l) => l.includes('#<')) + 1;
    expect(line, 'the case marks its line').toBeGreaterThan(0);
    // JSON has no comments: the marker is removed (the line numbers stay).
    const text = c.lines.map((l) => (c.json === true ? l.replace(/ *#<$/, '') : l)).join('\n') + '\n';
    const file = path.join(dir, `case-${i}.${c.json === true ? 'json' : 'yaml'}`);
    await writeFile(file, text);
    return { file, line };
  };

  fieldCases.forEach((c, i) => {
    it(`${c.path === '' ? '(the document)' : c.path}${c.json === true ? ' (JSON)' : ''} at its line [case ${i}]`, async () => {
      const { file, line } = await write(c, i);
      let caught: unknown;
      try {
        loadConfig({ path: file });
      } catch (err) {
        caught = err;
      }
      expect(caught, `the config was accepted:\n${c.lines.join('\n')}`).toBeInstanceOf(EngineError);
      const err = caught as EngineError;
      expect(err.code).toBe('config');
      const where = new RegExp(`^${escape(file)}:(\\d+):\\d+${c.path === '' ? '' : ` ${escape(c.path)}`}$`);
      expect(err.where, `${err.message}`).toMatch(where);
      expect(Number(where.exec(err.where ?? '')?.[1]), `${err.message} (${err.where ?? ''})`).toBe(line);
      if (c.path !== '') expect(err.message.startsWith(`${c.path}: `), err.message).toBe(true);
    });
  });

  // The same through the daemon: one case per top-level section, as a user sees it.
  const sections = ['', 'pool', 'dataDir', 'nbd.tls.verifyClient', 'nbd.allow[1]', 'api.listen', 'pools.bottom', 'queue.depth', 'cache.readMiB',
    'rebuild.maxMiBPerSec', 'elements[2].cacheTier.blockKiB', 'volumes[1].spares[0]'];
  it.each(sections)('onestack serve prints path and FILE:LINE for %s, exit 2', async (p) => {
    const i = fieldCases.findIndex((c) => c.path === p);
    const { file, line } = await write(fieldCases[i]!, i);
    const r = await run(process.execPath, [CLI_MAIN, 'serve', '--config', file, '--data-dir', path.join(dir, `data-${i}`),
      '--nbd', `127.0.0.1:${await freePort()}`, '--api', `127.0.0.1:${await freePort()}`], { timeoutMs: 20_000, cwd: REPO_ROOT });
    const out = `${r.stderr}\n${r.stdout}`;
    expect(r.code, out).toBe(2);
    const errLine = out.split('\n').find((l) => l.startsWith('onestack: error:')) ?? '';
    expect(errLine, out).toContain(`${file}:${line}:`);
    if (p !== '') expect(errLine, out).toContain(`onestack: error: ${p}: `);
    expect(existsSync(path.join(dir, `data-${i}`)), 'a refused config creates no data dir').toBe(false);
  });
});
