// Fuzzing of the config loader (issue 8): random JSON-like documents, random mutations of a valid
// config (deleted, renamed, retyped, duplicated and replaced fields), random and mutated YAML text
// from files. The loader either returns a config that keeps its invariants or throws
// EngineError('config') naming a field that exists; it never hangs, and the iSCSI secret in a URI
// never appears in an error or in the loaded config's JSON. Fixed seed in CI; FUZZ_SEED / FUZZ_RUNS.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { EngineError } from '../src/api-types.js';
import { loadConfig } from '../src/config/load.js';
import type { EngineConfig } from '../src/config/types.js';
import { layoutCountProblem } from '../src/config/validate.js';
import { applyMutations, mutations } from '../../../test/lib/fuzz-bytes.js';
import { fuzz } from '../../../test/lib/fuzz-run.js';

const SECRET = 'Fz-s3cret-Q7x';
/** A load that takes longer than this is a hang: inputs are at most a few hundred KiB, and loads take milliseconds. */
const LOAD_MS_MAX = 1000;

const BASE = {
  dataDir: './data',
  nbd: { listen: '127.0.0.1:10809', allow: ['127.0.0.1/32', '::1/128'], tls: { cert: './c.pem', key: './k.pem', ca: './ca.pem', require: false, verifyClient: true } },
  api: { listen: '127.0.0.1:9090' },
  pools: { top: 1, middle: 1, bottom: 2, remote: 1 },
  queue: { depth: 1024, slots: 256, slotKiB: 256 },
  cache: { readMiB: 64 },
  rebuild: { maxMiBPerSec: 200 },
  elements: [
    { name: 'd0', uri: 'file:./data/disk0.img', cache: 'writeback', createSizeBytes: '1GiB' },
    { name: 'd1', uri: './data/disk1.img', cache: 'none', createSizeBytes: 1073741824 },
    { name: 'd2', uri: 'file:///var/tmp/disk2.img' },
    { name: 'r0', uri: 'nbds://127.0.0.1:10810/disk', timeoutMs: 3000, connections: 2, tls: { ca: './ca.pem' }, cacheTier: { path: './r0.cache', sizeMiB: 1024 } },
    { name: 'i0', uri: `iscsi://alice%${SECRET}@127.0.0.1:3260/iqn.2026-11.test:disk/1`, digest: 'crc32c', targetUser: 'tgt', targetSecretFile: './t.secret' },
    { name: 's0', uri: './data/spare.img' },
    { name: 'u0', uri: 'nbd+unix:///e?socket=/tmp/nbd.sock' },
  ],
  volumes: [
    { name: 'default', layout: 'raid1', elements: ['d0', 'd1'], boot: true, spares: ['s0'], bitmapRegionKiB: 4096, sizeBytes: '512MiB', integrity: true },
    { name: 'v2', layout: 'linear', elements: ['d2', 'r0', 'u0'], chunkKiB: 64, order: 'lifo' },
    { name: 'v3', layout: 'linear', elements: ['i0'], order: 'priority' },
  ],
};

const KNOWN_KEYS = [...new Set(JSON.stringify(BASE).match(/"([A-Za-z]+)":/g)!.map((k) => k.slice(1, -2)))];

let dir = '';
beforeAll(() => { dir = fs.mkdtempSync(path.join(os.tmpdir(), 'onestack-fuzz-config-')); });
afterAll(() => { if (dir !== '') fs.rmSync(dir, { recursive: true, force: true }); });

// ---- mutations of a document tree ---------------------------------------------------------------

type Path = Array<string | number>;
type Json = unknown;

function plainObject(value: Json): value is Record<string, Json> {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return false;
  const proto = Object.getPrototypeOf(value) as unknown;
  return proto === Object.prototype || proto === null;
}

/** Paths of every node under plain objects and arrays (boxed values, maps and dates are leaves). */
function allPaths(value: Json, prefix: Path = []): Path[] {
  const out: Path[] = [];
  if (Array.isArray(value)) value.forEach((v, i) => out.push([...prefix, i], ...allPaths(v, [...prefix, i])));
  else if (plainObject(value)) for (const [k, v] of Object.entries(value)) out.push([...prefix, k], ...allPaths(v, [...prefix, k]));
  return out;
}

