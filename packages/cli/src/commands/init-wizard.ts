// The questions of `onestack init`, in order: data dir, remote disks (with CHAP), layout, new
// images when too few disks are ready, elements, volume name, boot. A flag answers its question;
// with --yes (no Prompter) every other question takes its default, and a question without one is
// a usage error. The result is a plan (init-config.ts) plus the typed secrets to store.
import { realpathSync, statSync, type Stats } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import { normalizeVolume, parseElementUri, type Layout } from '@onestack/engine';
import { CliError, isEngineError, toCliError, usageError } from '../errors.js';
import { formatBytes, table } from '../render.js';
import { hasInlineSecret, maskUriSecrets, redact } from '../uri-secret.js';
import {
  classifyRemote, listImages, parseMounts, readBlockDevices, remoteCandidates, withUser, type Candidate, type DiscoverFn,
} from './init-enumerate.js';
import { defaultLayout, GIB, layoutMenu, layoutMinimum, parseGib, parseLayout, parseSelection, secretFileFor, type InitPlan, type PlannedElement } from './init-config.js';
import { ATTEMPTS_MAX, type Parsed, type Prompter } from './init-prompts.js';

export interface InitFlags {
  readonly configPath: string;
  readonly dataDir?: string;
  readonly layout?: Layout;
  readonly elements: readonly string[];
  readonly remotes: readonly string[];
  readonly secretFile?: string;
  readonly chapUser?: string;
  readonly boot?: string;
  readonly volume?: string;
  readonly sizeGib?: number;
}

/** What the wizard reads of the machine; tests pass fixtures. */
export interface InitEnv {
  readonly cwd: string;
  readonly defaultDataDir: string;
  readonly sysBlockDir: string;
  readonly devDir: string;
  readonly readMounts: () => { readonly mounts: string; readonly swaps: string };
  readonly discover: DiscoverFn;
}

export interface WizardResult {
  readonly plan: InitPlan;
  /** Secrets typed in answer to a question, to store (mode 0600) once the config is valid. */
  readonly secrets: readonly { readonly file: string; readonly secret: string }[];
}

interface Credential { readonly secretFile: string; readonly secret?: string }

const REMOTES_MAX = 16;
const NEW_IMAGES_MAX = 64;
const REMOTE_QUESTION = 'Remote disk or server to add (nbd://HOST[:PORT][/EXPORT] or iscsi://[USER@]HOST[:PORT][/IQN/LUN]; empty line: done)';

export class InitWizard {
  readonly #candidates: Candidate[] = [];
  /** Chosen unless the answer says otherwise: image files, new images, remote disks asked for. */
  readonly #byDefault = new Set<string>();
  readonly #fromRemoteFlags: Candidate[] = [];
  readonly #credentials = new Map<string, Credential>();
  #used: ReadonlyMap<string, string> = new Map();
  #dataDir = '';

  constructor(private readonly flags: InitFlags, private readonly env: InitEnv, private readonly ask: Prompter | undefined,
    private readonly say: (text: string) => void) {}

