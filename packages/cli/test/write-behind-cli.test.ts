// `onestack volume create --write-behind ELEMENT[:maxLagMiB]` and the API's `writeBehind` body
// field (issue 11): parsed and checked before the daemon is asked (CLI, exit 2) or anything is
// created (API, 400 with where = the field); the engine checks the rest as for the config
// (packages/engine/test/write-behind-integrity.test.ts, test/write-behind-integrity.test.ts).
import { describe, expect, it } from 'vitest';
import { parseCommandArgs } from '../src/args.js';
import { checkCreateVolume } from '../src/api/validate.js';
import { run } from '../src/cli.js';
import { createBody } from '../src/commands/volume.js';
import { captureIo } from './helpers.js';

const SPEC = { layout: { type: 'string' }, element: { type: 'string', multiple: true, greedy: true }, 'write-behind': { type: 'string' } } as const;
const body = (args: string[]) => createBody(parseCommandArgs('volume create', ['v', ...args], SPEC));

describe('volume create --write-behind', () => {
  it('takes ELEMENT and ELEMENT:maxLagMiB on raid1 and raid10; absent without the flag', () => {
    expect(body(['--layout', 'raid1', '--element', 'a,r', '--write-behind', 'r']).writeBehind).toEqual({ element: 'r' });
    expect(body(['--layout', 'raid1', '--element', 'a,r', '--write-behind', 'r:16']).writeBehind).toEqual({ element: 'r', maxLagMiB: 16 });
    expect(body(['--layout', 'raid10', '--element', 'a,b,c,d', '--write-behind', 'd:1024']).writeBehind).toEqual({ element: 'd', maxLagMiB: 1024 });
    expect(body(['--layout', 'raid1', '--element', 'a,r']).writeBehind).toBeUndefined();
  });

  it.each([
    [['--layout', 'raid5', '--element', 'a,b,c', '--write-behind', 'c'], /raid1 and raid10/],
    [['--layout', 'raid1', '--element', 'a,r', '--write-behind', 'x'], /x is not one of this volume's elements/],
    [['--layout', 'raid1', '--element', 'a,r', '--write-behind', ':8'], /needs an element name/],
    [['--layout', 'raid1', '--element', 'a,r', '--write-behind', 'r:0'], /maxLagMiB/],
    [['--layout', 'raid1', '--element', 'a,r', '--write-behind', 'r:1025'], /maxLagMiB/],
    [['--layout', 'raid1', '--element', 'a,r', '--write-behind', 'r:8M'], /maxLagMiB/],
  ])('refuses %j (exit 2, nothing sent)', async (args, why) => {
    expect(() => body(args)).toThrow(why);
    const io = captureIo();
    expect(await run(['volume', 'create', 'v', ...args], io)).toBe(2);
    expect(io.err()).toMatch(why);
  });

  it('help names the flag', async () => {
    const io = captureIo();
    expect(await run(['volume', '--help'], io)).toBe(0);
    expect(io.out()).toContain('--write-behind ELEMENT[:maxLagMiB]');
  });
});

describe('API: POST /volumes writeBehind', () => {
  const vol = (writeBehind: unknown) => ({ name: 'v', layout: 'raid1', elements: ['a', 'r'], writeBehind });
  it('passes element, maxLagMiB and drainOnFlush on; refuses anything else with where = the field', () => {
    expect(checkCreateVolume(vol({ element: 'r' })).writeBehind).toEqual({ element: 'r' });
    expect(checkCreateVolume(vol({ element: 'r', maxLagMiB: 8, drainOnFlush: false })).writeBehind).toEqual({ element: 'r', maxLagMiB: 8, drainOnFlush: false });
    expect(checkCreateVolume({ name: 'v', layout: 'raid1', elements: ['a', 'r'] }).writeBehind).toBeUndefined();
    for (const [bad, why] of [
      [{ element: 'x' }, /writeBehind.element x is not one of the volume's elements/],
      [{ element: 'r', maxLagMiB: 0 }, /writeBehind.maxLagMiB must be a whole number from 1 to 1024/],
      [{ element: 'r', drainOnFlush: 'yes' }, /writeBehind.drainOnFlush must be true or false/],
      [{ element: 'r', lag: 1 }, /unknown field "lag"/],
      ['r', /request body must be a JSON object/],
      [{}, /writeBehind.element must be a name/],
    ] as const) expect(() => checkCreateVolume(vol(bad)), JSON.stringify(bad)).toThrow(why);
  });
});
