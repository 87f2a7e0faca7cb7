// A small YAML writer for the config `onestack init` produces: block mappings and sequences of
// plain data (strings, numbers, booleans). The CLI has no YAML library of its own, and the text
// is read back by the engine's loader (the `yaml` package) before it is written, so a mistake
// here cannot reach a user's onestack.yaml.

export type YamlValue = string | number | boolean | readonly YamlValue[] | { readonly [key: string]: YamlValue | undefined };

const DEPTH_MAX = 8;
const INDENT = '  ';
/** Plain (unquoted) scalars: conservative, so no string can be read back as another type or break the structure. */
const PLAIN_RE = /^[A-Za-z0-9_./](?:[A-Za-z0-9_./:@+=?&%~-]*[A-Za-z0-9_./@+=?&%~-])?$/;
/** Words YAML 1.1 or 1.2 read as something else than a string. */
const RESERVED_RE = /^(?:true|false|yes|no|on|off|y|n|null|~|[-+]?(?:\d[\d_]*(?:\.\d*)?|\.\d+)(?:e[-+]?\d+)?|[-+]?\.(?:inf|nan)|0x[0-9a-f]+|0o[0-7]+)$/i;

/** Renders `value` (a mapping) as a YAML document; `header` lines become `# ` comments on top. */
export function toYaml(value: { readonly [key: string]: YamlValue | undefined }, header: readonly string[] = []): string {
  const lines = header.map((line) => (line === '' ? '#' : `# ${line}`));
  lines.push(...mappingLines(value, 0));
  return lines.join('\n') + '\n';
}

/** A scalar as YAML: plain when that reads back as the same string, else double-quoted (JSON escapes are valid YAML). */
export function yamlScalar(value: string | number | boolean): string {
  if (typeof value === 'boolean') return value ? 'true' : 'false';
  if (typeof value === 'number') {
    if (!Number.isFinite(value)) throw new Error(`cannot write ${value} to YAML`);
    return String(value);
  }
  if (PLAIN_RE.test(value) && !RESERVED_RE.test(value)) return value;
  return JSON.stringify(value);
}

function mappingLines(map: { readonly [key: string]: YamlValue | undefined }, depth: number): string[] {
  if (depth > DEPTH_MAX) throw new Error('YAML value nested too deeply');
  const pad = INDENT.repeat(depth);
  const lines: string[] = [];
  for (const [key, value] of Object.entries(map)) {
    if (value === undefined) continue;
    const head = `${pad}${yamlScalar(key)}:`;
    if (isScalar(value)) lines.push(`${head} ${yamlScalar(value)}`);
    else if (isList(value)) lines.push(...(value.length === 0 ? [`${head} []`] : flowList(value) !== undefined ? [`${head} ${flowList(value)}`] : [head, ...listLines(value, depth + 1)]));
    else if (Object.keys(value).length === 0) lines.push(`${head} {}`);
    else lines.push(head, ...mappingLines(value, depth + 1));
  }
  return lines;
}

/** Items as `- ...`; a mapping item starts on the dash line and continues one level deeper. */
function listLines(list: readonly YamlValue[], depth: number): string[] {
  if (depth > DEPTH_MAX) throw new Error('YAML value nested too deeply');
  const pad = INDENT.repeat(depth);
  const lines: string[] = [];
  for (const item of list) {
    if (isScalar(item)) { lines.push(`${pad}- ${yamlScalar(item)}`); continue; }
    if (isList(item)) {
      // Flow style for a list inside a list (not produced by init, but kept correct).
      lines.push(`${pad}- [${item.map((i) => (isScalar(i) ? yamlScalar(i) : JSON.stringify(i))).join(', ')}]`);
      continue;
    }
    const inner = mappingLines(item, depth + 1);
    if (inner.length === 0) { lines.push(`${pad}- {}`); continue; }
    const first = inner[0] ?? '';
    lines.push(`${pad}- ${first.trimStart()}`, ...inner.slice(1));
  }
  return lines;
}

/** `[d0, d1]` for a short list of plain words (names); undefined when block style is needed. */
function flowList(list: readonly YamlValue[]): string | undefined {
  const words = list.map((item) => (isScalar(item) ? yamlScalar(item) : undefined));
  if (words.some((w) => w === undefined || w.includes(':') || w.startsWith('"'))) return undefined;
  const text = `[${words.join(', ')}]`;
  return text.length <= 80 ? text : undefined;
}

function isScalar(value: YamlValue): value is string | number | boolean {
  return typeof value === 'string' || typeof value === 'number' || typeof value === 'boolean';
}

function isList(value: YamlValue): value is readonly YamlValue[] {
  return Array.isArray(value);
}
