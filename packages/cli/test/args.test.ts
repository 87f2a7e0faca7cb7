// Pure tests: argument parsing, did-you-mean, error formatting, and the dispatcher's exit
// statuses for usage errors (no daemon involved, except one closed port).
import { describe, expect, it } from 'vitest';
import { closest, parseCommandArgs, parseHostPort, parseSize } from '../src/args.js';
import { run } from '../src/cli.js';
import { CliError, formatError, toCliError } from '../src/errors.js';
import { EngineError } from '@onestack/engine';
import { captureIo, freePort } from './helpers.js';

const CREATE = {
  layout: { type: 'string' }, element: { type: 'string', multiple: true, greedy: true }, json: { type: 'boolean' },
} as const;

describe('parseCommandArgs', () => {
  it('reads strings, booleans, repeated and greedy options', () => {
    const args = parseCommandArgs('volume create', ['v1', '--layout', 'raid1', '--element', 'a', 'b', '--element=c', '--json'], CREATE);
    expect(args.positionals).toEqual(['v1']);
    expect(args.values).toEqual({ layout: 'raid1', element: ['a', 'b', 'c'], json: true });
  });

  it('stops being greedy after --', () => {
    const args = parseCommandArgs('x', ['--element', 'a', '--', 'b'], CREATE);
    expect(args.values['element']).toEqual(['a']);
    expect(args.positionals).toEqual(['b']);
  });

  it('rejects an unknown option with a did-you-mean, as a usage error', () => {
    try {
      parseCommandArgs('volume create', ['--layuot', 'raid1'], CREATE);
      expect.unreachable();
    } catch (err) {
      expect(err).toBeInstanceOf(CliError);
      const e = err as CliError;
      expect(e.exitCode).toBe(2);
      expect(e.message).toBe('unknown option --layuot');
      expect(e.hint).toContain('did you mean --layout?');
    }
  });

  it('rejects a missing value, a value that is an option, a value on a boolean, a repeat', () => {
    expect(() => parseCommandArgs('c', ['--layout'], CREATE)).toThrow(/--layout needs a value/);
    expect(() => parseCommandArgs('c', ['--layout', '--json'], CREATE)).toThrow(/--layout needs a value, got option --json/);
    expect(() => parseCommandArgs('c', ['--json=yes'], CREATE)).toThrow(/--json takes no value/);
    expect(() => parseCommandArgs('c', ['--layout', 'a', '--layout', 'b'], CREATE)).toThrow(/given twice/);
  });
});

describe('value parsers', () => {
  it('parses HOST:PORT, IPv6 in brackets, and rejects the rest', () => {
    expect(parseHostPort('127.0.0.1:9090', '--api', false)).toEqual({ host: '127.0.0.1', port: 9090 });
    expect(parseHostPort('[::1]:10809', '--nbd', false)).toEqual({ host: '::1', port: 10809 });
    expect(parseHostPort('localhost:0', '--nbd', true).port).toBe(0);
    for (const bad of ['9090', 'host:', 'host:70000', '::1:80', 'a b:1']) {
      expect(() => parseHostPort(bad, '--api', false)).toThrow(/--api wants HOST:PORT/);
    }
    expect(() => parseHostPort('h:0', '--api', false)).toThrow(CliError);
  });

  it('parses sizes with binary suffixes', () => {
    expect(parseSize('1073741824', '--size')).toBe(2 ** 30);
    expect(parseSize('1G', '--size')).toBe(2 ** 30);
    expect(parseSize('512MiB', '--size')).toBe(512 * 2 ** 20);
    for (const bad of ['0', '-1', '1.5G', 'lots', '99999999999T']) expect(() => parseSize(bad, '--size')).toThrow(/positive size/);
  });

  it('suggests the closest word', () => {
    expect(closest('stauts', ['serve', 'status', 'volume'])).toBe('status');
    expect(closest('vol', ['serve', 'status', 'volume'])).toBe('volume');
    expect(closest('zzzzzz', ['serve', 'status'])).toBeUndefined();
  });
});

