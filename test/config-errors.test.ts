// Acceptance: a config with errors gives one line `onestack: error: …` naming the field (and the
// line, for YAML), exit status 2, and no daemon left running.
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
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
