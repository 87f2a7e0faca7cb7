// Validation of API request bodies. Each failure names the field (where) and what would be
// accepted (hint), so a client can fix its request without reading the source.
import { badRequest } from './http.js';
import { splitInlineSecret } from '../uri-secret.js';

export const LAYOUTS = ['linear', 'raid0', 'raid1', 'raid10', 'raid5', 'raid6'] as const;
export const ORDERS = ['fifo', 'lifo', 'priority'] as const;
export const CACHES = ['writeback', 'none'] as const;
export type LayoutName = (typeof LAYOUTS)[number];
export type OrderName = (typeof ORDERS)[number];
export type CacheName = (typeof CACHES)[number];

const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
const NAME_HINT = '1 to 64 characters: letters, digits, . _ -, starting with a letter or digit';
const ELEMENTS_MAX = 256;
const URI_CHARS_MAX = 4096;
const CHUNK_KIB_MAX = 1024 * 1024;
const PATH_CHARS_MAX = 4096;
const SECRET_CHARS_MAX = 1024;
const DISCOVER_SCHEMES_RE = /^(nbds?(\+unix)?|iscsi):\/\//i;

export interface CreateVolumeSpec {
  name: string; layout: LayoutName; elements: string[]; chunkKiB?: number; sizeBytes?: number; order?: OrderName; integrity?: boolean;
  /** A raid1/raid10 leg written after the acknowledgement (the engine checks the rest, as for the config). */
  writeBehind?: { element: string; maxLagMiB?: number; drainOnFlush?: boolean };
}
export interface AddElementSpec { uri: string; name?: string; cache?: CacheName; secretFile?: string }
export interface DiscoverTlsFiles { ca?: string; cert?: string; key?: string }
/** A discover request with any inline secret moved out of `uri` into `secret`. */
export interface DiscoverSpec { uri: string; secret?: string; secretFile?: string; tls?: DiscoverTlsFiles }

function objectBody(body: unknown, allowed: readonly string[]): Record<string, unknown> {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw badRequest('request body must be a JSON object', 'body', `fields: ${allowed.join(', ')}`);
  }
  const record = body as Record<string, unknown>;
  const unknown = Object.keys(record).find((k) => !allowed.includes(k));
  if (unknown !== undefined) throw badRequest(`unknown field "${unknown}"`, unknown, `fields: ${allowed.join(', ')}`);
  return record;
}

export function checkName(value: unknown, field: string): string {
  if (typeof value !== 'string' || !NAME_RE.test(value)) {
    throw badRequest(`${field} must be a name`, field, NAME_HINT);
  }
  return value;
}

function checkChoice<T extends string>(value: unknown, field: string, choices: readonly T[]): T {
  const found = choices.find((c) => c === value);
  if (found === undefined) throw badRequest(`${field} must be one of ${choices.join(', ')}`, field, `got ${JSON.stringify(value)}`);
  return found;
}

function checkPositiveInt(value: unknown, field: string, max: number): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value <= 0 || value > max) {
    throw badRequest(`${field} must be a whole number from 1 to ${max}`, field, `got ${JSON.stringify(value)}`);
  }
  return value;
}

