// `onestack volume create --integrity` and the API's `integrity` field (issue 10): passed on for
// raid1/raid10, refused for other layouts before the daemon is asked (CLI) or anything is created (API).
import { describe, expect, it } from 'vitest';
import { parseCommandArgs } from '../src/args.js';
import { checkCreateVolume } from '../src/api/validate.js';
import { run } from '../src/cli.js';
import { createBody } from '../src/commands/volume.js';
import { captureIo } from './helpers.js';

const SPEC = { layout: { type: 'string' }, element: { type: 'string', multiple: true, greedy: true }, integrity: { type: 'boolean' } } as const;

describe('volume create --integrity', () => {
  it('sets integrity: true on raid1, raid10, raid5 and raid6; absent without the flag', () => {
    expect(createBody(parseCommandArgs('volume create', ['v', '--layout', 'raid5', '--element', 'a,b,c', '--integrity'], SPEC)).integrity).toBe(true);
    expect(createBody(parseCommandArgs('volume create', ['v', '--layout', 'raid6', '--element', 'a,b,c,d', '--integrity'], SPEC)).integrity).toBe(true);
    expect(createBody(parseCommandArgs('volume create', ['v', '--layout', 'raid1', '--element', 'a', 'b', '--integrity'], SPEC))).toMatchObject({ layout: 'raid1', integrity: true });
    expect(createBody(parseCommandArgs('volume create', ['v', '--layout', 'raid10', '--element', 'a,b,c,d', '--integrity'], SPEC)).integrity).toBe(true);
    expect(createBody(parseCommandArgs('volume create', ['v', '--layout', 'raid1', '--element', 'a', 'b'], SPEC)).integrity).toBeUndefined();
  });

  it('refuses --integrity on raid0 with the reason (exit 2, nothing sent)', async () => {
    const io = captureIo();
    expect(await run(['volume', 'create', 'v', '--layout', 'raid0', '--element', 'a,b,c', '--integrity'], io)).toBe(2);
    expect(io.err()).toMatch(/--integrity needs a layout that can repair a bad block/);
  });

  it('help names the flag', async () => {
    const io = captureIo();
    expect(await run(['volume', '--help'], io)).toBe(0);
    expect(io.out()).toContain('--integrity');
  });
});

describe('API: POST /volumes integrity', () => {
  it('takes a boolean, refuses other types and layouts with where = integrity', () => {
    expect(checkCreateVolume({ name: 'v', layout: 'raid1', elements: ['a', 'b'], integrity: true }).integrity).toBe(true);
    expect(checkCreateVolume({ name: 'v', layout: 'raid1', elements: ['a', 'b'], integrity: false }).integrity).toBeUndefined();
    expect(() => checkCreateVolume({ name: 'v', layout: 'raid1', elements: ['a', 'b'], integrity: 'yes' })).toThrow(/integrity must be true or false/);
    expect(checkCreateVolume({ name: 'v', layout: 'raid6', elements: ['a', 'b', 'c', 'd'], integrity: true }).integrity).toBe(true);
    expect(() => checkCreateVolume({ name: 'v', layout: 'linear', elements: ['a', 'b'], integrity: true })).toThrow(/integrity needs a layout that can repair a bad block/);
    expect(checkCreateVolume({ name: 'v', layout: 'raid6', elements: ['a', 'b', 'c', 'd'], integrity: false }).integrity).toBeUndefined();
  });
});
