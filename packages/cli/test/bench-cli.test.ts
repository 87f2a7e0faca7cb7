// `onestack bench` argument checking (exit 2 before anything runs), fio missing (exit 1 with the
// apt-get hint) and the help. The run against a real NBD server: test/bench-cli.test.ts.
import { describe, expect, it } from 'vitest';
import { run } from '../src/cli.js';
import { useFakeDaemon } from './fake-engine.js';
import { captureIo } from './helpers.js';

const URI = 'nbd://127.0.0.1:1/';

describe('onestack bench arguments', () => {
  const cases: [string[], RegExp][] = [
    [['bench'], /exactly one of --volume V or --uri URI/],
    [['bench', '--volume', 'v', '--uri', URI], /exactly one of --volume V or --uri URI/],
    [['bench', '--uri', 'file:/tmp/x'], /--uri wants an NBD URI/],
    [['bench', '--uri', URI, '--workload', 'randread'], /--workload does not accept "randread"/],
    [['bench', '--uri', URI, '--qd', '0'], /--qd wants a whole number from 1 to 1024/],
    [['bench', '--uri', URI, '--qd', 'x'], /--qd wants a whole number/],
    [['bench', '--uri', URI, '--seconds', '-1'], /--seconds needs a value|--seconds wants/],
    [['bench', '--uri', URI, '--seconds', '1.5'], /--seconds wants a whole number/],
    [['bench', '--uri', URI, '--nbd', '127.0.0.1:10809'], /--nbd only goes with --volume/],
    [['bench', '--volume', 'v', '--nbd', 'nohost'], /--nbd wants HOST:PORT/],
    [['bench', '--uri', URI, '--wokload', 'all'], /unknown option --wokload/],
    [['bench', '--uri', URI, 'extra'], /unexpected argument "extra"/],
  ];
  for (const [argv, message] of cases) {
    it(`${argv.slice(1).join(' ') || '(nothing)'} → exit 2`, async () => {
      const io = captureIo({ PATH: '/nonexistent' });
      expect(await run(argv, io)).toBe(2);
      expect(io.err()).toMatch(message);
      expect(io.err()).toMatch(/^onestack: error: /);
      expect(io.out()).toBe('');
    });
  }

  it('fio missing → exit 1 with the apt-get hint', async () => {
    const io = captureIo({ PATH: '/nonexistent' });
    expect(await run(['bench', '--uri', URI, '--seconds', '1'], io)).toBe(1);
    expect(io.err()).toMatch(/fio is not installed/);
    expect(io.err()).toMatch(/hint: .*apt-get install fio/);
  });

  it('warns (without asking) that write workloads overwrite the target', async () => {
    const io = captureIo({ PATH: '/nonexistent' });
    expect(await run(['bench', '--uri', URI, '--workload', 'all', '--json'], io)).toBe(1);
    expect(io.err()).toMatch(/warning: randwrite4k overwrites the data of nbd:\/\/127\.0\.0\.1:1\//);
    expect(io.err()).toMatch(/warning: seqwrite1m overwrites/);
    expect(io.err()).not.toMatch(/warning: randread4k/);
  });

  it('--help prints the bench help; bench is listed as available', async () => {
    const io = captureIo();
    expect(await run(['bench', '--help'], io)).toBe(0);
    expect(io.out()).toMatch(/^usage: onestack bench/);
    const top = captureIo();
    expect(await run(['--help'], top)).toBe(0);
    expect(top.out()).toMatch(/bench +measure a volume or an NBD URI with fio\n/);
  });
});

describe('onestack bench --volume', () => {
  const TOKEN = 'bench-token-0123456789abcdef0123456';
  const daemon = useFakeDaemon(TOKEN);
  const bench = async (args: readonly string[]) => {
    const io = captureIo({ ONESTACK_TOKEN: TOKEN, PATH: '/nonexistent' });
    const code = await run(['bench', ...args, '--api', `127.0.0.1:${daemon.port}`], io);
    return { code, err: io.err() };
  };

  it('an unknown volume → exit 1', async () => {
    const r = await bench(['--volume', 'nope']);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/no volume "nope"/);
  });

  it('targets nbd://127.0.0.1:10809/V by default, --nbd overrides', async () => {
    let r = await bench(['--volume', 'm', '--workload', 'randwrite4k']);
    expect(r.code).toBe(1); // no fio on PATH
    expect(r.err).toMatch(/overwrites the data of nbd:\/\/127\.0\.0\.1:10809\/m\n/);
    r = await bench(['--volume', 'm', '--workload', 'seqwrite1m', '--nbd', '[::1]:10900']);
    expect(r.err).toMatch(/overwrites the data of nbd:\/\/\[::1\]:10900\/m\n/);
  });
});
