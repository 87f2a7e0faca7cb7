// Login and Text PDU data: "key=value\0" pairs (RFC 7143 section 6), plus the negotiation rules
// for the operational keys we use (section 13): list selection, boolean AND/OR, numeric min/max,
// declarative. Pure and bounded.

import { IscsiProtocolError } from '../errors.js';

export type TextPairs = ReadonlyArray<readonly [string, string]>;

export const TEXT_KEY_BYTES_MAX = 63;
/** Values are at most 255 bytes, except binary ones (CHAP challenges) that may reach 8192. */
export const TEXT_VALUE_BYTES_MAX = 8192;
/** What one negotiation step may carry, across PDUs joined by the C bit. */
export const TEXT_BYTES_MAX = 64 * 1024;
export const TEXT_PAIRS_MAX = 1024;

const KEY_RE = /^[A-Za-z0-9.\-+@_]+$/;
const enc = new TextEncoder();
const dec = new TextDecoder('utf-8', { fatal: true });

export function encodeText(pairs: TextPairs): Uint8Array {
  const parts: string[] = [];
  for (const [key, value] of pairs) {
    if (key.length === 0 || key.length > TEXT_KEY_BYTES_MAX || !KEY_RE.test(key)) throw new IscsiProtocolError('bad-text', `invalid text key '${key}'`);
    if (value.includes('\0') || enc.encode(value).length > TEXT_VALUE_BYTES_MAX) throw new IscsiProtocolError('bad-text', `value of ${key} is too long or holds a NUL`);
    parts.push(`${key}=${value}\0`);
  }
  const bytes = enc.encode(parts.join(''));
  if (bytes.length > TEXT_BYTES_MAX) throw new IscsiProtocolError('text-too-large', `text of ${bytes.length} bytes exceeds ${TEXT_BYTES_MAX}`);
  return bytes;
}

/** Decodes a complete text segment. Trailing NUL padding is tolerated; anything malformed throws. */
export function decodeText(bytes: Uint8Array, bytesMax = TEXT_BYTES_MAX): Array<[string, string]> {
  if (bytes.length > bytesMax) throw new IscsiProtocolError('text-too-large', `text of ${bytes.length} bytes exceeds ${bytesMax}`);
  let str: string;
  try {
    str = dec.decode(bytes);
  } catch {
    throw new IscsiProtocolError('bad-text', 'text segment is not UTF-8');
  }
  const out: Array<[string, string]> = [];
  const items = str.split('\0');
  // "a=1\0b=2\0" splits into [..., '']; a segment without the final NUL is malformed.
  if (items.length > 0 && items[items.length - 1] !== '' && str.length > 0) throw new IscsiProtocolError('bad-text', 'text segment does not end with NUL');
  for (const item of items) {
    if (item === '') continue;
    if (out.length >= TEXT_PAIRS_MAX) throw new IscsiProtocolError('text-too-large', `more than ${TEXT_PAIRS_MAX} keys`);
    const eq = item.indexOf('=');
    const key = eq < 0 ? '' : item.slice(0, eq);
    if (eq <= 0 || key.length > TEXT_KEY_BYTES_MAX || !KEY_RE.test(key)) throw new IscsiProtocolError('bad-text', `malformed text item '${item.slice(0, 40)}'`);
    const value = item.slice(eq + 1);
    if (value.length > TEXT_VALUE_BYTES_MAX) throw new IscsiProtocolError('bad-text', `value of ${key} exceeds ${TEXT_VALUE_BYTES_MAX} bytes`);
    out.push([key, value]);
  }
  return out;
}

/** The last value given for a key (RFC: a key appears once per negotiation; be lenient). */
export function textValue(pairs: TextPairs, key: string): string | undefined {
  let found: string | undefined;
  for (const [k, v] of pairs) if (k === key) found = v;
  return found;
}

// ---- negotiation ----

export interface OperationalParams {
  readonly headerDigest: boolean;
  readonly dataDigest: boolean;
  /** What we declared we can receive per PDU. */
  readonly maxRecvDataSegmentLength: number;
  /** What the target declared it can receive: the most data we put in one PDU. */
  readonly targetMaxRecvDataSegmentLength: number;
  readonly initialR2T: boolean;
  readonly immediateData: boolean;
  readonly firstBurstLength: number;
  readonly maxBurstLength: number;
  readonly maxOutstandingR2T: number;
  readonly defaultTime2Wait: number;
  readonly defaultTime2Retain: number;
  readonly errorRecoveryLevel: number;
  readonly dataPDUInOrder: boolean;
  readonly dataSequenceInOrder: boolean;
  readonly maxConnections: number;
}

