// A small, strict parser of the Prometheus text exposition format 0.0.4, for tests: it throws on
// anything a Prometheus server would reject, and on what our exporter must never produce
// (samples before their TYPE, a family split in two, duplicate series, negative or NaN
// counters, histograms whose buckets are not cumulative or whose +Inf bucket is not _count).
const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
const TYPES = ['counter', 'gauge', 'histogram', 'summary', 'untyped'] as const;
export type MetricType = (typeof TYPES)[number];
/** Lines a document may have: a bound, so a runaway exporter fails clearly. */
const LINES_MAX = 1_000_000;

export interface Sample {
  /** The sample's own name (e.g. `x_bucket` of histogram `x`). */
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly value: number;
}

export interface Family {
  readonly name: string;
  readonly type: MetricType;
  help: string | undefined;
  readonly samples: Sample[];
}

export class PromParseError extends Error {
  constructor(lineNo: number, line: string, why: string) {
    super(`line ${lineNo}: ${why}: ${JSON.stringify(line.slice(0, 200))}`);
    this.name = 'PromParseError';
  }
}

/** Go's strconv.ParseFloat, as Prometheus uses it: decimal and exponent forms, [+-]Inf and NaN in any case. */
export function parseValue(text: string): number {
  if (/^[+-]?inf(inity)?$/i.test(text)) return text.startsWith('-') ? -Infinity : Infinity;
  if (/^nan$/i.test(text)) return NaN;
  if (!/^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/.test(text)) throw new Error(`not a number: ${text}`);
  return Number(text);
}

/** Label set `{a="x",b="y"}` starting at `text[0] === '{'`; returns the labels and the rest after `}`. */
function parseLabels(text: string): { labels: Record<string, string>; rest: string } {
  const labels: Record<string, string> = {};
  let i = 1;
  for (let guard = 0; guard < text.length; guard++) {
    while (text[i] === ' ') i++;
    if (text[i] === '}') return { labels, rest: text.slice(i + 1) };
    const eq = text.indexOf('=', i);
    if (eq < 0) throw new Error('label without =');
    const name = text.slice(i, eq).trim();
    if (!LABEL_NAME.test(name)) throw new Error(`bad label name ${JSON.stringify(name)}`);
    if (name in labels) throw new Error(`label ${name} twice`);
    if (text[eq + 1] !== '"') throw new Error(`label ${name}: value not quoted`);
    let value = '';
    let j = eq + 2;
    for (; j < text.length && text[j] !== '"'; j++) {
      if (text[j] !== '\\') { value += text[j]; continue; }
      const next = text[++j];
      if (next === 'n') value += '\n';
      else if (next === '\\' || next === '"') value += next;
      else throw new Error(`label ${name}: bad escape \\${next ?? ''}`);
    }
    if (j >= text.length) throw new Error(`label ${name}: unterminated value`);
    labels[name] = value;
    i = j + 1;
    while (text[i] === ' ') i++;
    if (text[i] === ',') i++;
    else if (text[i] !== '}') throw new Error(`label ${name}: expected , or }`);
  }
  throw new Error('unterminated label set');
}

function parseSample(line: string): Sample {
  const brace = line.indexOf('{');
  const space = line.indexOf(' ');
  const nameEnd = brace >= 0 && (space < 0 || brace < space) ? brace : space;
  if (nameEnd <= 0) throw new Error('no value');
  const name = line.slice(0, nameEnd);
  if (!NAME.test(name)) throw new Error(`bad metric name ${JSON.stringify(name)}`);
  const { labels, rest } = nameEnd === brace ? parseLabels(line.slice(brace)) : { labels: {}, rest: line.slice(nameEnd) };
  const parts = rest.trim().split(/\s+/);
  if (parts.length < 1 || parts.length > 2 || parts[0] === '') throw new Error('expected a value and at most a timestamp');
  if (parts.length === 2 && !/^-?\d+$/.test(parts[1]!)) throw new Error(`bad timestamp ${parts[1]!}`);
  return { name, labels, value: parseValue(parts[0]!) };
}

/** The family a sample name belongs to, given the declared families. */
function familyOf(sample: string, families: ReadonlyMap<string, Family>): Family | undefined {
  const direct = families.get(sample);
  if (direct !== undefined) return direct;
  for (const suffix of ['_bucket', '_sum', '_count']) {
    if (!sample.endsWith(suffix)) continue;
    const f = families.get(sample.slice(0, -suffix.length));
    if (f !== undefined && (f.type === 'histogram' || (f.type === 'summary' && suffix !== '_bucket'))) return f;
  }
  return undefined;
}

interface State {
  readonly families: Map<string, Family>;
  /** Families that another one followed: they must not come back. */
  readonly closed: Set<string>;
  readonly seen: Set<string>;
  current: Family | undefined;
  /** A HELP line whose TYPE line has not come yet. */
  help: { name: string; text: string } | undefined;
}

/** Parses a whole document; the checks that need a whole family run at the end. */
export function parseProm(text: string): Map<string, Family> {
  const st: State = { families: new Map(), closed: new Set(), seen: new Set(), current: undefined, help: undefined };
  const lines = text.split('\n');
  if (lines.length > LINES_MAX) throw new Error(`more than ${LINES_MAX} lines`);
  if (text.length > 0 && !text.endsWith('\n')) throw new PromParseError(lines.length, lines.at(-1) ?? '', 'the last line has no newline');
  lines.forEach((line, idx) => {
    try {
      if (line.trim() === '') return;
      if (line.startsWith('#')) parseComment(line, st);
      else addSample(parseSample(line), st);
    } catch (err) {
      throw new PromParseError(idx + 1, line, (err as Error).message);
    }
  });
  if (st.help !== undefined) throw new Error(`HELP for ${st.help.name} without a TYPE line`);
  for (const f of st.families.values()) checkFamily(f);
  return st.families;
}