export function checkCreateVolume(body: unknown): CreateVolumeSpec {
  const b = objectBody(body, ['name', 'layout', 'elements', 'chunkKiB', 'sizeBytes', 'order', 'integrity', 'writeBehind']);
  const name = checkName(b['name'], 'name');
  const layout = checkChoice(b['layout'], 'layout', LAYOUTS);
  const elements = b['elements'];
  if (!Array.isArray(elements) || elements.length === 0 || elements.length > ELEMENTS_MAX) {
    throw badRequest(`elements must be a list of 1 to ${ELEMENTS_MAX} element names`, 'elements', 'in role order, e.g. ["d0", "d1"]');
  }
  const names = elements.map((e, i) => checkName(e, `elements[${i}]`));
  const duplicate = names.find((n, i) => names.indexOf(n) !== i);
  if (duplicate !== undefined) throw badRequest(`element ${duplicate} is named twice`, 'elements');
  const spec: CreateVolumeSpec = { name, layout, elements: names };
  if (b['chunkKiB'] !== undefined) spec.chunkKiB = checkPositiveInt(b['chunkKiB'], 'chunkKiB', CHUNK_KIB_MAX);
  if (b['sizeBytes'] !== undefined) spec.sizeBytes = checkPositiveInt(b['sizeBytes'], 'sizeBytes', Number.MAX_SAFE_INTEGER);
  if (b['order'] !== undefined) spec.order = checkChoice(b['order'], 'order', ORDERS);
  if (b['integrity'] !== undefined) {
    if (typeof b['integrity'] !== 'boolean') throw badRequest('integrity must be true or false', 'integrity', `got ${JSON.stringify(b['integrity'])}`);
    // Refused here too (the engine refuses it as well), so the client hears it before anything is created.
    if (b['integrity'] && (layout === 'linear' || layout === 'raid0')) {
      throw badRequest(`integrity needs a layout that can repair a bad block (raid1, raid10, raid5 or raid6); this volume is ${layout}`, 'integrity', 'create it without integrity, or as raid1, raid10, raid5 or raid6');
    }
    if (b['integrity']) spec.integrity = true;
  }
  if (b['writeBehind'] !== undefined) spec.writeBehind = checkWriteBehind(b['writeBehind'], names);
  return spec;
}

function checkWriteBehind(value: unknown, elements: readonly string[]): NonNullable<CreateVolumeSpec['writeBehind']> {
  const w = objectBody(value, ['element', 'maxLagMiB', 'drainOnFlush']);
  const element = checkName(w['element'], 'writeBehind.element');
  if (!elements.includes(element)) throw badRequest(`writeBehind.element ${element} is not one of the volume's elements`, 'writeBehind.element', `one of ${elements.join(', ')}`);
  const spec: NonNullable<CreateVolumeSpec['writeBehind']> = { element };
  if (w['maxLagMiB'] !== undefined) spec.maxLagMiB = checkPositiveInt(w['maxLagMiB'], 'writeBehind.maxLagMiB', 1024);
  if (w['drainOnFlush'] !== undefined) {
    if (typeof w['drainOnFlush'] !== 'boolean') throw badRequest('writeBehind.drainOnFlush must be true or false', 'writeBehind.drainOnFlush', `got ${JSON.stringify(w['drainOnFlush'])}`);
    spec.drainOnFlush = w['drainOnFlush'];
  }
  return spec;
}

export function checkAddElement(body: unknown): AddElementSpec {
  const b = objectBody(body, ['uri', 'name', 'cache', 'secretFile']);
  const uri = b['uri'];
  if (typeof uri !== 'string' || uri.trim() === '' || uri.length > URI_CHARS_MAX || /[\0\r\n]/.test(uri)) {
    throw badRequest('uri must be an element URI', 'uri', 'file:PATH, nbd://HOST[:PORT]/EXPORT, nbd+unix:///EXPORT?socket=PATH or iscsi://HOST/IQN/LUN');
  }
  const spec: AddElementSpec = { uri };
  if (b['name'] !== undefined) spec.name = checkName(b['name'], 'name');
  if (b['cache'] !== undefined) spec.cache = checkChoice(b['cache'], 'cache', CACHES);
  if (b['secretFile'] !== undefined) {
    spec.secretFile = checkPath(b['secretFile'], 'secretFile');
    if (!/^iscsi:\/\//i.test(uri)) throw badRequest('secretFile (a CHAP secret) only applies to iscsi:// elements', 'secretFile');
  }
  return spec;
}

function checkPath(value: unknown, field: string): string {
  if (typeof value !== 'string' || value === '' || value.length > PATH_CHARS_MAX || value.includes('\0')) {
    throw badRequest(`${field} must be a file path`, field, 'an absolute path the daemon can read');
  }
  return value;
}

function checkTls(value: unknown): DiscoverTlsFiles {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw badRequest('tls must be an object of PEM file paths', 'tls', 'fields: ca, cert, key');
  }
  const t = value as Record<string, unknown>;
  const unknown = Object.keys(t).find((k) => !['ca', 'cert', 'key'].includes(k));
  if (unknown !== undefined) throw badRequest(`unknown field "tls.${unknown}"`, `tls.${unknown}`, 'fields: ca, cert, key');
  if ((t['cert'] === undefined) !== (t['key'] === undefined)) throw badRequest('tls.cert and tls.key go together', 'tls', 'give both or neither');
  const tls: DiscoverTlsFiles = {};
  for (const k of ['ca', 'cert', 'key'] as const) if (t[k] !== undefined) tls[k] = checkPath(t[k], `tls.${k}`);
  return tls;
}

