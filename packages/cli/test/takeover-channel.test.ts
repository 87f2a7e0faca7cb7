// The takeover's IPC inbox (messages in order, bounded waits, the peer going away) and the
// successor's reading of ONESTACK_TAKEOVER_FDS. The processes themselves: test/takeover.test.ts.
import { EventEmitter } from 'node:events';
import { describe, expect, it } from 'vitest';
import { Inbox, type ToOld } from '../src/takeover-channel.js';
import { TakeoverChild, parseTakeoverFds } from '../src/takeover-child.js';

describe('takeover Inbox', () => {
  it('hands out messages in order, with their handles, and ignores foreign ones', async () => {
    const peer = new EventEmitter();
    const inbox = new Inbox<ToOld>(peer, 'the peer');
    const handle = {};
    peer.emit('message', { t: 'ready', pid: 7 });
    peer.emit('message', 'not ours');
    peer.emit('message', { t: 'adopted', seq: 1, ok: true }, handle);
    expect((await inbox.next(100, 'x')).msg).toEqual({ t: 'ready', pid: 7 });
    const second = await inbox.next(100, 'x');
    expect(second.msg).toEqual({ t: 'adopted', seq: 1, ok: true });
    expect(second.handle).toBe(handle);
    inbox.dispose();
    expect(peer.listenerCount('message')).toBe(0);
  });

  it('a receive waits for a late message, and gives up after its timeout', async () => {
    const peer = new EventEmitter();
    const inbox = new Inbox<ToOld>(peer, 'the peer');
    setTimeout(() => peer.emit('message', { t: 'serving' }), 30);
    expect((await inbox.next(2_000, 'serving')).msg.t).toBe('serving');
    await expect(inbox.next(50, 'serving message')).rejects.toThrow(/no serving message within 0 s/);
  });

  it('rejects at once when the peer exits or closes the channel', async () => {
    const peer = new EventEmitter();
    const inbox = new Inbox<ToOld>(peer, 'the next process');
    const waiting = inbox.next(10_000, 'ready message');
    peer.emit('exit', 2, null);
    await expect(waiting).rejects.toThrow(/the next process exited while waiting for ready message/);
  });
});

describe('ONESTACK_TAKEOVER_FDS', () => {
  it('absent: not a takeover', () => {
    expect(TakeoverChild.fromEnv({})).toBeUndefined();
  });

  it('set without an IPC channel (not started by a takeover): a usage error, and the variable is removed', () => {
    const env: NodeJS.ProcessEnv = { ONESTACK_TAKEOVER_FDS: 'nbd:4' };
    expect(() => TakeoverChild.fromEnv(env, false)).toThrow(/no IPC channel/);
    expect(env.ONESTACK_TAKEOVER_FDS).toBeUndefined();
  });
});

describe('ONESTACK_TAKEOVER_FDS entries', () => {
  it('names NBD and API fds; anything else is a usage error', () => {
    const fds = parseTakeoverFds('nbd:4,nbd:5,api:6');
    expect(fds.nbd).toEqual([4, 5]);
    expect(fds.api).toBe(6);
    expect(() => parseTakeoverFds('nbd:4,tls:5')).toThrow(/bad entry "tls:5"/);
    expect(() => parseTakeoverFds('api:4')).toThrow(/no NBD socket/);
  });
});
