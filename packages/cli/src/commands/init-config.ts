// The pure middle of `onestack init`: answers (a plan) → the config object → its YAML text, plus
// the small parsers the questions use (layout, element selection, sizes). No I/O here, so every
// rule is unit-tested directly.
import { dirname, isAbsolute, join, relative, sep } from 'node:path';
import type { Layout } from '@onestack/engine';
import { closest } from '../args.js';
import type { Parsed } from './init-prompts.js';
import { toYaml, type YamlValue } from './init-yaml.js';

export const LAYOUT_NAMES: readonly Layout[] = ['linear', 'raid0', 'raid1', 'raid10', 'raid5', 'raid6'];
/** Fewest elements per layout (as the engine's validator requires; it has the last word). */
const LAYOUT_MIN: Readonly<Record<Layout, number>> = { linear: 1, raid0: 2, raid1: 2, raid10: 4, raid5: 3, raid6: 4 };
const LAYOUT_WHAT: Readonly<Record<Layout, string>> = {
  linear: 'concatenation, no redundancy', raid0: 'striping, no redundancy', raid1: 'mirror, survives all but one',
  raid10: 'striped mirrors, even count', raid5: 'parity, survives one', raid6: 'double parity, survives two',
};
export const GIB = 1024 ** 3;
export const IMAGE_GIB_MAX = 1024 * 1024;
const SELECTION_ITEMS_MAX = 64;

export interface PlannedElement {
  readonly kind: 'local' | 'nbd' | 'iscsi';
  /** Absolute path (local) or the element URI without any secret (remote). */
  readonly uri: string;
  /** Local file to create at first start, data bytes (the engine adds its 4 MiB header). */
  readonly createSizeBytes?: number;
  /** iscsi with CHAP: absolute path of the file holding the secret. */
  readonly secretFile?: string;
}

export interface InitPlan {
  readonly configPath: string;
  readonly dataDir: string;
  readonly layout: Layout;
  readonly elements: readonly PlannedElement[];
  readonly volume: string;
  readonly boot: boolean;
}

export function layoutMinimum(layout: Layout): number {
  return LAYOUT_MIN[layout];
}

/** The layout menu line: "raid1 (mirror, survives all but one)". */
export function layoutMenu(): string {
  return LAYOUT_NAMES.map((l) => `  ${l.padEnd(7)} ${LAYOUT_WHAT[l]}, ${LAYOUT_MIN[l]}+ elements`).join('\n');
}

/** A mirror when there are two or more elements (what the embedded default is), else linear. */
export function defaultLayout(elementCount: number): Layout {
  return elementCount >= 2 ? 'raid1' : 'linear';
}

export function parseLayout(answer: string): Parsed<Layout> {
  const word = answer.trim().toLowerCase();
  const found = LAYOUT_NAMES.find((l) => l === word);
  if (found !== undefined) return { ok: found };
  const guess = closest(word, LAYOUT_NAMES);
  return { problem: `unknown layout "${answer}"${guess !== undefined ? ` (did you mean ${guess}?)` : ''}; one of ${LAYOUT_NAMES.join(', ')}` };
}

/** A whole number of GiB for new image files. */
export function parseGib(answer: string): Parsed<number> {
  const n = /^\d{1,7}$/.test(answer.trim()) ? Number(answer.trim()) : NaN;
  if (!(n >= 1 && n <= IMAGE_GIB_MAX)) return { problem: `"${answer}" is not a size in GiB (a whole number from 1 to ${IMAGE_GIB_MAX})` };
  return { ok: n };
}

/**
 * "1,3", "1 3", "2-4", "all": 1-based numbers into a list of `count` candidates, in the order
 * given (that is the role order). Words that are not numbers come back in `extra` (URIs, paths).
 */
export function parseSelection(answer: string, count: number): Parsed<{ numbers: number[]; extra: string[] }> {
  const words = answer.split(/[\s,]+/).filter((w) => w !== '');
  if (words.length > SELECTION_ITEMS_MAX) return { problem: `too many items (at most ${SELECTION_ITEMS_MAX})` };
  const numbers: number[] = [];
  const extra: string[] = [];
  for (const word of words) {
    if (word.toLowerCase() === 'all') { numbers.push(...Array.from({ length: count }, (_, i) => i + 1)); continue; }
    const range = /^(\d{1,4})(?:-(\d{1,4}))?$/.exec(word);
    if (range === null) { extra.push(word); continue; }
    const from = Number(range[1]);
    const to = range[2] === undefined ? from : Number(range[2]);
    if (from < 1 || to > count || from > to) return { problem: `${word}: choose numbers from 1 to ${count}` };
    for (let n = from; n <= to; n++) numbers.push(n);
  }
  const twice = numbers.find((n, i) => numbers.indexOf(n) !== i);
  if (twice !== undefined) return { problem: `${twice} is chosen twice` };
  if (numbers.length + extra.length === 0) return { problem: 'choose at least one element' };
  return { ok: { numbers, extra } };
}

/** Element names by kind, numbered in role order: d0, d1 (local), n0 (nbd), i0 (iscsi). */
export function elementNames(elements: readonly PlannedElement[]): string[] {
  const next: Record<PlannedElement['kind'], number> = { local: 0, nbd: 0, iscsi: 0 };
  const prefix: Record<PlannedElement['kind'], string> = { local: 'd', nbd: 'n', iscsi: 'i' };
  return elements.map((e) => `${prefix[e.kind]}${next[e.kind]++}`);
}

/** `./x/y` when `target` lies under `baseDir`, else the absolute path (the loader resolves both). */
export function relativeTo(baseDir: string, target: string): string {
  if (!isAbsolute(target)) return target;
  const rel = relative(baseDir, target);
  if (rel === '') return '.';
  if (rel.startsWith('..') || isAbsolute(rel)) return target;
  return `./${rel.split(sep).join('/')}`;
}

/** Where a typed CHAP secret is kept: DATA/chap-USER.secret (mode 0600), referenced as secretFile. */
export function secretFileFor(dataDir: string, user: string): string {
  const safe = user.replace(/[^A-Za-z0-9._-]/g, '_').slice(0, 64);
  return join(dataDir, `chap-${safe === '' ? 'user' : safe}.secret`);
}

/** The raw config (what onestack.yaml holds), paths relative to the config file where they can be. */
export function buildConfig(plan: InitPlan): { [key: string]: YamlValue } {
  const base = dirname(plan.configPath);
  const names = elementNames(plan.elements);
  const elements = plan.elements.map((e, i): { [key: string]: YamlValue | undefined } => ({
    name: names[i] ?? `e${i}`,
    uri: e.kind === 'local' ? `file:${relativeTo(base, e.uri)}` : e.uri,
    createSizeBytes: e.createSizeBytes,
    secretFile: e.secretFile === undefined ? undefined : relativeTo(base, e.secretFile),
  }));
  return {
    dataDir: relativeTo(base, plan.dataDir),
    nbd: { listen: '127.0.0.1:10809' },
    api: { listen: '127.0.0.1:9090' },
    elements,
    volumes: [{ name: plan.volume, layout: plan.layout, elements: names, boot: plan.boot }],
  };
}

/** The whole file: a header that says where it came from and how to use it, then the config. */
export function configText(plan: InitPlan, writtenAt: Date): string {
  const header = [
    `onestack configuration, written by "onestack init" on ${writtenAt.toISOString().slice(0, 10)}.`,
    `Start it with: onestack serve --config ${plan.configPath}`,
    'Format: docs/SPEC.md ("Config"). CHAP secrets are not in this file: secretFile names where they are.',
  ];
  return toYaml(buildConfig(plan), header);
}