function at(root: Json, p: Path): Json {
  let node = root;
  for (const seg of p) node = node === null || typeof node !== 'object' ? undefined : (node as Record<string | number, Json>)[seg];
  return node;
}

/** A string that makes a backtracking regex work hard: a prefix, a long run of one character, a suffix. */
const pathological = fc.record({
  prefix: fc.constantFrom('', '1', '1.5', 'iscsi://', 'nbd://', 'iscsi://a%', '[', 'a'), run: fc.constantFrom(' ', '\t', '1', ':', '%', 'a', '.', '/', '0'),
  n: fc.integer({ min: 2000, max: 60000 }), suffix: fc.constantFrom('', '!', 'x!', '@', '#', ' GiB!'),
}).map(({ prefix, run, n, suffix }) => prefix + run.repeat(n) + suffix);

const leafValue: fc.Arbitrary<Json> = fc.oneof(
  { weight: 3, arbitrary: fc.constantFrom('', '0', '-1', '1GiB', '1.5 GiB', '4097', '99999999999999999999', 'raid7', 'raid5', 'raid6', 'raid10', '::1',
    '[::1]:0', '127.0.0.1:99999', 'iscsi://bob%x@h/iqn.x:y/1', 'iscsi://h/iqn.2026-11.x:y/16384', 'nbd+unix:///e', 'nbds://h/e?x=1', 'file://remote/x',
    'C:\\disk', 'file:', '\0', '%zz', 'd0', 'd1', 's0', 'default', 'none', 'crc32c', 'fifo', '10.0.0.0/33', '::/0', 'a'.repeat(5000)) },
  { weight: 3, arbitrary: fc.constantFrom(-1, 0, 1, 2, 3, 4, 63, 64, 65, 255, 256, 1023, 1024, 4096, 65536, 65537, 2 ** 31, 2 ** 53, 1.5, -0, NaN, Infinity, true, false, null) },
  { weight: 2, arbitrary: fc.jsonValue({ maxDepth: 2 }) },
  { weight: 1, arbitrary: fc.anything({ maxDepth: 2, withNullPrototype: true, withBoxedValues: true, withMap: true, withSet: true, withDate: true, withTypedArray: true, withSparseArray: true }) },
  { weight: 1, arbitrary: pathological },
);

type Op =
  | { op: 'delete' | 'duplicate' | 'retype'; at: number }
  | { op: 'replace' | 'add'; at: number; value: Json; key: string }
  | { op: 'rename'; at: number; edit: number }
  | { op: 'edit-string'; at: number; insert: string; pos: number; cut: number };

const treeOp: fc.Arbitrary<Op> = fc.oneof(
  fc.record({ op: fc.constantFrom('delete' as const, 'duplicate' as const, 'retype' as const), at: fc.nat() }),
  fc.record({ op: fc.constantFrom('replace' as const, 'add' as const), at: fc.nat(), value: leafValue, key: fc.oneof(fc.constantFrom(...KNOWN_KEYS), fc.string({ maxLength: 8 })) }),
  fc.record({ op: fc.constant('rename' as const), at: fc.nat(), edit: fc.nat() }),
  fc.record({ op: fc.constant('edit-string' as const), at: fc.nat(), insert: fc.constantFrom('', '/', '@', '%', ':', '?', '#', ' ', '\n', 'é', '\0', '..'), pos: fc.nat(), cut: fc.nat({ max: 3 }) }),
);

function retyped(v: Json): Json {
  if (typeof v === 'number') return String(v);
  if (typeof v === 'string') return /^\d+$/.test(v) ? Number(v) : [v];
  if (typeof v === 'boolean') return String(v);
  if (Array.isArray(v)) return v[0] ?? {};
  if (v !== null && typeof v === 'object') return Object.values(v);
  return 0;
}