/** Never echoes a secret: errors name the field, not its value. */
export function checkDiscover(body: unknown): DiscoverSpec {
  const b = objectBody(body, ['uri', 'secret', 'secretFile', 'tls']);
  const raw = b['uri'];
  if (typeof raw !== 'string' || raw.length > URI_CHARS_MAX || /[\0\r\n]/.test(raw) || !DISCOVER_SCHEMES_RE.test(raw)) {
    throw badRequest('uri must be an NBD or iSCSI URI', 'uri', 'nbd://HOST[:PORT], nbds://HOST[:PORT], nbd+unix:///?socket=PATH or iscsi://[USER@]HOST[:PORT]');
  }
  const split = splitInlineSecret(raw);
  const secretGiven = [split.secret, b['secret'], b['secretFile']].filter((s) => s !== undefined).length;
  if (secretGiven > 1) throw badRequest('give the secret once: in the URI, secret or secretFile', 'secret');
  const spec: DiscoverSpec = { uri: split.uri };
  const secret = split.secret ?? b['secret'];
  if (secret !== undefined) {
    if (typeof secret !== 'string' || secret === '' || secret.length > SECRET_CHARS_MAX || /[\0\r\n]/.test(secret)) {
      throw badRequest(`secret must be a string of 1 to ${SECRET_CHARS_MAX} characters on one line`, 'secret');
    }
    spec.secret = secret;
  }
  if (b['secretFile'] !== undefined) spec.secretFile = checkPath(b['secretFile'], 'secretFile');
  const scheme = raw.slice(0, raw.indexOf(':')).toLowerCase();
  if (spec.secret !== undefined || spec.secretFile !== undefined) {
    if (scheme !== 'iscsi') throw badRequest('a CHAP secret only applies to iscsi:// URIs', 'secret');
    if (split.user === '') throw badRequest('a CHAP secret needs a user in the URI', 'uri', 'iscsi://USER@HOST[:PORT]');
  }
  if (b['tls'] !== undefined) {
    if (!scheme.startsWith('nbds')) throw badRequest('tls only applies to nbds:// URIs', 'tls', 'write nbds://HOST[:PORT]');
    spec.tls = checkTls(b['tls']);
  }
  return spec;
}

const CHECKPOINT_NAME_RE = /^[A-Za-z0-9._-]{1,64}$/;

/** A checkpoint name (also the NBD context qemu:dirty-bitmap:NAME). */
export function checkCheckpointName(value: unknown, field: string): string {
  if (typeof value !== 'string' || !CHECKPOINT_NAME_RE.test(value)) {
    throw badRequest(`${field} must be a checkpoint name`, field, '1 to 64 characters: letters, digits, ".", "_" and "-"');
  }
  return value;
}

/** POST /volumes/NAME/checkpoints: {} (a default name ckpt-N) or {"name": "..."}. */
export function checkCreateCheckpoint(body: unknown): { name?: string } {
  const b = objectBody(body, ['name']);
  return b['name'] === undefined ? {} : { name: checkCheckpointName(b['name'], 'name') };
}

export interface ScrubSpec { repair?: boolean; maxMiBPerSec?: number }
export interface ReplaceSpec { old: string; new: string }

/** A rate a person would type: up to 1,000,000 MiB/s; 0 means unthrottled. */
const MIB_PER_SEC_MAX = 1_000_000;