/** RFC 7143 defaults: what holds for a key nobody mentioned. */
export const RFC_DEFAULTS: OperationalParams = {
  headerDigest: false, dataDigest: false, maxRecvDataSegmentLength: 8192, targetMaxRecvDataSegmentLength: 8192,
  initialR2T: true, immediateData: true, firstBurstLength: 65536, maxBurstLength: 262144, maxOutstandingR2T: 1,
  defaultTime2Wait: 2, defaultTime2Retain: 20, errorRecoveryLevel: 0, dataPDUInOrder: true, dataSequenceInOrder: true, maxConnections: 1,
};

type Rule =
  | { kind: 'digest'; field: 'headerDigest' | 'dataDigest' }
  | { kind: 'and' | 'or'; field: 'initialR2T' | 'immediateData' | 'dataPDUInOrder' | 'dataSequenceInOrder' }
  | { kind: 'min' | 'max'; field: 'firstBurstLength' | 'maxBurstLength' | 'maxOutstandingR2T' | 'defaultTime2Wait' | 'defaultTime2Retain' | 'errorRecoveryLevel' | 'maxConnections'; lo: number; hi: number }
  | { kind: 'declared' }
  | { kind: 'no' };

const RULES: Record<string, Rule> = {
  HeaderDigest: { kind: 'digest', field: 'headerDigest' },
  DataDigest: { kind: 'digest', field: 'dataDigest' },
  InitialR2T: { kind: 'or', field: 'initialR2T' },
  ImmediateData: { kind: 'and', field: 'immediateData' },
  DataPDUInOrder: { kind: 'or', field: 'dataPDUInOrder' },
  DataSequenceInOrder: { kind: 'or', field: 'dataSequenceInOrder' },
  FirstBurstLength: { kind: 'min', field: 'firstBurstLength', lo: 512, hi: 0xffffff },
  MaxBurstLength: { kind: 'min', field: 'maxBurstLength', lo: 512, hi: 0xffffff },
  MaxOutstandingR2T: { kind: 'min', field: 'maxOutstandingR2T', lo: 1, hi: 65535 },
  DefaultTime2Wait: { kind: 'max', field: 'defaultTime2Wait', lo: 0, hi: 3600 },
  DefaultTime2Retain: { kind: 'min', field: 'defaultTime2Retain', lo: 0, hi: 3600 },
  ErrorRecoveryLevel: { kind: 'min', field: 'errorRecoveryLevel', lo: 0, hi: 2 },
  MaxConnections: { kind: 'min', field: 'maxConnections', lo: 1, hi: 65535 },
  MaxRecvDataSegmentLength: { kind: 'declared' },
  // RFC 3720 keys that RFC 7143 retired; old targets still offer them. We always say No.
  IFMarker: { kind: 'no' }, OFMarker: { kind: 'no' },
};

/** Keys a discovery session negotiates; the rest are irrelevant there. */
const DISCOVERY_KEYS = new Set(['HeaderDigest', 'DataDigest', 'MaxRecvDataSegmentLength']);
/** Keys the target announces that need no answer. */
const TARGET_DECLARATIVE = new Set(['TargetAlias', 'TargetPortalGroupTag', 'TargetAddress', 'TargetName']);

const yn = (b: boolean): string => (b ? 'Yes' : 'No');

/** Our opening offer, from our preferences (a full OperationalParams; digests: offer CRC32C first). */
export function operationalOffer(ours: OperationalParams, discovery: boolean): Array<[string, string]> {
  const all: Array<[string, string]> = [
    ['HeaderDigest', ours.headerDigest ? 'CRC32C,None' : 'None'],
    ['DataDigest', ours.dataDigest ? 'CRC32C,None' : 'None'],
    ['MaxRecvDataSegmentLength', String(ours.maxRecvDataSegmentLength)],
    ['InitialR2T', yn(ours.initialR2T)], ['ImmediateData', yn(ours.immediateData)],
    ['FirstBurstLength', String(ours.firstBurstLength)], ['MaxBurstLength', String(ours.maxBurstLength)],
    ['MaxOutstandingR2T', String(ours.maxOutstandingR2T)], ['DefaultTime2Wait', String(ours.defaultTime2Wait)],
    ['DefaultTime2Retain', String(ours.defaultTime2Retain)], ['ErrorRecoveryLevel', String(ours.errorRecoveryLevel)],
    ['DataPDUInOrder', yn(ours.dataPDUInOrder)], ['DataSequenceInOrder', yn(ours.dataSequenceInOrder)],
    ['MaxConnections', String(ours.maxConnections)],
  ];
  return discovery ? all.filter(([k]) => DISCOVERY_KEYS.has(k)) : all;
}

