// The old side of a takeover (`kill -USR2 <pid of onestack serve>`): start the next daemon
// process from the same command line (so an upgraded install's code is what runs), hand it the
// listening sockets and the live NBD connections, and exit, without a client seeing a drop.
//
//   old                                          new (spawned with fds + an IPC channel)
//   spawn(listening fds as fd 4.., ipc) ───────▶ load config, check fds ─── 'ready'
//   hold new accepts, quiesce connections
//   close API, NBD, engine (clean) ── 'engine-closed' ─▶ open engine, listen on the fds ── 'serving'
//   close TCP listeners; send each connection (handle + state) ─▶ resume it ── 'adopted'
//   send held accepts; 'done'; exit 0               serves on
//
// Two processes never have the elements open at once: the new opens them only after the old
// closed its engine. Anything failing before that leaves the old serving as before (the new is
// killed); a failure after it (the new cannot open the engine) makes the old open everything
// again and resume the connections itself.
import { spawn, type ChildProcess } from 'node:child_process';
import { closeHandle, type NbdServer, type NbdServerHandover } from '@onestack/nbd';
import type { Log } from './api/engine-port.js';
import { Inbox, sendMessage, type ToOld } from './takeover-channel.js';

/** Names the passed fds for the new process: "nbd:4,nbd:5,api:6". */
export const TAKEOVER_FDS_ENV = 'ONESTACK_TAKEOVER_FDS';
/** The first passed fd: 0-2 are stdio, 3 is the IPC channel. */
export const TAKEOVER_FDS_START = 4;
const READY_MS = 30_000;
const QUIESCE_MS = 5_000;
const CLOSE_MS = 15_000;
const SERVING_MS = 60_000;
const ADOPT_MS = 5_000;
const KILL_WAIT_MS = 5_000;
const HELD_DRAIN_MS = 10_000;

export interface TakeoverHost {
  readonly log: Log;
  /** The running NBD server. */
  nbdServer(): NbdServer;
  /** The API's listening fd, passed on like the NBD ones; undefined: the new process binds api.listen. */
  readonly apiFd: number | undefined;
  /** Closes the API server, the NBD export and the engine (flush, clean superblocks); false on an error. */
  closeAll(): Promise<boolean>;
  /** Rollback: opens engine, NBD (on the configured targets) and API again; the new NBD server. */
  reopen(): Promise<NbdServer>;
}

export type TakeoverOutcome = { readonly kind: 'handed-over'; readonly pid: number } | { readonly kind: 'kept' } | { readonly kind: 'failed' };

export async function takeOver(host: TakeoverHost): Promise<TakeoverOutcome> {
  const { log } = host;
  const passed = host.nbdServer().listenerFds();
  const nbdFds = passed.map((l) => l.fd);
  if (nbdFds.some((fd) => fd === undefined)) {
    log('error', 'takeover refused: a listening socket has no fd to pass on (still serving)');
    return { kind: 'kept' };
  }
  const fds = [...(nbdFds as number[]), ...(host.apiFd !== undefined ? [host.apiFd] : [])];
  const names = fds.map((_, i) => `${i < nbdFds.length ? 'nbd' : 'api'}:${TAKEOVER_FDS_START + i}`).join(',');
  const argv = [...process.execArgv, process.argv[1] ?? '', ...process.argv.slice(2)];
  log('info', `takeover: starting the next process (${process.execPath} ${argv.join(' ')})`);
  let child: ChildProcess;
  try {
    child = spawn(process.execPath, argv, {
      stdio: ['ignore', 'inherit', 'inherit', 'ipc', ...fds],
      env: { ...process.env, [TAKEOVER_FDS_ENV]: names },
    });
  } catch (err) {
    log('error', `takeover failed: cannot start the next process: ${messageOf(err)} (still serving)`);
    return { kind: 'kept' };
  }
  child.on('error', (err) => log('error', `takeover: next process: ${err.message}`));
  const inbox = new Inbox<ToOld>(child, 'the next process');
  try {
    return await run(host, child, inbox);
  } finally {
    inbox.dispose();
  }
}

