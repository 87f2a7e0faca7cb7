// What a rejected change must leave alone, captured so two moments can be compared byte for
// byte: the state file (<dataDir>/onestack-state.json), each element's reserved header (the first
// 4 MiB: superblock, write-intent bitmap, stripe journal) and the daemon's status without its
// counters. Plus raw API calls that report the HTTP status instead of throwing.
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import type { Daemon } from './daemon.js';
import { DATA_OFFSET_BYTES, sha256Range } from './files.js';

export interface ApiReply {
  readonly status: number;
  readonly body: unknown;
  readonly text: string;
}

/** One API call with the data dir's token; `body` as a string is sent as is (bad JSON on purpose). */
export async function apiCall(d: Daemon, method: string, route: string, body?: unknown): Promise<ApiReply> {
  const token = readFileSync(path.join(d.dataDir, 'api-token'), 'utf8').trim();
  const res = await fetch(`http://127.0.0.1:${d.apiPort}/api/v1/${route}`, {
    method,
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    ...(body !== undefined ? { body: typeof body === 'string' ? body : JSON.stringify(body) } : {}),
  });
  const text = await res.text();
  let parsed: unknown = null;
  try { parsed = text === '' ? null : JSON.parse(text); } catch { parsed = text; }
  return { status: res.status, body: parsed, text };
}

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

const ELEMENT_KEYS = ['name', 'kind', 'uri', 'state', 'sizeBytes', 'volume', 'role', 'errors', 'reason'];
const VOLUME_KEYS = ['name', 'layout', 'sizeBytes', 'chunkKiB', 'order', 'boot', 'state', 'scrub', 'lastRebuild', 'bitmap'];

function pick(o: Record<string, Json>, keys: readonly string[]): Record<string, Json> {
  const out: Record<string, Json> = {};
  for (const k of keys) if (o[k] !== undefined) out[k] = o[k]!;
  return out;
}

/** Status without what moves by itself (I/O counters, latencies, cache hits, rebuild progress). */
export function stableStatus(status: unknown): Json {
  const s = status as { volumes: Record<string, Json>[]; elements: Record<string, Json>[]; dataDir: Json };
  const rebuildOf = (r: Json | undefined): Json => {
    if (r === null || r === undefined || typeof r !== 'object' || Array.isArray(r)) return null;
    return { kind: r['kind'] ?? null, element: r['element'] ?? null };
  };
  return {
    dataDir: s.dataDir,
    volumes: s.volumes.map((v) => ({
      ...pick(v, VOLUME_KEYS),
      rebuild: rebuildOf(v['rebuild']),
      elements: (v['elements'] as Record<string, Json>[]).map((e) => pick(e, ELEMENT_KEYS)),
    })),
    elements: s.elements.map((e) => pick(e, ELEMENT_KEYS)),
  };
}

export interface DiskState {
  /** sha256 of the state file, or "absent". */
  readonly stateFile: string;
  /** Element name → sha256 of its first 4 MiB. */
  readonly headers: Readonly<Record<string, string>>;
}

export interface FullState extends DiskState {
  readonly status: Json;
}

export async function diskState(dataDir: string, images: ReadonlyMap<string, string>): Promise<DiskState> {
  const stateFile = path.join(dataDir, 'onestack-state.json');
  const headers: Record<string, string> = {};
  for (const [name, file] of [...images.entries()].sort()) headers[name] = await sha256Range(file, 0, DATA_OFFSET_BYTES);
  return { stateFile: existsSync(stateFile) ? await sha256Range(stateFile) : 'absent', headers };
}

export async function fullState(d: Daemon, images: ReadonlyMap<string, string>): Promise<FullState> {
  return { ...(await diskState(d.dataDir, images)), status: stableStatus(await d.status()) };
}
