// What `onestack init` can offer as elements: image files in the data dir, block devices from
// /sys/block (mounted, held or read-only ones shown as in use), and remote disks given by URI or
// found by asking a server (the same engine discover() that `onestack discover --local` uses).
// The readers take their roots as arguments so tests run them on fixture trees.
import { closeSync, openSync, readdirSync, readFileSync, readSync, realpathSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { DATA_OFFSET_BYTES, decodeSuperblock, parseElementUri, SUPERBLOCK_BYTES, type DiscoverOptions, type DiscoverResult } from '@onestack/engine';
import { usageError } from '../errors.js';
import { maskUriSecrets } from '../uri-secret.js';

export type CandidateKind = 'image' | 'new-image' | 'block' | 'nbd' | 'iscsi';

export interface Candidate {
  readonly kind: CandidateKind;
  /** Absolute path for local kinds; the element URI (never with a secret) for remote ones. */
  readonly uri: string;
  readonly sizeBytes?: number;
  /** What a person reads next to the URI. */
  readonly description: string;
  /** Why it cannot be chosen (mounted, held by another driver, read-only, too small). */
  readonly inUse?: string;
  /** new-image: the data size the engine creates the file with (createSizeBytes). */
  readonly createSizeBytes?: number;
  /** iscsi: the CHAP user named in the URI ('' or absent: no CHAP). */
  readonly chapUser?: string;
}

export type DiscoverFn = (uri: string, opts: DiscoverOptions) => Promise<DiscoverResult>;

const ENTRIES_MAX = 1024;
const IMAGE_RE = /\.(img|raw)$/i;
/** Kernel RAM and loop devices: listed only when they hold something (a loop with a backing file). */
const VIRTUAL_RE = /^(loop|ram|zram)\d+$/;
const SECTOR_BYTES = 512;
const MIB = 1024 * 1024;
const REMOTE_RE = /^(nbds?(?:\+unix)?|iscsi):\/\/([^/?#]*)([^?#]*)(\?[^#]*)?$/i;

/** Image files (*.img, *.raw) directly in `dataDir`, sorted by name; none when the dir does not exist. */
export function listImages(dataDir: string): Candidate[] {
  let names: string[];
  try {
    names = readdirSync(dataDir);
  } catch {
    return [];
  }
  const out: Candidate[] = [];
  for (const name of names.filter((n) => IMAGE_RE.test(n)).sort().slice(0, ENTRIES_MAX)) {
    const file = resolve(dataDir, name);
    let sizeBytes: number;
    try {
      const stat = statSync(file);
      if (!stat.isFile()) continue;
      sizeBytes = stat.size;
    } catch {
      continue;
    }
    const small = sizeBytes < DATA_OFFSET_BYTES + MIB ? `too small (${sizeBytes} bytes; the first 4 MiB hold onestack's metadata)` : undefined;
    const member = superblockNote(file);
    out.push({ kind: 'image', uri: file, sizeBytes, description: member === undefined ? 'image file' : `image file, ${member}`, ...(small !== undefined ? { inUse: small } : {}) });
  }
  return out;
}

/** "was volume V's element (raid1, role 0)" when the file starts with a onestack superblock. */
function superblockNote(file: string): string | undefined {
  const bytes = new Uint8Array(SUPERBLOCK_BYTES);
  let fd: number | undefined;
  try {
    fd = openSync(file, 'r');
    if (readSync(fd, bytes, 0, SUPERBLOCK_BYTES, 0) !== SUPERBLOCK_BYTES) return undefined;
    const sb = decodeSuperblock(bytes);
    return 'kind' in sb ? undefined : `holds onestack volume "${sb.volumeName}" (${sb.layout}, role ${sb.role})`;
  } catch {
    return undefined;
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

/**
 * /proc/self/mounts (and /proc/swaps) text → device name → where it is used ("/", "swap").
 * Sources are resolved through `realpath` so /dev/mapper/x and /dev/disk/by-uuid/... find their dm-N or sdX.
 */
export function parseMounts(mountsText: string, swapsText = '', realpath: (p: string) => string = safeRealpath): Map<string, string> {
  const used = new Map<string, string>();
  for (const line of mountsText.split('\n').slice(0, 65536)) {
    const [source, target] = line.split(' ');
    if (source === undefined || target === undefined || !source.startsWith('/dev/')) continue;
    const name = deviceName(realpath(unescapeMount(source)));
    if (name !== '' && !used.has(name)) used.set(name, `mounted at ${unescapeMount(target)}`);
  }
  for (const line of swapsText.split('\n').slice(1, 4097)) {
    const source = line.split(/\s+/)[0] ?? '';
    if (!source.startsWith('/dev/')) continue;
    const name = deviceName(realpath(source));
    if (name !== '' && !used.has(name)) used.set(name, 'used as swap');
  }
  return used;
}

/** /proc/mounts writes space, tab, newline and backslash as \040, \011, \012, \134. */
function unescapeMount(text: string): string {
  return text.replace(/\\([0-7]{3})/g, (_, oct: string) => String.fromCharCode(parseInt(oct, 8)));
}

function deviceName(devPath: string): string {
  return devPath.startsWith('/dev/') ? devPath.slice('/dev/'.length).replace(/\//g, '!') : '';
}

function safeRealpath(p: string): string {
  try {
    return realpathSync(p);
  } catch {
    return p;
  }
}

export interface BlockDeviceOptions {
  /** Normally /sys/block. */
  readonly sysBlockDir: string;
  /** Where the device nodes are, normally /dev. */
  readonly devDir: string;
  /** From parseMounts(). */
  readonly used: ReadonlyMap<string, string>;
}

/** Whole disks and their partitions from a /sys/block-like tree; in-use ones carry the reason. */
export function readBlockDevices(opts: BlockDeviceOptions): Candidate[] {
  let names: string[];
  try {
    names = readdirSync(opts.sysBlockDir).sort().slice(0, ENTRIES_MAX);
  } catch {
    return [];
  }
  const out: Candidate[] = [];
  for (const name of names) {
    const dir = join(opts.sysBlockDir, name);
    const sizeBytes = sectorsOf(dir);
    if (sizeBytes === 0) continue; // an empty loop, ram or zram device, or a drive without a medium
    const partitions = partitionsOf(dir, opts);
    const reason = useOf(dir, name, opts.used) ?? partitions.map((p) => p.inUse === undefined ? undefined : `partition ${p.name} ${p.inUse}`).find((r) => r !== undefined);
    const what = [describeDisk(dir, name), partitions.length > 0 ? `partitions ${partitions.map((p) => p.name).join(', ')}` : ''].filter((s) => s !== '').join(', ');
    out.push(blockCandidate(join(opts.devDir, name), sizeBytes, what, reason));
    for (const p of partitions) out.push(blockCandidate(join(opts.devDir, p.name), p.sizeBytes, `partition of ${name}`, p.inUse));
  }
  return out;
}

function blockCandidate(devPath: string, sizeBytes: number, description: string, inUse: string | undefined): Candidate {
  return { kind: 'block', uri: devPath, sizeBytes, description: description === '' ? 'block device' : `block device, ${description}`, ...(inUse !== undefined ? { inUse } : {}) };
}

function partitionsOf(dir: string, opts: BlockDeviceOptions): { name: string; sizeBytes: number; inUse?: string }[] {
  let entries: string[];
  try {
    entries = readdirSync(dir).sort().slice(0, ENTRIES_MAX);
  } catch {
    return [];
  }
  const parts: { name: string; sizeBytes: number; inUse?: string }[] = [];
  for (const entry of entries) {
    const partDir = join(dir, entry);
    if (readText(join(partDir, 'partition')) === undefined) continue;
    const sizeBytes = sectorsOf(partDir);
    if (sizeBytes === 0) continue;
    const inUse = useOf(partDir, entry, opts.used);
    parts.push({ name: entry, sizeBytes, ...(inUse !== undefined ? { inUse } : {}) });
  }
  return parts;
}

/** Mounted or swap, held by another driver (LVM, md, dm-crypt), or read-only. */
function useOf(dir: string, name: string, used: ReadonlyMap<string, string>): string | undefined {
  const mount = used.get(name);
  if (mount !== undefined) return mount;
  let holders: string[] = [];
  try {
    holders = readdirSync(join(dir, 'holders'));
  } catch {
    // no holders directory (fixtures, old kernels): nothing holds it
  }
  if (holders.length > 0) return `held by ${holders.slice(0, 4).join(', ')}`;
  if (readText(join(dir, 'ro')) === '1') return 'read-only';
  return undefined;
}

function describeDisk(dir: string, name: string): string {
  const backing = readText(join(dir, 'loop', 'backing_file'));
  if (backing !== undefined && backing !== '') return `loop over ${backing}`;
  // virtio puts its PCI vendor id (0x1af4) there: not a name.
  const vendor = (readText(join(dir, 'device', 'vendor')) ?? '').replace(/^0x[0-9a-f]+$/i, '');
  const model = readText(join(dir, 'device', 'model')) ?? '';
  const both = `${vendor} ${model}`.trim().replace(/\s+/g, ' ');
  if (both !== '') return both;
  return VIRTUAL_RE.test(name) ? 'virtual' : '';
}

function sectorsOf(dir: string): number {
  const text = readText(join(dir, 'size'));
  const sectors = text !== undefined && /^\d+$/.test(text) ? Number(text) : 0;
  return Number.isSafeInteger(sectors * SECTOR_BYTES) ? sectors * SECTOR_BYTES : 0;
}

function readText(file: string): string | undefined {
  try {
    return readFileSync(file, 'utf8').slice(0, 4096).trim();
  } catch {
    return undefined;
  }
}

export interface RemoteForm {
  readonly kind: 'nbd' | 'iscsi';
  /** disk: the URI names one export or LUN; server: ask the server what it offers. */
  readonly form: 'disk' | 'server';
  /** The CHAP user in the URI ('' when none). */
  readonly user: string;
}

/**
 * nbd://HOST[:PORT] and iscsi://[USER@]HOST[:PORT] (no path) name a server; nbd://HOST/EXPORT
 * (also nbd://HOST/ for the empty export name) and iscsi://HOST/IQN/LUN name one disk. For
 * nbd+unix, whose URIs always have a path, the empty export asks the server.
 */
export function classifyRemote(uri: string): RemoteForm | undefined {
  const match = REMOTE_RE.exec(uri);
  if (match === null) return undefined;
  const scheme = (match[1] ?? '').toLowerCase();
  const authority = match[2] ?? '';
  const path = match[3] ?? '';
  const at = authority.lastIndexOf('@');
  const user = at < 0 ? '' : authority.slice(0, at);
  const kind = scheme === 'iscsi' ? 'iscsi' : 'nbd';
  const bare = scheme.endsWith('+unix') ? path === '' || path === '/' : kind === 'iscsi' ? path === '' || path === '/' : path === '';
  return { kind, form: bare ? 'server' : 'disk', user };
}

/** Puts USER@ into an iSCSI URI that names no user (for --chap-user). */
export function withUser(uri: string, user: string): string {
  const form = classifyRemote(uri);
  if (form?.kind !== 'iscsi' || form.user !== '' || user === '') return uri;
  return uri.replace(/^iscsi:\/\//i, `iscsi://${encodeURIComponent(user)}@`);
}

/**
 * The candidates a remote URI gives: itself when it names a disk (checked with the engine's URI
 * parser), else what discover() lists. `auth` carries the CHAP secret for iSCSI discovery.
 */
export async function remoteCandidates(uri: string, auth: Pick<DiscoverOptions, 'secret' | 'secretFile'>, discoverFn: DiscoverFn): Promise<Candidate[]> {
  const form = classifyRemote(uri);
  if (form === undefined) {
    throw usageError(`"${maskUriSecrets(uri)}" is not a remote disk URI`, 'init', 'like nbd://HOST[:PORT]/EXPORT, nbd://HOST (asks for its exports), iscsi://[USER@]HOST[:PORT]/IQN/LUN or iscsi://[USER@]HOST');
  }
  if (form.form === 'disk') {
    try {
      parseElementUri(uri, 'uri', process.cwd());
    } catch (err) {
      throw usageError(err instanceof Error ? err.message : String(err), 'init', 'like nbd://HOST[:PORT]/EXPORT or iscsi://[USER@]HOST[:PORT]/IQN/LUN');
    }
    return [remoteCandidate(form, uri, form.kind === 'nbd' ? 'NBD export' : 'iSCSI LUN')];
  }
  const result = await discoverFn(uri, { timeoutMs: 5000, ...auth });
  // Sorted by name: servers list in any order (nbdkit dir= in readdir order), and the order
  // offered is the default role order.
  const items = [...result.items].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  return items.slice(0, ENTRIES_MAX).map((item) => remoteCandidate(form, item.uri,
    form.kind === 'nbd' ? `NBD export "${item.name}"${item.description !== undefined ? ` (${item.description})` : ''}` : `iSCSI target ${item.name}`));
}

function remoteCandidate(form: RemoteForm, uri: string, description: string): Candidate {
  return { kind: form.kind, uri, description, ...(form.kind === 'iscsi' && form.user !== '' ? { chapUser: decodeUser(form.user) } : {}) };
}

function decodeUser(text: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    return text;
  }
}