function addSample(s: Sample, st: State): void {
  const f = familyOf(s.name, st.families);
  if (f === undefined) throw new Error(`sample ${s.name} before its # TYPE line`);
  if (f !== st.current) throw new Error(`family ${f.name} continues after another family began`);
  const key = `${s.name}${JSON.stringify(Object.entries(s.labels).sort())}`;
  if (st.seen.has(key)) throw new Error('duplicate series');
  st.seen.add(key);
  f.samples.push(s);
}

function unescapeHelp(text: string): string {
  return text.replace(/\\(n|\\)/g, (_, c: string) => (c === 'n' ? '\n' : '\\'));
}

function parseComment(line: string, st: State): void {
  const m = /^# (HELP|TYPE) (\S+)(?: (.*))?$/.exec(line);
  if (m === null) return; // any other comment
  const kind = m[1]!;
  const name = m[2]!;
  const rest = m[3] ?? '';
  if (!NAME.test(name)) throw new Error(`bad metric name ${JSON.stringify(name)}`);
  if (st.families.has(name) || st.closed.has(name)) throw new Error(`${kind} for ${name} after its family began`);
  if (st.current !== undefined) st.closed.add(st.current.name);
  st.current = undefined;
  if (kind === 'HELP') {
    if (st.help !== undefined) throw new Error(`HELP for ${st.help.name} without a TYPE line`);
    st.help = { name, text: unescapeHelp(rest) };
    return;
  }
  if (!(TYPES as readonly string[]).includes(rest)) throw new Error(`unknown type ${JSON.stringify(rest)}`);
  if (st.help !== undefined && st.help.name !== name) throw new Error(`HELP for ${st.help.name} followed by TYPE for ${name}`);
  const f: Family = { name, type: rest as MetricType, help: st.help?.text, samples: [] };
  st.help = undefined;
  st.families.set(name, f);
  st.current = f;
}

function seriesKey(labels: Readonly<Record<string, string>>): string {
  return JSON.stringify(Object.entries(labels).filter(([k]) => k !== 'le').sort());
}

function checkFamily(f: Family): void {
  for (const s of f.samples) {
    if (f.type === 'counter' && !(s.value >= 0)) throw new Error(`${s.name}: counter value ${s.value} is negative or NaN`);
  }
  if (f.type === 'histogram') checkHistogram(f);
}

/** Per label set: buckets with increasing le, cumulative, ending at +Inf == _count; _sum present. */
function checkHistogram(f: Family): void {
  const series = new Map<string, { buckets: [number, number][]; sum?: number; count?: number }>();
  for (const s of f.samples) {
    const key = seriesKey(s.labels);
    const one = series.get(key) ?? { buckets: [] };
    series.set(key, one);
    if (s.name === `${f.name}_bucket`) {
      const le = s.labels['le'];
      if (le === undefined) throw new Error(`${s.name}${key}: bucket without le`);
      one.buckets.push([parseValue(le), s.value]);
    } else if (s.name === `${f.name}_sum`) one.sum = s.value;
    else if (s.name === `${f.name}_count`) one.count = s.value;
    else throw new Error(`${s.name}: not a histogram sample of ${f.name}`);
  }
  for (const [key, one] of series) {
    const where = `${f.name}${key}`;
    if (one.count === undefined || one.sum === undefined) throw new Error(`${where}: _sum or _count missing`);
    if (one.buckets.length === 0 || one.buckets.at(-1)![0] !== Infinity) throw new Error(`${where}: no +Inf bucket last`);
    for (let i = 1; i < one.buckets.length; i++) {
      const [lePrev, prev] = one.buckets[i - 1]!;
      const [le, value] = one.buckets[i]!;
      if (!(le > lePrev)) throw new Error(`${where}: le ${le} does not increase`);
      if (!(value >= prev)) throw new Error(`${where}: bucket le=${le} (${value}) below le=${lePrev} (${prev}): not cumulative`);
    }
    if (one.buckets.at(-1)![1] !== one.count) throw new Error(`${where}: +Inf bucket ${one.buckets.at(-1)![1]} != _count ${one.count}`);
  }
}

/** Samples of `name` (a sample name, e.g. x_count) whose labels include `match`. */
export function samples(families: ReadonlyMap<string, Family>, name: string, match: Readonly<Record<string, string>> = {}): Sample[] {
  const out: Sample[] = [];
  for (const f of families.values()) {
    for (const s of f.samples) if (s.name === name && Object.entries(match).every(([k, v]) => s.labels[k] === v)) out.push(s);
  }
  return out;
}

/** The one sample of `name` with labels including `match`; throws unless exactly one. */
export function value(families: ReadonlyMap<string, Family>, name: string, match: Readonly<Record<string, string>> = {}): number {
  const found = samples(families, name, match);
  if (found.length !== 1) throw new Error(`${name}${JSON.stringify(match)}: ${found.length} samples, expected 1`);
  return found[0]!.value;
}