  async run(): Promise<WizardResult> {
    this.#dataDir = await this.#askDataDir();
    this.#enumerateLocal();
    for (const uri of this.flags.remotes) this.#fromRemoteFlags.push(...(await this.#addRemote(uri)));
    if (this.ask !== undefined && this.flags.remotes.length === 0) await this.#askRemotes(this.ask);
    const layout = await this.#askLayout();
    const chosen = await this.#chooseElements(layout);
    const volume = await this.#askVolume();
    const boot = await this.#askBoot(volume);
    const elements = chosen.map((c) => this.#planned(c));
    const plan: InitPlan = { configPath: this.flags.configPath, dataDir: this.#dataDir, layout, elements, volume, boot };
    const secrets = new Map<string, string>();
    for (const c of chosen) {
      const cred = c.chapUser === undefined ? undefined : this.#credentials.get(c.chapUser);
      if (cred?.secret !== undefined) secrets.set(cred.secretFile, cred.secret);
    }
    return { plan, secrets: [...secrets].map(([file, secret]) => ({ file, secret })) };
  }

  async #askDataDir(): Promise<string> {
    if (this.flags.dataDir !== undefined) return resolve(this.env.cwd, this.flags.dataDir);
    if (this.ask === undefined) return resolve(this.env.cwd, this.env.defaultDataDir);
    const answer = await this.ask.ask('Data directory (images, state, API token)', this.env.defaultDataDir);
    return resolve(this.env.cwd, answer);
  }

  #enumerateLocal(): void {
    const { mounts, swaps } = this.env.readMounts();
    this.#used = parseMounts(mounts, swaps);
    const images = listImages(this.#dataDir);
    const blocks = readBlockDevices({ sysBlockDir: this.env.sysBlockDir, devDir: this.env.devDir, used: this.#used });
    for (const c of [...images, ...blocks]) this.#add(c, c.kind === 'image' && c.inUse === undefined);
    if (this.ask === undefined) return;
    this.say(`Found ${images.length} image file${images.length === 1 ? '' : 's'} in ${this.#dataDir} and ${blocks.length} block device${blocks.length === 1 ? '' : 's'}.`);
    if (this.#candidates.length > 0) this.say(this.#table(false));
  }

  async #askRemotes(ask: Prompter): Promise<void> {
    for (let i = 0; i < REMOTES_MAX; i++) {
      const answer = await ask.ask(REMOTE_QUESTION);
      if (answer === '') return;
      try {
        await this.#addRemote(answer);
      } catch (err) {
        const e = toCliError(err);
        ask.say(`  ! ${e.message}${e.hint !== undefined ? ` (${e.hint})` : ''}`);
      }
    }
  }

  /** Adds the disk a URI names, or what its server offers; CHAP credentials are asked for here. */
  async #addRemote(raw: string): Promise<Candidate[]> {
    const text = raw.trim();
    if (hasInlineSecret(text)) {
      throw usageError(`the URI ${maskUriSecrets(text)} carries a secret: secrets are never taken on the command line or in URIs`, 'init',
        'write iscsi://USER@HOST... and give the secret when asked, or with --secret-file FILE');
    }
    let uri = this.flags.chapUser === undefined ? text : withUser(text, this.flags.chapUser);
    const form = classifyRemote(uri);
    if (form === undefined) throw usageError(`"${text}" is not an NBD or iSCSI URI`, 'init', 'like nbd://HOST[:PORT]/EXPORT, nbd://HOST, iscsi://[USER@]HOST[:PORT]/IQN/LUN or iscsi://[USER@]HOST');
    if (form.kind === 'iscsi' && form.user === '' && this.ask !== undefined) {
      const user = await this.ask.ask(`CHAP user for ${uri} (empty line: no CHAP)`);
      if (user !== '') uri = withUser(uri, user);
    }
    const user = decodeUser(classifyRemote(uri)?.user ?? '');
    const cred = user === '' ? undefined : await this.#credentialFor(user);
    const auth = cred === undefined ? {} : cred.secret !== undefined ? { secret: cred.secret } : { secretFile: cred.secretFile };
    let found: Candidate[];
    try {
      found = await remoteCandidates(uri, auth, this.env.discover);
    } catch (err) {
      throw cleanError(err, cred?.secret);
    }
    for (const c of found) this.#add(c, true);
    const what = found.map((c) => `${c.uri} (${c.description})`).join(', ');
    this.say(found.length === 0 ? `  nothing offered at ${maskUriSecrets(uri)}` : `  added ${what}`);
    return found;
  }

  async #credentialFor(user: string): Promise<Credential> {
    const known = this.#credentials.get(user);
    if (known !== undefined) return known;
    let cred: Credential;
    if (this.flags.secretFile !== undefined) cred = { secretFile: this.flags.secretFile };
    else if (this.ask !== undefined) cred = { secretFile: secretFileFor(this.#dataDir, user), secret: await this.#askSecret(this.ask, user) };
    else {
      throw usageError(`the iSCSI CHAP user ${user} needs a secret: pass --secret-file FILE`, '--secret-file',
        'secrets are never taken on the command line; put it on the first line of a file (mode 0600)');
    }
    this.#credentials.set(user, cred);
    return cred;
  }

  async #askSecret(ask: Prompter, user: string): Promise<string> {
    for (let attempt = 1; attempt <= ATTEMPTS_MAX; attempt++) {
      const secret = await ask.askSecret(`CHAP secret for ${user}`);
      if (secret !== '') return secret;
      ask.say('  ! the secret is empty - please type it again');
    }
    throw usageError(`no CHAP secret for ${user} after ${ATTEMPTS_MAX} tries; nothing written`, 'init');
  }

  async #askLayout(): Promise<Layout> {
    if (this.flags.layout !== undefined) return this.flags.layout;
    const count = this.flags.elements.length > 0 ? this.flags.elements.length + this.#fromRemoteFlags.length : this.#defaults().length;
    const fallback = count === 0 ? 'raid1' : defaultLayout(count);
    if (this.ask === undefined) return fallback;
    this.ask.say(`Layouts:\n${layoutMenu()}`);
    return this.ask.askValid('Layout', fallback, parseLayout);
  }

  async #chooseElements(layout: Layout): Promise<Candidate[]> {
    if (this.flags.elements.length > 0) {
      const list: Candidate[] = [];
      for (const text of this.flags.elements) list.push(await this.#elementArg(text));
      const chosen = unique([...list, ...this.#fromRemoteFlags]);
      const problem = this.#countProblem(layout, chosen);
      if (problem !== undefined) throw usageError(problem, '--element', `name more elements, or choose another --layout`);
      for (const c of chosen.filter((c) => c.kind === 'block')) this.say(`warning: everything on ${c.uri} will be overwritten`);
      return chosen;
    }
    await this.#topUp(layout);
    if (this.ask === undefined) {
      const chosen = this.#defaults();
      const problem = this.#countProblem(layout, chosen);
      if (problem !== undefined) throw usageError(problem, 'init', 'name the elements with --element, or create images with --size-gib');
      return chosen;
    }
    return this.#askElements(this.ask, layout);
  }

  /** Offers new image files (created at first start) when fewer disks are ready than the layout needs. */
  async #topUp(layout: Layout): Promise<void> {
    const have = this.#defaults().length;
    const need = Math.min(layoutMinimum(layout) - have, NEW_IMAGES_MAX);
    if (need <= 0) return;
    let sizeGib = this.flags.sizeGib ?? 1;
    if (this.ask !== undefined) {
      const question = `${layout} needs at least ${layoutMinimum(layout)} elements and ${have} ${have === 1 ? 'is' : 'are'} ready. ` +
        `Create ${need} new image file${need === 1 ? '' : 's'} in ${this.#dataDir}?`;
      if (!(await this.ask.confirm(question, true))) return;
      if (this.flags.sizeGib === undefined) sizeGib = await this.ask.askValid('Size of each new image in GiB', '1', parseGib);
    }
    for (let n = 0, made = 0; made < need && n < NEW_IMAGES_MAX * 4; n++) {
      const file = join(this.#dataDir, `disk${n}.img`);
      if (this.#candidates.some((c) => c.uri === file) || exists(file)) continue;
      this.#add({ kind: 'new-image', uri: file, sizeBytes: sizeGib * GIB, createSizeBytes: sizeGib * GIB, description: 'new image file, created at first start' }, true);
      made++;
    }
    this.say(`  ${need} new image file${need === 1 ? '' : 's'} of ${sizeGib} GiB planned in ${this.#dataDir}`);
  }

  async #askElements(ask: Prompter, layout: Layout): Promise<Candidate[]> {
    for (let round = 0; round < ATTEMPTS_MAX; round++) {
      const choosable = this.#choosable();
      ask.say(`Elements (in-use ones are listed without a number):\n${this.#table(true)}`);
      const defaults = this.#defaults().map((c) => String(choosable.indexOf(c) + 1)).join(',');
      const chosen = await ask.askValid(`Elements for the ${layout} volume, in role order (like 1,2 or 1-3; paths add local files)`,
        defaults === '' ? undefined : defaults, (answer) => this.#parseChoice(answer, choosable, layout));
      const devices = chosen.filter((c) => c.kind === 'block').map((c) => c.uri);
      if (devices.length === 0 || await ask.confirm(`Everything on ${devices.join(', ')} will be overwritten. Go on?`, false)) return chosen;
    }
    throw usageError(`no elements chosen after ${ATTEMPTS_MAX} tries; nothing written`, 'init');
  }

  #parseChoice(answer: string, choosable: readonly Candidate[], layout: Layout): Parsed<Candidate[]> {
    const selection = parseSelection(answer, choosable.length);
    if ('problem' in selection) return selection;
    const chosen: Candidate[] = selection.ok.numbers.map((n) => choosable[n - 1]).filter((c): c is Candidate => c !== undefined);
    for (const text of selection.ok.extra) {
      try {
        chosen.push(this.#localArg(text));
      } catch (err) {
        return { problem: toCliError(err).message };
      }
    }
    const problem = this.#countProblem(layout, unique(chosen));
    return problem === undefined ? { ok: unique(chosen) } : { problem };
  }

  async #elementArg(text: string): Promise<Candidate> {
    const form = classifyRemote(text.trim());
    if (form === undefined) return this.#localArg(text);
    if (form.form === 'server') throw usageError(`--element ${text} names a server, not one disk`, '--element', 'add the export or IQN/LUN, or pass the server with --remote');
    const [disk] = await this.#addRemote(text);
    if (disk === undefined) throw usageError(`--element ${text}: no disk there`, '--element');
    return disk;
  }

  /** A local path or file: URI: a known candidate, an image, a free block device, or a new image. */
  #localArg(text: string): Candidate {
    let path: string;
    try {
      const parsed = parseElementUri(text.trim(), '--element', this.env.cwd);
      if (parsed.location.kind !== 'local') throw new Error('not a local element');
      path = parsed.location.path;
    } catch (err) {
      throw usageError(`${text}: ${err instanceof Error ? err.message : String(err)}`, '--element', 'a path, file:PATH or /dev/NAME');
    }
    const known = this.#candidates.find((c) => c.uri === path);
    if (known?.inUse !== undefined) throw usageError(`${path} is in use (${known.inUse})`, '--element');
    if (known !== undefined) return known;
    const stat = statOrUndefined(path);
    const sizeGib = this.flags.sizeGib ?? 1;
    let c: Candidate;
    if (stat === undefined) c = { kind: 'new-image', uri: path, sizeBytes: sizeGib * GIB, createSizeBytes: sizeGib * GIB, description: 'new image file, created at first start' };
    else if (stat.isFile()) c = { kind: 'image', uri: path, sizeBytes: stat.size, description: 'image file' };
    else if (stat.isBlockDevice()) {
      const use = this.#used.get(basename(safeRealpath(path)));
      if (use !== undefined) throw usageError(`${path} is in use (${use})`, '--element');
      c = { kind: 'block', uri: path, description: 'block device' };
    } else throw usageError(`${path} is neither a file nor a block device`, '--element');
    this.#add(c, false);
    return c;
  }

  async #askVolume(): Promise<string> {
    const given = this.flags.volume ?? (this.flags.boot !== undefined && this.flags.boot !== 'none' ? this.flags.boot : undefined);
    if (given !== undefined) return given;
    if (this.ask === undefined) return 'default';
    return this.ask.askValid<string>('Volume name (also its NBD export name)', 'default', (answer) => {
      try {
        normalizeVolume({ name: answer, layout: 'linear', elements: ['x'] }, 'volume', new Set(['x']));
        return { ok: answer };
      } catch (err) {
        return { problem: toCliError(err).message.replace(/^volume\.name: /, '') };
      }
    });
  }

  async #askBoot(volume: string): Promise<boolean> {
    const boot = this.flags.boot;
    if (boot === 'none') return false;
    if (boot !== undefined) {
      if (boot !== volume) throw usageError(`--boot ${boot} names no volume: init writes one volume, "${volume}"`, '--boot', `pass --boot ${volume}, or --volume ${boot}`);
      return true;
    }
    if (this.ask === undefined) return true;
    return this.ask.confirm(`Make "${volume}" the boot volume (what the empty NBD export name serves)?`, true);
  }