export function checkScrub(body: unknown): ScrubSpec {
  const b = objectBody(body, ['repair', 'maxMiBPerSec']);
  const spec: ScrubSpec = {};
  if (b['repair'] !== undefined) {
    if (typeof b['repair'] !== 'boolean') throw badRequest('repair must be true or false', 'repair', `got ${JSON.stringify(b['repair'])}`);
    spec.repair = b['repair'];
  }
  const max = b['maxMiBPerSec'];
  if (max !== undefined) {
    if (typeof max !== 'number' || !Number.isFinite(max) || max < 0 || max > MIB_PER_SEC_MAX) {
      throw badRequest(`maxMiBPerSec must be a number from 0 (unthrottled) to ${MIB_PER_SEC_MAX}`, 'maxMiBPerSec', `got ${JSON.stringify(max)}`);
    }
    spec.maxMiBPerSec = max;
  }
  return spec;
}

export function checkReplace(body: unknown): ReplaceSpec {
  const b = objectBody(body, ['old', 'new']);
  const spec = { old: checkName(b['old'], 'old'), new: checkName(b['new'], 'new') };
  if (spec.old === spec.new) throw badRequest('old and new name the same element', 'new', 'name a spare element to rebuild onto');
  return spec;
}

/** POST /volumes/NAME/members: `{ element }`, the unused element to add as a raid1 leg. */
export function checkAddMember(body: unknown): { element: string } {
  const b = objectBody(body, ['element']);
  return { element: checkName(b['element'], 'element') };
}

/** POST /volumes/NAME/reshape: `{ add: [ELEMENT..], layout?, maxMiBPerSec? }` or `{ resume: true, maxMiBPerSec? }` (the engine checks the rest: sizes, supported reshapes). */
export interface ReshapeSpec { add: string[]; layout?: LayoutName; maxMiBPerSec?: number; resume?: boolean }

export function checkReshape(body: unknown): ReshapeSpec {
  const b = objectBody(body, ['add', 'layout', 'maxMiBPerSec', 'resume']);
  if (b['resume'] !== undefined && typeof b['resume'] !== 'boolean') throw badRequest('resume must be true or false', 'resume');
  const resume = b['resume'] === true;
  const add = b['add'] ?? (resume ? [] : undefined);
  if (resume && (!Array.isArray(add) || add.length > 0 || b['layout'] !== undefined)) throw badRequest('resume takes no add nor layout', 'resume', 'POST { "resume": true } resumes a paused reshape');
  if (!Array.isArray(add) || add.length > 64) throw badRequest('add must be a list of at most 64 element names', 'add', 'the unused elements that join the volume');
  const spec: ReshapeSpec = { add: add.map((e, i) => checkName(e, `add[${i}]`)) };
  if (new Set(spec.add).size !== spec.add.length) throw badRequest('add names an element twice', 'add');
  if (b['layout'] !== undefined) spec.layout = checkChoice(b['layout'], 'layout', LAYOUTS);
  const rate = b['maxMiBPerSec'];
  if (rate !== undefined) {
    if (typeof rate !== 'number' || !Number.isFinite(rate) || rate < 0 || rate > 1_000_000) throw badRequest('maxMiBPerSec must be a number from 0 (unthrottled) to 1000000', 'maxMiBPerSec');
    spec.maxMiBPerSec = rate;
  }
  if (resume) spec.resume = true;
  return spec;
}

export interface GrowSpec { sizeBytes: number }

/** POST /volumes/NAME/grow: `{ sizeBytes }`, a positive integer (the engine checks the rest: alignment, room, no shrinking). */
export function checkGrow(body: unknown): GrowSpec {
  const b = objectBody(body, ['sizeBytes']);
  const size = b['sizeBytes'];
  if (typeof size !== 'number' || !Number.isSafeInteger(size) || size <= 0) {
    throw badRequest('sizeBytes must be a positive integer', 'sizeBytes', `got ${JSON.stringify(size)}`);
  }
  return { sizeBytes: size };
}
