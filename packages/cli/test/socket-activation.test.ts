// LISTEN_* parsing for systemd socket activation (the end-to-end runs are test/socket-activation.test.ts).
import { describe, expect, it } from 'vitest';
import { clearActivation, readActivation } from '../src/socket-activation.js';

const PID = 4242;
const env = (vars: Record<string, string>): NodeJS.ProcessEnv => ({ PATH: '/usr/bin', ...vars });

describe('readActivation', () => {
  it('nothing set, or LISTEN_FDS=0: no activation', () => {
    expect(readActivation(env({}), PID)).toEqual({ kind: 'none' });
    expect(readActivation(env({ LISTEN_PID: String(PID), LISTEN_FDS: '0' }), PID)).toEqual({ kind: 'none' });
  });

  it('LISTEN_PID of another process is reported, not used', () => {
    expect(readActivation(env({ LISTEN_PID: '1', LISTEN_FDS: '1' }), PID)).toEqual({ kind: 'other-pid', listenPid: '1' });
  });

  it('one unnamed fd is NBD on fd 3', () => {
    const r = readActivation(env({ LISTEN_PID: String(PID), LISTEN_FDS: '1' }), PID);
    expect(r.kind === 'fds' && r.fds.nbd).toEqual([3]);
    expect(r.kind === 'fds' && r.fds.api).toBeUndefined();
  });

  it('names pick the fds: every "nbd" for NBD, "api" for the API, the rest unused', () => {
    const r = readActivation(env({ LISTEN_PID: String(PID), LISTEN_FDS: '4', LISTEN_FDNAMES: 'api:nbd:other:nbd' }), PID);
    if (r.kind !== 'fds') throw new Error(`expected fds, got ${r.kind}`);
    expect(r.fds.nbd).toEqual([4, 6]);
    expect(r.fds.api).toBe(3);
    expect(r.fds.unused).toEqual([{ fd: 5, name: 'other' }]);
  });

  it('without an "nbd" name, the first fd not named "api" serves NBD', () => {
    const r = readActivation(env({ LISTEN_PID: String(PID), LISTEN_FDS: '2', LISTEN_FDNAMES: 'api:onestack-nbd.socket' }), PID);
    expect(r.kind === 'fds' && r.fds.nbd).toEqual([4]);
  });

  it('malformed values are usage errors (exit 2)', () => {
    const bad = (vars: Record<string, string>): unknown => {
      try { readActivation(env(vars), PID); return undefined; } catch (err) { return err; }
    };
    for (const vars of [
      { LISTEN_PID: 'me', LISTEN_FDS: '1' },
      { LISTEN_PID: String(PID), LISTEN_FDS: 'x' },
      { LISTEN_PID: String(PID), LISTEN_FDS: '65' },
      { LISTEN_PID: String(PID), LISTEN_FDS: '2', LISTEN_FDNAMES: 'nbd' },
      { LISTEN_PID: String(PID), LISTEN_FDS: '1', LISTEN_FDNAMES: 'api' },
      { LISTEN_PID: String(PID), LISTEN_FDS: '3', LISTEN_FDNAMES: 'nbd:api:api' },
    ]) expect(bad(vars), JSON.stringify(vars)).toMatchObject({ name: 'CliError', exitCode: 2 });
  });
});

describe('clearActivation', () => {
  it('removes LISTEN_PID, LISTEN_FDS and LISTEN_FDNAMES and nothing else', () => {
    const e = env({ LISTEN_PID: '1', LISTEN_FDS: '1', LISTEN_FDNAMES: 'nbd', OTHER: 'x' });
    clearActivation(e);
    expect(e).toEqual({ PATH: '/usr/bin', OTHER: 'x' });
  });
});