/** Applies one operation to a deep copy's node picked by `op.at` among all nodes. */
function applyOp(root: Record<string, Json>, op: Op): void {
  const paths = allPaths(root);
  if (paths.length === 0) return;
  const p = paths[op.at % paths.length]!;
  const parent = at(root, p.slice(0, -1)) as Record<string | number, Json> | Json[];
  const key = p[p.length - 1]!;
  const current = (parent as Record<string | number, Json>)[key];
  const set = (v: Json): void => { (parent as Record<string | number, Json>)[key] = v; };
  switch (op.op) {
    case 'delete':
      if (Array.isArray(parent)) parent.splice(Number(key), 1);
      else delete (parent as Record<string, Json>)[key];
      return;
    case 'duplicate':
      if (Array.isArray(parent)) parent.splice(Number(key), 0, structuredClone(current));
      else set([current, current]);
      return;
    case 'retype':
      set(retyped(current));
      return;
    case 'replace':
      set(op.value);
      return;
    case 'add':
      if (plainObject(current)) current[op.key] = op.value;
      else set(op.value);
      return;
    case 'rename': {
      if (Array.isArray(parent) || typeof key !== 'string') return;
      const edits = [`${key}s`, key.slice(0, -1), key.toUpperCase(), `${key.charAt(0).toUpperCase()}${key.slice(1)}`, `_${key}`, KNOWN_KEYS[op.edit % KNOWN_KEYS.length]!];
      delete (parent as Record<string, Json>)[key];
      (parent as Record<string, Json>)[edits[op.edit % edits.length]!] = current;
      return;
    }
    case 'edit-string':
      if (typeof current !== 'string') return;
      set(current.slice(0, op.pos % (current.length + 1)) + op.insert + current.slice((op.pos % (current.length + 1)) + op.cut));
      return;
  }
}

const mutatedConfig = fc.array(treeOp, { minLength: 1, maxLength: 4 }).map((ops) => {
  const doc = structuredClone(BASE) as unknown as Record<string, Json>;
  for (const op of ops) applyOp(doc, op);
  return doc;
});

// ---- what every outcome must satisfy --------------------------------------------------------------

/** Pieces of the secret long enough that seeing one in an output is a leak. */
const SECRET_PIECES = Array.from({ length: SECRET.length - 5 }, (_, i) => SECRET.slice(i, i + 6));

/**
 * Whether the document still holds the secret where a secret goes: after a '%' and before an '@'
 * in a string that starts like a URI (a mutation may have made it a user name, or a file name).
 */
function secretInPlace(doc: Json): boolean {
  return allPaths(doc).some((p) => {
    const v = at(doc, p);
    return typeof v === 'string' && v.includes(`%${SECRET}@`) && /^[a-z][a-z0-9+.-]*:\/\//i.test(v);
  });
}

function expectNoSecret(text: string, doc: Json): void {
  if (!secretInPlace(doc)) return;
  for (const piece of SECRET_PIECES) expect(text, 'output shows (part of) the iSCSI secret').not.toContain(piece);
}

function checkConfig(c: EngineConfig, doc: Json): void {
  const names = c.elements.map((e) => e.name);
  expect(new Set(names).size).toBe(names.length);
  expect(new Set(c.volumes.map((v) => v.name)).size).toBe(c.volumes.length);
  const owners = new Set<string>();
  for (const v of c.volumes) {
    expect(layoutCountProblem(v.layout, v.elements.length)).toBeUndefined();
    for (const e of v.elements) {
      expect(names).toContain(e);
      expect(owners.has(e)).toBe(false);
      owners.add(e);
    }
    for (const s of v.spares ?? []) expect(v.elements).not.toContain(s);
    // Integrity only where the data path can repair (issue 10: raid1/raid10 for now).
    if (v.integrity === true) expect(['raid1', 'raid10']).toContain(v.layout);
  }
  expect(c.volumes.filter((v) => v.boot).length).toBeLessThanOrEqual(1);
  expect(c.queue.depth & (c.queue.depth - 1)).toBe(0);
  expectNoSecret(JSON.stringify(c), doc);
}

