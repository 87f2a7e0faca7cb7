// Validation of API request bodies. Each failure names the field (where) and what would be
// accepted (hint), so a client can fix its request without reading the source.
import { badRequest } from './http.js';

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

export interface CreateVolumeSpec {
  name: string; layout: LayoutName; elements: string[]; chunkKiB?: number; sizeBytes?: number; order?: OrderName;
}
export interface AddElementSpec { uri: string; name?: string; cache?: CacheName }

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
  const b = objectBody(body, ['name', 'layout', 'elements', 'chunkKiB', 'sizeBytes', 'order']);
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
  return spec;
}

export function checkAddElement(body: unknown): AddElementSpec {
  const b = objectBody(body, ['uri', 'name', 'cache']);
  const uri = b['uri'];
  if (typeof uri !== 'string' || uri.trim() === '' || uri.length > URI_CHARS_MAX || /[\0\r\n]/.test(uri)) {
    throw badRequest('uri must be an element URI', 'uri', 'file:PATH, nbd://HOST[:PORT]/EXPORT, nbd+unix:///EXPORT?socket=PATH or iscsi://HOST/IQN/LUN');
  }
  const spec: AddElementSpec = { uri };
  if (b['name'] !== undefined) spec.name = checkName(b['name'], 'name');
  if (b['cache'] !== undefined) spec.cache = checkChoice(b['cache'], 'cache', CACHES);
  return spec;
}