async function run(host: TakeoverHost, child: ChildProcess, inbox: Inbox<ToOld>): Promise<TakeoverOutcome> {
  const { log } = host;
  // 1. The new one is ready to open the engine (config valid, sockets usable), or nothing changes.
  let pid = child.pid ?? 0;
  try {
    const ready = (await inbox.next(READY_MS, 'ready message')).msg;
    if (ready.t !== 'ready') throw new Error(ready.t === 'failed' ? ready.error : `unexpected ${ready.t}`);
    pid = ready.pid;
  } catch (err) {
    log('error', `takeover failed: the next process did not get ready: ${messageOf(err)} (still serving; nothing was stopped)`);
    await killChild(child);
    return { kind: 'kept' };
  }
  // 2. Quiesce: listeners hold new accepts, connections stop between requests.
  log('info', `takeover: process ${pid} is ready; quiescing connections (at most ${QUIESCE_MS / 1000} s)`);
  const pausedAtMs = Date.now(); // from here until 'serving', clients' requests wait
  const handover = await host.nbdServer().handOver({ timeoutMs: QUIESCE_MS });
  const quiescedMs = Date.now() - pausedAtMs;
  // 3. The engine is closed here before it opens there. A close that hangs leaves the elements
  // in an unknown state: neither process may open them then.
  const clean = await Promise.race([host.closeAll(), new Promise<'timeout'>((resolve) => setTimeout(() => resolve('timeout'), CLOSE_MS).unref())]);
  if (clean === 'timeout') {
    log('error', `takeover failed: closing the engine took longer than ${CLOSE_MS / 1000} s; stopping`);
    await killChild(child);
    for (const c of handover.connections) closeHandle(c.handle);
    return { kind: 'failed' };
  }
  if (!clean) log('warn', 'takeover: closing the engine reported an error; the next process opens it as after a crash');
  try {
    await sendMessage(child, { t: 'engine-closed' });
    const serving = (await inbox.next(SERVING_MS, 'serving message')).msg;
    if (serving.t !== 'serving') throw new Error(serving.t === 'failed' ? serving.error : `unexpected ${serving.t}`);
    log('info', `takeover: process ${pid} serves, ${Date.now() - pausedAtMs} ms after the quiesce began (which took ${quiescedMs} ms)`);
  } catch (err) {
    log('error', `takeover failed after this process closed its engine: ${messageOf(err)}; opening it again here`);
    await killChild(child);
    return rollback(host, handover);
  }
  // 4. Move the connections, then whatever the listeners accepted meanwhile.
  await handover.closeListeners({ keepBoundUnix: true }); // the new process accepts from here on
  const sent = await sendAll(child, inbox, handover, log);
  await sendMessage(child, { t: 'done' }).catch(() => undefined);
  child.disconnect();
  child.unref();
  log('info', `takeover: handed over to process ${pid} (${sent.moved} connection(s) moved, ${sent.held} waiting accept(s)); `
    + `connections paused ${Date.now() - pausedAtMs} ms; exiting`);
  return { kind: 'handed-over', pid };
}

async function sendAll(child: ChildProcess, inbox: Inbox<ToOld>, handover: NbdServerHandover, log: Log): Promise<{ moved: number; held: number }> {
  let seq = 0;
  let moved = 0;
  let held = 0;
  const sendOne = async (msg: Parameters<typeof sendMessage>[1], handle: object): Promise<boolean> => {
    try {
      await sendMessage(child, msg, handle);
      const ack = (await inbox.next(ADOPT_MS, 'adopted message')).msg;
      return ack.t === 'adopted' && ack.ok;
    } catch (err) {
      log('warn', `takeover: a connection could not be handed over: ${messageOf(err)}`);
      return false;
    } finally {
      closeHandle(handle); // the new process has its own copy of the fd (or the connection is lost)
    }
  };
  for (const c of handover.connections) {
    if (await sendOne({ t: 'connection', seq: ++seq, state: c.state }, c.handle)) moved++;
  }
  // Bound Unix sockets stay open until exit (closing would unlink the path): drain what they
  // accept; the last check and the exit happen in one tick, so nothing is accepted in between.
  const until = Date.now() + HELD_DRAIN_MS; // a client flood on a Unix socket must not keep us here
  for (let batch = handover.takeHeld(); batch.length > 0; batch = handover.takeHeld()) {
    for (const h of batch) {
      if (Date.now() < until && await sendOne({ t: 'held', seq: ++seq, transport: h.transport, peer: h.peer }, h.handle)) held++;
      else closeHandle(h.handle);
    }
  }
  return { moved, held };
}

/** The new process failed after our engine closed: serve again here, with the same connections. */
async function rollback(host: TakeoverHost, handover: NbdServerHandover): Promise<TakeoverOutcome> {
  const { log } = host;
  try {
    await handover.closeListeners(); // the configured targets are bound again by reopen()
    const server = await host.reopen();
    let resumed = 0;
    for (const c of handover.connections) if (server.adopt(c)) resumed++;
    for (const h of handover.takeHeld()) server.adoptHeld(h);
    log('info', `takeover rolled back: serving again in this process (${resumed} connection(s) resumed)`);
    return { kind: 'kept' };
  } catch (err) {
    log('error', `takeover rollback failed: ${messageOf(err)}`);
    for (const c of handover.connections) closeHandle(c.handle);
    for (const h of handover.takeHeld()) closeHandle(h.handle);
    return { kind: 'failed' };
  }
}

async function killChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGKILL');
  await Promise.race([exited, new Promise((resolve) => setTimeout(resolve, KILL_WAIT_MS).unref())]);
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
