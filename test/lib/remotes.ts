// Remote peers for mixed-volume tests: nbdkit (file plugin, optionally with filters) and tgtd
// (an iSCSI target configured with tgtadm), each on a free loopback port, stopped by PID.
import type { ChildProcess } from 'node:child_process';
import { rmSync } from 'node:fs';
import { connect } from 'node:net';
import path from 'node:path';
import { freePort, hasExited, runOk, sleep, spawnTracked, stopChild } from './proc.js';

const READY_TIMEOUT_MS = 15_000;

/** Polls until something accepts TCP connections on 127.0.0.1:port (bounded). */
export async function waitListening(port: number, child: ChildProcess, timeoutMs = READY_TIMEOUT_MS): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (hasExited(child)) throw new Error(`peer exited (${String(child.exitCode ?? child.signalCode)}) before listening on ${port}`);
    const ok = await new Promise<boolean>((resolve) => {
      const s = connect(port, '127.0.0.1');
      s.once('connect', () => { s.destroy(); resolve(true); });
      s.once('error', () => resolve(false));
    });
    if (ok) return;
    await sleep(50);
  }
  throw new Error(`nothing listens on 127.0.0.1:${port} after ${timeoutMs} ms`);
}

export interface NbdkitPeer {
  readonly port: number;
  readonly child: ChildProcess;
  /** nbd://127.0.0.1:PORT/ (nbdkit serves any export name). */
  readonly uri: string;
  stop(signal?: NodeJS.Signals): Promise<void>;
}

/**
 * `nbdkit -f -p PORT -i 127.0.0.1 [--filter=F ...] PLUGIN ARGS...`; `port` reuses a port (restart).
 * Filters go in `args` before the plugin, as nbdkit wants them.
 */
export async function startNbdkit(args: readonly string[], port?: number): Promise<NbdkitPeer> {
  const p = port ?? (await freePort());
  const child = spawnTracked('nbdkit', ['-f', '-p', String(p), '-i', '127.0.0.1', ...args]);
  let stderr = '';
  child.stderr?.setEncoding('utf8').on('data', (s: string) => { stderr = (stderr + s).slice(-4000); });
  try {
    await waitListening(p, child);
  } catch (err) {
    await stopChild(child, 1000, 'SIGKILL');
    throw new Error(`${(err as Error).message}\nnbdkit stderr: ${stderr}`);
  }
  return {
    port: p, child, uri: `nbd://127.0.0.1:${p}/`,
    stop: async (signal: NodeJS.Signals = 'SIGTERM') => { await stopChild(child, 5000, signal); },
  };
}

export interface TgtdPeer {
  readonly port: number;
  readonly child: ChildProcess;
  readonly iqn: string;
  /** iscsi://[USER@]127.0.0.1:PORT/IQN/LUN (LUN 1 is the first file: tgt's LUN 0 is its controller). */
  uri(user?: string, lun?: number): string;
  stop(signal?: NodeJS.Signals): Promise<void>;
}

export interface TgtdOptions {
  /** LUN i+1 is backed by backingFiles[i]. */
  readonly backingFiles: readonly string[];
  readonly iqn?: string;
  readonly chap?: { readonly user: string; readonly secret: string };
  /**
   * Also demand CHAP in discovery (SendTargets) sessions. tgt lets anyone discover by default;
   * an account bound without --tid is the discovery account.
   */
  readonly discoveryChap?: boolean;
  readonly port?: number;
  /** tgtd's control port (-C), so several tgtd never share a management socket. */
  readonly controlPort?: number;
}

async function tgtadm(control: number, args: readonly string[]): Promise<void> {
  await runOk('tgtadm', ['-C', String(control), '--lld', 'iscsi', ...args]);
}

/** Starts tgtd on a free port with one target, LUN 1 backed by `backingFile`, optional CHAP. */
export async function startTgtd(opts: TgtdOptions): Promise<TgtdPeer> {
  const port = opts.port ?? (await freePort());
  const control = opts.controlPort ?? 1000 + (port % 20000);
  const iqn = opts.iqn ?? 'iqn.2026-11.dev.onestack.test:lun1';
  removeControlSocket(control); // a SIGKILLed tgtd leaves it behind
  const child = spawnTracked('tgtd', ['-f', '-C', String(control), '--iscsi', `portal=127.0.0.1:${port}`]);
  await waitListening(port, child);
  // tgtd listens before its management socket is up: retry the first command briefly.
  for (let attempt = 0; ; attempt++) {
    try {
      await tgtadm(control, ['--op', 'new', '--mode', 'target', '--tid', '1', '-T', iqn]);
      break;
    } catch (err) {
      if (attempt >= 40) throw err;
      await sleep(50);
    }
  }
  for (const [i, file] of opts.backingFiles.entries()) {
    await tgtadm(control, ['--op', 'new', '--mode', 'logicalunit', '--tid', '1', '--lun', String(i + 1), '-b', file]);
  }
  if (opts.chap !== undefined) {
    await tgtadm(control, ['--op', 'new', '--mode', 'account', '--user', opts.chap.user, '--password', opts.chap.secret]);
    await tgtadm(control, ['--op', 'bind', '--mode', 'account', '--tid', '1', '--user', opts.chap.user]);
    if (opts.discoveryChap === true) await tgtadm(control, ['--op', 'bind', '--mode', 'account', '--user', opts.chap.user]);
  }
  // The ACL last: until it is bound nobody logs in to a half-configured target (a restart mid-run).
  await tgtadm(control, ['--op', 'bind', '--mode', 'target', '--tid', '1', '-I', 'ALL']);
  return {
    port, child, iqn,
    uri: (user?: string, lun = 1) => `iscsi://${user !== undefined ? `${user}@` : ''}127.0.0.1:${port}/${iqn}/${lun}`,
    // tgtd ignores SIGTERM once it has targets: SIGKILL, then remove what it could not.
    stop: async (signal: NodeJS.Signals = 'SIGKILL') => {
      await stopChild(child, 5000, signal);
      removeControlSocket(control);
    },
  };
}

function removeControlSocket(control: number): void {
  for (const f of [`socket.${control}`, `socket.${control}.lock`]) rmSync(path.join('/var/run/tgtd', f), { force: true });
}