  /** The engine's own element-count rule for the layout (message without the field path). */
  #countProblem(layout: Layout, chosen: readonly Candidate[]): string | undefined {
    const names = chosen.map((_, i) => `e${i}`);
    try {
      normalizeVolume({ name: 'v', layout, elements: names }, 'volume', new Set(names));
      return undefined;
    } catch (err) {
      return isEngineError(err) ? err.message.replace(/^volume\.elements: /, '') : String(err);
    }
  }

  #planned(c: Candidate): PlannedElement {
    const kind = c.kind === 'nbd' || c.kind === 'iscsi' ? c.kind : 'local';
    const cred = c.chapUser === undefined ? undefined : this.#credentials.get(c.chapUser);
    return { kind, uri: c.uri, ...(c.createSizeBytes !== undefined ? { createSizeBytes: c.createSizeBytes } : {}), ...(cred !== undefined ? { secretFile: cred.secretFile } : {}) };
  }

  #add(c: Candidate, byDefault: boolean): void {
    if (this.#candidates.some((k) => k.uri === c.uri)) return;
    this.#candidates.push(c);
    if (byDefault) this.#byDefault.add(c.uri);
  }

  #choosable(): Candidate[] {
    return this.#candidates.filter((c) => c.inUse === undefined);
  }

  #defaults(): Candidate[] {
    return this.#choosable().filter((c) => this.#byDefault.has(c.uri));
  }

  #table(numbered: boolean): string {
    const choosable = this.#choosable();
    const rows = this.#candidates.map((c) => {
      const n = choosable.indexOf(c);
      const row = [c.uri, c.sizeBytes === undefined ? '?' : formatBytes(c.sizeBytes), c.inUse === undefined ? c.description : `${c.description} (in use: ${c.inUse})`];
      return numbered ? [n < 0 ? '-' : String(n + 1), ...row] : row;
    });
    const header = ['ELEMENT', 'SIZE', 'WHAT'];
    return table(numbered ? ['#', ...header] : header, rows).trimEnd().replace(/^/gm, '  ');
  }
}

function unique(list: readonly Candidate[]): Candidate[] {
  return list.filter((c, i) => list.findIndex((k) => k.uri === c.uri) === i);
}

function statOrUndefined(path: string): Stats | undefined {
  try {
    return statSync(path);
  } catch {
    return undefined;
  }
}

function exists(path: string): boolean {
  return statOrUndefined(path) !== undefined;
}

function safeRealpath(path: string): string {
  try {
    return realpathSync(path);
  } catch {
    return path;
  }
}

function decodeUser(text: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    return text;
  }
}

/** Discovery failures: a bad URI is a usage error (2), an unreachable remote a runtime one (1); never the secret. */
function cleanError(err: unknown, secret: string | undefined): CliError {
  const e = toCliError(err);
  const exitCode = isEngineError(err) && (err.code === 'invalid' || err.code === 'config') ? 2 : e.exitCode;
  const clean = (text: string | undefined): string | undefined => (text === undefined ? undefined : redact(text, secret));
  return new CliError(exitCode, clean(e.message) ?? '', clean(e.where), clean(e.hint));
}