function checkError(err: unknown, doc: Json): EngineError {
  if (!(err instanceof EngineError) || err.code !== 'config') throw err;
  expectNoSecret(`${err.message}\n${err.where ?? ''}\n${err.hint ?? ''}`, doc);
  expect(err.message.length).toBeGreaterThan(0);
  return err;
}

/** "volumes[0].elements[1]" → ['volumes', 0, 'elements', 1]. */
function segments(field: string): Path {
  return [...field.matchAll(/([^.[\]]+)|\[(\d+)\]/g)].map((m) => (m[2] !== undefined ? Number(m[2]) : m[1]!));
}

function timedLoad(load: () => EngineConfig): { config?: EngineConfig; err?: unknown } {
  const started = performance.now();
  let result: { config?: EngineConfig; err?: unknown };
  try {
    result = { config: load() };
  } catch (err) {
    result = { err };
  }
  const ms = performance.now() - started;
  expect(ms, `config load took ${Math.round(ms)} ms`).toBeLessThan(LOAD_MS_MAX);
  return result;
}

function writeFile(name: string, text: string | Uint8Array): string {
  const file = path.join(dir, name);
  fs.writeFileSync(file, text);
  return file;
}

describe('fuzz: config loader', () => {
  it('the base document used for mutations is valid', () => {
    checkConfig(loadConfig({ object: BASE, baseDir: dir }), BASE);
  });

  it('random documents: a config or EngineError("config"), nothing else', () => {
    const doc = fc.oneof(fc.jsonValue({ maxDepth: 4 }), fc.anything({ maxDepth: 3, withNullPrototype: true, withMap: true, withSparseArray: true }),
      fc.dictionary(fc.constantFrom(...KNOWN_KEYS), leafValue, { maxKeys: 6 }));
    fuzz('config random documents', fc.property(doc, (raw) => {
      const r = timedLoad(() => loadConfig({ object: raw, baseDir: dir }));
      if (r.config !== undefined) checkConfig(r.config, raw);
      else checkError(r.err, raw);
    }), 2000);
  });

  it('mutations of a valid config: a config that keeps its invariants, or an error naming a field that exists', () => {
    fuzz('config mutations', fc.property(mutatedConfig, (doc) => {
      const r = timedLoad(() => loadConfig({ object: doc, baseDir: dir }));
      if (r.config !== undefined) {
        checkConfig(r.config, doc);
        return;
      }
      const err = checkError(r.err, doc);
      // The field path in `where` leads to a node of the document, or names a key missing from one
      // (unless a key holds '.', '[' or ']', which make any dotted path ambiguous).
      if (allPaths(doc).some((p) => p.some((seg) => typeof seg === 'string' && /[.[\]]/.test(seg)))) return;
      const where = segments(err.where ?? '');
      const parent = at(doc, where.slice(0, -1));
      expect(where.length === 0 || (parent !== null && typeof parent === 'object'), `error at "${err.where}" (${err.message})`).toBe(true);
    }), 3000);
  });

  it('long strings in every string field: no hang (each pattern the loader matches stays linear in its input)', () => {
    const stringPaths = allPaths(BASE).filter((p) => typeof at(BASE, p) === 'string');
    const longText = fc.record({
      which: fc.nat(), cut: fc.nat(), run: fc.constantFrom(' ', '\t', '0', ':', '%', 'a', '/', '.', '@'),
      n: fc.integer({ min: 2000, max: 60000 }), suffix: fc.constantFrom('', '!', 'x!', '@', '#', '/'),
    });
    fuzz('config long strings', fc.property(longText, ({ which, cut, run, n, suffix }) => {
      const doc = structuredClone(BASE) as unknown as Record<string, Json>;
      const p = stringPaths[which % stringPaths.length]!;
      const original = at(doc, p) as string;
      const parent = at(doc, p.slice(0, -1)) as Record<string | number, Json>;
      // The field's own text cut anywhere, then a long run of one character.
      parent[p[p.length - 1]!] = original.slice(0, cut % (original.length + 1)) + run.repeat(n) + suffix;
      const r = timedLoad(() => loadConfig({ object: doc, baseDir: dir }));
      if (r.config !== undefined) checkConfig(r.config, doc);
      else checkError(r.err, doc);
    }), 1500);
  });

  it('iSCSI secrets with any characters never show up in an error or in the loaded config', () => {
    const secretArb = fc.record({
      head: fc.stringMatching(/^[A-Za-z0-9]{6,12}$/), special: fc.constantFrom('', '/', '?', '#', '@', ':', '%', '%2F', '%zz', ' ', '[', '\\'), tail: fc.stringMatching(/^[A-Za-z0-9]{6,12}$/),
    });
    const shape = fc.constantFrom('iscsi://alice%{S}@127.0.0.1:3260/iqn.2026-11.test:disk/1', 'iscsi://alice:{S}@h/iqn.2026-11.test:disk/1',
      'iscsi://alice%{S}@h:99999/iqn.2026-11.test:disk/1', 'iscsi://alice%{S}@h/notaniqn/1', 'iscsi://alice%{S}@h/iqn.x:y/99999', 'iscsi://alice%{S}@/iqn.x:y/1',
      'iscsi://alice%{S}@h/iqn.x:y', 'iscsi://alice%{S}@h/iqn.x:y/1?x=1', 'ISCSI://alice%{S}@h/iqn.x:y/1');
    fuzz('config iscsi secrets', fc.property(secretArb, shape, ({ head, special, tail }, uri) => {
      const secret = `${head}${special}${tail}`;
      const doc = { elements: [{ name: 'i0', uri: uri.replace('{S}', secret) }] };
      const r = timedLoad(() => loadConfig({ object: doc, baseDir: dir }));
      const shown = r.config !== undefined ? JSON.stringify(r.config) : (() => {
        const err = checkError(r.err, doc);
        return `${err.message}\n${err.where ?? ''}\n${err.hint ?? ''}`;
      })();
      // Neither half of the secret, whatever it holds, may be printed.
      expect(shown, 'a config output shows part of the iSCSI secret').not.toContain(head);
      expect(shown, 'a config output shows part of the iSCSI secret').not.toContain(tail);
    }), 1500);
  });

  it('YAML files: mutated config text and token soup give a config or an error with FILE:LINE:COL', () => {
    const tokens = fc.array(fc.oneof(
      fc.constantFrom('\n', '  ', '- ', ': ', '{', '}', '[', ']', ', ', '#', '&a ', '*a', '<<: ', '!!str ', '!!binary ', '"', "'", '---\n', '...\n', '%YAML 1.2\n', '? ', '|', '>', '\t'),
      fc.constantFrom(...KNOWN_KEYS), fc.constantFrom('raid1', 'd0', '1GiB', 'file:./x.img', '127.0.0.1:0', 'true', '~', '0x10', '1e3'), fc.string({ maxLength: 6 }),
    ), { maxLength: 60 }).map((t) => t.join(''));
    const text = fc.oneof(
      { weight: 2, arbitrary: fc.tuple(mutatedConfig, fc.boolean()).map(([doc, json]) => (json ? JSON.stringify(doc, null, 1) : stringify(doc))) },
      { weight: 2, arbitrary: fc.tuple(fc.constant(stringify(BASE)), mutations(4)).map(([t, m]) => new TextDecoder().decode(applyMutations(new TextEncoder().encode(t), m))) },
      { weight: 1, arbitrary: tokens },
    );
    fuzz('config yaml files', fc.property(text, (source) => {
      const file = writeFile('fuzz.yaml', source);
      const r = timedLoad(() => loadConfig({ path: file }));
      if (r.config !== undefined) {
        checkConfig(r.config, null);
        return;
      }
      if (!(r.err instanceof EngineError) || r.err.code !== 'config') throw r.err;
      const m = /^(.*):(\d+):(\d+)( |$)/.exec(r.err.where ?? '');
      if (m !== null) {
        expect(m[1]).toBe(file);
        expect(Number(m[2])).toBeLessThanOrEqual(source.split(/\r\n|\r|\n/).length + 1);
      } else {
        expect(r.err.where).toBe(file);
      }
    }), 1500);
  });
});