export interface NegotiationOutcome {
  readonly params: OperationalParams;
  /** Answers to keys the target offered on its own; send them in the next request. */
  readonly answers: Array<[string, string]>;
}

function parseNumber(key: string, value: string, lo: number, hi: number): number {
  const n = /^(0x[0-9a-fA-F]+|\d+)$/.test(value) ? Number(value) : NaN;
  if (!Number.isSafeInteger(n) || n < lo || n > hi) throw new IscsiProtocolError('bad-text', `${key}=${value.slice(0, 20)} is not a number in ${lo}..${hi}`);
  return n;
}

function parseBool(key: string, value: string): boolean {
  if (value === 'Yes') return true;
  if (value === 'No') return false;
  throw new IscsiProtocolError('bad-text', `${key}=${value.slice(0, 20)} is not Yes or No`);
}

/**
 * Folds the target's keys into the negotiated parameters. `offered` is the set of keys we sent
 * (their values are responses); other keys are the target's offers, which we answer.
 */
export function applyOperationalKeys(current: OperationalParams, ours: OperationalParams, pairs: TextPairs, offered: ReadonlySet<string>, discovery: boolean): NegotiationOutcome {
  const params: { -readonly [K in keyof OperationalParams]: OperationalParams[K] } = { ...current };
  const answers: Array<[string, string]> = [];
  for (const [key, value] of pairs) {
    if (TARGET_DECLARATIVE.has(key)) continue;
    const rule = RULES[key];
    const isResponse = offered.has(key);
    if (rule === undefined) {
      if (!isResponse) answers.push([key, 'NotUnderstood']);
      continue;
    }
    if (value === 'Reject' || value === 'Irrelevant' || value === 'NotUnderstood') continue; // keep the default
    if (discovery && !DISCOVERY_KEYS.has(key) && rule.kind !== 'declared') { if (!isResponse) answers.push([key, 'Irrelevant']); continue; }
    applyRule(rule, key, value, isResponse, ours, params, answers);
  }
  return { params, answers };
}

function applyRule(rule: Rule, key: string, value: string, isResponse: boolean, ours: OperationalParams,
  params: { -readonly [K in keyof OperationalParams]: OperationalParams[K] }, answers: Array<[string, string]>): void {
  switch (rule.kind) {
    case 'declared':
      params.targetMaxRecvDataSegmentLength = parseNumber(key, value, 512, 0xffffff);
      return;
    case 'no':
      if (!isResponse) answers.push([key, 'No']);
      return;
    case 'digest': {
      const choices = value.split(',');
      const wantCrc = ours[rule.field];
      if (isResponse) {
        if (value !== 'None' && !(value === 'CRC32C' && wantCrc)) throw new IscsiProtocolError('bad-text', `target chose ${key}=${value.slice(0, 20)}, which we did not offer`);
        params[rule.field] = value === 'CRC32C';
      } else {
        const pick = wantCrc && choices.includes('CRC32C') ? 'CRC32C' : choices.includes('None') ? 'None' : 'Reject';
        params[rule.field] = pick === 'CRC32C';
        answers.push([key, pick]);
      }
      return;
    }
    case 'and':
    case 'or': {
      const theirs = parseBool(key, value);
      const result = rule.kind === 'and' ? theirs && ours[rule.field] : theirs || ours[rule.field];
      if (isResponse && result !== theirs) throw new IscsiProtocolError('bad-text', `target answered ${key}=${value}, against the ${rule.kind.toUpperCase()} rule`);
      params[rule.field] = result;
      if (!isResponse) answers.push([key, yn(result)]);
      return;
    }
    case 'min':
    case 'max': {
      const theirs = parseNumber(key, value, rule.lo, rule.hi);
      const mine = ours[rule.field];
      const result = rule.kind === 'min' ? Math.min(theirs, mine) : Math.max(theirs, mine);
      if (isResponse && result !== theirs) throw new IscsiProtocolError('bad-text', `target answered ${key}=${value}, outside what we offered (${mine})`);
      params[rule.field] = result;
      if (!isResponse) answers.push([key, String(result)]);
      return;
    }
  }
}

/** FirstBurstLength may not exceed MaxBurstLength (RFC 7143 13.14); repair a lax target's answer. */
export function finishParams(p: OperationalParams): OperationalParams {
  return { ...p, firstBurstLength: Math.min(p.firstBurstLength, p.maxBurstLength) };
}