describe('error formatting', () => {
  it('prints one error line with WHERE, then a hint line', () => {
    const text = formatError(new CliError(1, 'cannot reach the daemon at 127.0.0.1:9090', 'ECONNREFUSED', 'start it with: onestack serve'));
    expect(text).toBe('onestack: error: cannot reach the daemon at 127.0.0.1:9090 (ECONNREFUSED)\nonestack: hint: start it with: onestack serve\n');
    expect(formatError(new CliError(2, 'two\nlines'))).toBe('onestack: error: two; lines\n');
  });

  it('maps EngineError config to exit 2 and the other codes to exit 1', () => {
    const config = toCliError(new EngineError('config', 'volumes[0].layout: bad', 'x.yaml:3:14 volumes[0].layout', 'fix it'));
    expect(config.exitCode).toBe(2);
    expect(formatError(config)).toBe('onestack: error: volumes[0].layout: bad (x.yaml:3:14 volumes[0].layout)\nonestack: hint: fix it\n');
    expect(toCliError(new EngineError('io', 'disk gone', 'd0')).exitCode).toBe(1);
    expect(toCliError(new Error('boom')).exitCode).toBe(1);
  });
});

describe('run (dispatcher)', () => {
  it('prints help and exits 0; no command exits 2', async () => {
    const io = captureIo();
    expect(await run(['--help'], io)).toBe(0);
    expect(io.out()).toContain('usage: onestack COMMAND');
    const none = captureIo();
    expect(await run([], none)).toBe(2);
    expect(none.err()).toContain('usage: onestack COMMAND');
    for (const command of ['serve', 'status', 'volume', 'element', 'discover']) {
      const each = captureIo();
      expect(await run([command, '--help'], each)).toBe(0);
      expect(each.out()).toContain(`onestack ${command}`);
    }
  });

  it('rejects an unknown command with a suggestion (exit 2)', async () => {
    const io = captureIo();
    expect(await run(['stauts'], io)).toBe(2);
    expect(io.err()).toBe('onestack: error: unknown command "stauts" (onestack)\nonestack: hint: did you mean: onestack status?\n');
  });

  it('init is available now: its help names every flag (exit 0)', async () => {
    const io = captureIo();
    expect(await run(['init', '--help'], io)).toBe(0);
    expect(io.out()).toMatch(/^usage: onestack init \[--config FILE\] \[--data-dir DIR\] \[--yes\] \[--force\]/);
    for (const flag of ['--layout', '--element', '--remote', '--secret-file', '--chap-user', '--volume', '--boot', '--size-gib']) expect(io.out()).toContain(flag);
  });

  it('validates volume create before asking the daemon', async () => {
    const cases: [string[], RegExp][] = [
      [['volume', 'create', '--layout', 'raid1', '--element', 'a'], /needs a NAME/],
      [['volume', 'create', 'v', '--element', 'a'], /needs --layout/],
      [['volume', 'create', 'v', '--layout', 'raid1'], /needs --element/],
      [['volume', 'create', 'v', '--layout', 'riad1', '--element', 'a'], /--layout does not accept "riad1" \(--layout\)\nonestack: hint: did you mean raid1\?/],
      [['volume', 'create', 'v', '--layout', 'raid1', '--element', 'a', '--chunk-kib', 'x'], /--chunk-kib wants a whole number/],
      [['volume', 'create', 'v', '--layout', 'raid1', '--element', 'a,a'], /element a named twice/],
      [['volume', 'create', 'v', '--layout', 'raid1', '--element', 'a', '--order', 'random'], /--order does not accept/],
      [['volume', 'remove', 'v'], /unknown command "volume remove"/],
      [['element', 'add', 'file:/x', '--cache', 'direct'], /--cache does not accept "direct"/],
      [['status', '--count', '3'], /--count only makes sense with --watch/],
      [['status', '--api', 'nowhere'], /--api wants HOST:PORT/],
    ];
    for (const [argv, pattern] of cases) {
      const io = captureIo();
      expect(await run(argv, io), argv.join(' ')).toBe(2);
      expect(io.err(), argv.join(' ')).toMatch(pattern);
      expect(io.err()).toMatch(/^onestack: error: /);
    }
  });

  it('reports a daemon that is not running (exit 1) with the hint to start it', async () => {
    const port = await freePort();
    const io = captureIo({ ONESTACK_TOKEN: 'x'.repeat(32) });
    expect(await run(['status', '--api', `127.0.0.1:${port}`], io)).toBe(1);
    expect(io.err()).toBe(`onestack: error: cannot reach the daemon at 127.0.0.1:${port} (ECONNREFUSED)\nonestack: hint: start it with: onestack serve\n`);
  });
});
