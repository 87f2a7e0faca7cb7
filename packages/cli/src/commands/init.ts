// `onestack init`: the boot-up configuration wizard. Enumerates elements (image files, block
// devices, remote disks), asks for the layout, elements, credentials and boot volume (or takes
// them from flags with --yes), and writes onestack.yaml - only after the engine's own config
// loader accepted it, both as an object and as the very text written. CHAP secrets typed here go
// to 0600 files in the data dir; the YAML names them (secretFile) and never holds them.
import { closeSync, fchmodSync, fsyncSync, linkSync, mkdirSync, openSync, readFileSync, renameSync, statSync, unlinkSync, writeSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { discover, loadConfig, type EngineConfig } from '@onestack/engine';
import { parseChoice, parseCommandArgs, parsePositiveInt, type OptionSpecs, type ParsedArgs } from '../args.js';
import { CliError, isEngineError, usageError, type ExitCode } from '../errors.js';
import { HELP } from '../help.js';
import type { CliIo } from '../io.js';
import { buildConfig, configText, IMAGE_GIB_MAX, LAYOUT_NAMES, type InitPlan } from './init-config.js';
import { Prompter } from './init-prompts.js';
import { InitWizard, type InitEnv, type InitFlags } from './init-wizard.js';
import { DATA_DIR_DEFAULT } from './common.js';

const OPTIONS: OptionSpecs = {
  config: { type: 'string' }, 'data-dir': { type: 'string' }, yes: { type: 'boolean', short: 'y' },
  layout: { type: 'string' }, element: { type: 'string', multiple: true, greedy: true }, remote: { type: 'string', multiple: true, greedy: true },
  'secret-file': { type: 'string' }, 'chap-user': { type: 'string' }, boot: { type: 'string' }, volume: { type: 'string' },
  'size-gib': { type: 'string' }, force: { type: 'boolean' }, help: { type: 'boolean', short: 'h' },
};
const SECRET_FLAG_RE = /^--?(secret|password|passwd|chap-secret|chap-password)(=|$)/i;
const SECRET_FILE_BYTES_MAX = 4096;
const SECRET_MODE = 0o600;

/** Where input comes from; tests drive runInit() with a stream and fixture roots. */
export interface InitInput {
  readonly input: NodeJS.ReadableStream;
  readonly terminal: boolean;
  readonly columns?: () => number | undefined;
  readonly env: InitEnv;
  readonly now?: Date;
}

export function initCommand(argv: readonly string[], io: CliIo): Promise<ExitCode> {
  const cwd = process.cwd();
  const envDir = io.env['ONESTACK_DATA_DIR'];
  return runInit(argv, io, {
    input: process.stdin, terminal: process.stdin.isTTY === true, columns: () => process.stdout.columns,
    env: {
      cwd, defaultDataDir: envDir !== undefined && envDir !== '' ? envDir : DATA_DIR_DEFAULT,
      sysBlockDir: '/sys/block', devDir: '/dev', discover,
      readMounts: () => ({ mounts: readOrEmpty('/proc/self/mounts'), swaps: readOrEmpty('/proc/swaps') }),
    },
  });
}

export async function runInit(argv: readonly string[], io: CliIo, from: InitInput): Promise<ExitCode> {
  const secretFlag = argv.find((a) => SECRET_FLAG_RE.test(a));
  if (secretFlag !== undefined) {
    throw usageError(`option ${secretFlag.split('=')[0] ?? ''} is not accepted: secrets are never taken on the command line`, 'init',
      'give it when asked, or put it in a file (mode 0600) and pass --secret-file FILE');
  }
  const args = parseCommandArgs('init', argv, OPTIONS);
  if (args.values['help'] === true) { io.stdout(HELP['init'] ?? ''); return 0; }
  const yes = args.values['yes'] === true;
  const force = args.values['force'] === true;
  const flags = flagsOf(args, from.env.cwd);
  refuseOverwrite(flags.configPath, force);
  const ask = yes ? undefined : new Prompter({ input: from.input, write: io.stdout, terminal: from.terminal, ...(from.columns !== undefined ? { columns: from.columns } : {}) });
  try {
    if (ask !== undefined) ask.say(`onestack init: writes ${flags.configPath}. Answer each question; Enter takes the [default]. Nothing is written until the end.`);
    const say = (t: string): void => { io.stdout(t.endsWith('\n') ? t : `${t}\n`); };
    const { plan, secrets } = await new InitWizard(flags, from.env, ask, say).run();
    const text = configText(plan, from.now ?? new Date());
    validate(plan, text);
    if (ask !== undefined) {
      ask.say(`\n${text}`);
      if (!(await ask.confirm(`Write ${plan.configPath}?`, true))) { ask.say('nothing written'); return 1; }
    }
    writeSecrets(secrets);
    writeConfig(plan.configPath, text, force);
    io.stdout(`wrote ${plan.configPath}: volume "${plan.volume}" (${plan.layout} over ${plan.elements.length} element${plan.elements.length === 1 ? '' : 's'}` +
      `${plan.boot ? ', boot' : ''})\nstart it with: onestack serve --config ${plan.configPath}\n`);
    return 0;
  } finally {
    ask?.close();
  }
}

function flagsOf(args: ParsedArgs, cwd: string): InitFlags {
  if (args.positionals.length > 0) throw usageError(`unexpected argument "${args.positionals[0]}"`, 'init', 'see: onestack init --help');
  const text = (name: string): string | undefined => { const v = args.values[name]; return typeof v === 'string' ? v : undefined; };
  const list = (name: string): string[] => {
    const v = args.values[name];
    return (Array.isArray(v) ? v : []).flatMap((e) => e.split(',')).map((e) => e.trim()).filter((e) => e !== '');
  };
  const layout = text('layout');
  const sizeGib = text('size-gib');
  const secretFile = text('secret-file');
  const chapUser = text('chap-user');
  if (chapUser !== undefined && !/^[\x21-\x7e]{1,255}$/.test(chapUser)) throw usageError(`--chap-user wants a user name, got "${chapUser}"`, '--chap-user');
  const flags: { -readonly [K in keyof InitFlags]: InitFlags[K] } = {
    configPath: resolve(cwd, text('config') ?? 'onestack.yaml'), elements: list('element'), remotes: list('remote'),
  };
  const dataDir = text('data-dir');
  if (dataDir !== undefined) flags.dataDir = resolve(cwd, dataDir);
  if (layout !== undefined) flags.layout = parseChoice(layout, '--layout', LAYOUT_NAMES);
  if (sizeGib !== undefined) flags.sizeGib = parsePositiveInt(sizeGib, '--size-gib', IMAGE_GIB_MAX);
  if (secretFile !== undefined) flags.secretFile = checkSecretFile(resolve(cwd, secretFile));
  if (chapUser !== undefined) flags.chapUser = chapUser;
  const boot = text('boot');
  const volume = text('volume');
  if (boot !== undefined) flags.boot = boot;
  if (volume !== undefined) flags.volume = volume;
  return flags;
}

/** The file must hold a secret on its first line; it is referenced, never copied or shown. */
function checkSecretFile(file: string): string {
  let first: string;
  try {
    const stat = statSync(file);
    if (!stat.isFile()) throw usageError(`--secret-file ${file} is not a file`, '--secret-file');
    if (stat.size > SECRET_FILE_BYTES_MAX) throw usageError(`--secret-file ${file} is larger than ${SECRET_FILE_BYTES_MAX} bytes`, '--secret-file', 'it holds one line: the CHAP secret');
    first = (readFileSync(file, 'utf8').split(/\r?\n/)[0] ?? '').trim();
  } catch (err) {
    if (err instanceof CliError) throw err;
    throw usageError(`cannot read --secret-file ${file}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`, '--secret-file', 'a file whose first line is the CHAP secret');
  }
  if (first === '') throw usageError(`--secret-file ${file} has no secret on its first line`, '--secret-file');
  return file;
}

function refuseOverwrite(configPath: string, force: boolean): void {
  if (force || !exists(configPath)) return;
  throw usageError(`${configPath} exists; not overwriting it`, 'init', 'pass --force to replace it, or --config FILE to write elsewhere');
}

/**
 * The engine's loader has the last word: the config as an object (errors name the field path),
 * then the YAML text itself read back from a scratch file, which must load to the same config.
 */
function validate(plan: InitPlan, text: string): void {
  const base = dirname(plan.configPath);
  let fromObject: EngineConfig;
  try {
    fromObject = loadConfig({ object: JSON.parse(JSON.stringify(buildConfig(plan))) as unknown, baseDir: base });
  } catch (err) {
    if (!isEngineError(err)) throw err;
    throw new CliError(2, `the configuration is not valid: ${err.message}; nothing written`, `${plan.configPath} ${err.where ?? ''}`.trim(), err.hint);
  }
  mkdirSync(base, { recursive: true });
  const scratch = `${plan.configPath}.init-${process.pid}.tmp`;
  try {
    writeFile(scratch, text, 0o644);
    const fromText = loadConfig({ path: scratch });
    const { sourcePath: _ignored, ...comparable } = fromText;
    if (JSON.stringify(comparable) !== JSON.stringify(fromObject)) throw new CliError(1, 'internal error: the YAML text does not read back as the configuration it was written from', plan.configPath);
  } catch (err) {
    if (isEngineError(err)) throw new CliError(1, `internal error: the written YAML does not load: ${err.message}`, plan.configPath);
    throw err;
  } finally {
    unlinkQuiet(scratch);
  }
}

function writeSecrets(secrets: readonly { readonly file: string; readonly secret: string }[]): void {
  for (const { file, secret } of secrets) {
    mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
    const scratch = `${file}.init-${process.pid}.tmp`;
    try {
      writeFile(scratch, `${secret}\n`, SECRET_MODE);
      renameSync(scratch, file);
    } finally {
      unlinkQuiet(scratch);
    }
  }
}

/** Written whole or not at all: a scratch file, then a hard link (fails if the file appeared) or, with --force, a rename. */
function writeConfig(configPath: string, text: string, force: boolean): void {
  const scratch = `${configPath}.init-${process.pid}.tmp`;
  try {
    writeFile(scratch, text, 0o644);
    if (force) renameSync(scratch, configPath);
    else linkSync(scratch, configPath);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') refuseOverwrite(configPath, false);
    throw err;
  } finally {
    unlinkQuiet(scratch);
  }
}

function writeFile(file: string, text: string, mode: number): void {
  const fd = openSync(file, 'w', mode);
  try {
    fchmodSync(fd, mode); // a scratch file left behind by a crash keeps its old mode otherwise
    writeSync(fd, text);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

function unlinkQuiet(file: string): void {
  try {
    unlinkSync(file);
  } catch {
    // already gone (renamed into place)
  }
}

function exists(file: string): boolean {
  try {
    statSync(file);
    return true;
  } catch {
    return false;
  }
}

function readOrEmpty(file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return '';
  }
}
