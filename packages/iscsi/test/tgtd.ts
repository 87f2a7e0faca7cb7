// A private tgtd (Linux SCSI target daemon) per test file: its own iSCSI port on 127.0.0.1, its own
// control socket (-C, 0..32767), a sparse backing file in a private directory, killed by PID.
// tgtd ignores SIGTERM once targets exist, so it is stopped with SIGKILL.

import type { ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort, hasExited, run, runOk, sleep, spawnTracked, stopChild } from '../../../test/lib/proc.js';

export interface TgtdTarget {
  readonly tid: number;
  readonly iqn: string;
  /** LUN 1's backing file size. */
  readonly sizeBytes: number;
  readonly thinProvisioning?: boolean;
  readonly readOnly?: boolean;
  /** Incoming (initiator) account and, for mutual CHAP, the outgoing (target) account. */
  readonly incoming?: { readonly user: string; readonly secret: string };
  readonly outgoing?: { readonly user: string; readonly secret: string };
  /** Target parameters set with `--op update --name K --value V` (HeaderDigest, InitialR2T, ...). */
  readonly params?: Readonly<Record<string, string>>;
}

export interface Tgtd {
  readonly port: number;
  readonly control: number;
  readonly dir: string;
  backing(t: TgtdTarget): string;
  configure(targets: readonly TgtdTarget[]): Promise<void>;
  /** SIGKILL: no logout, no FIN from the iSCSI layer beyond what the kernel sends. */
  kill(): Promise<void>;
  start(): Promise<void>;
  stop(): Promise<void>;
  tgtadm(args: readonly string[]): Promise<void>;
  stderrTail(): string;
}

const CONTROL_DIR = '/var/run/tgtd';

/** A control number whose socket no other tgtd on this machine uses. */
function freeControl(): number {
  for (let i = 0; i < 200; i++) {
    const n = 1000 + Math.floor(Math.random() * 31000);
    if (!existsSync(join(CONTROL_DIR, `socket.${n}`))) return n;
  }
  throw new Error('no free tgtd control number');
}

export async function createTgtd(): Promise<Tgtd> {
  const port = await freePort();
  const control = freeControl();
  const dir = mkdtempSync(join(tmpdir(), 'onestack-iscsi-'));
  let child: ChildProcess | null = null;
  let stderr = '';
  const backing = (t: TgtdTarget): string => join(dir, `lun-${t.tid}.img`);
  const tgtadm = async (args: readonly string[]): Promise<void> => {
    await runOk('tgtadm', ['-C', String(control), '--lld', 'iscsi', ...args], { timeoutMs: 10_000 });
  };

  const start = async (): Promise<void> => {
    // A SIGKILLed tgtd leaves its socket behind; a fresh one recreates it.
    rmSync(join(CONTROL_DIR, `socket.${control}`), { force: true });
    rmSync(join(CONTROL_DIR, `socket.${control}.lock`), { force: true });
    const c = spawnTracked('tgtd', ['-f', '-C', String(control), '--iscsi', `portal=127.0.0.1:${port}`]);
    c.stdout?.on('data', () => undefined);
    c.stderr?.on('data', (d: Buffer) => { stderr = (stderr + d.toString()).slice(-8000); });
    child = c;
    for (let i = 0; i < 100; i++) {
      if (hasExited(c)) throw new Error(`tgtd exited at start:\n${stderr}`);
      const r = await run('tgtadm', ['-C', String(control), '--lld', 'iscsi', '--mode', 'target', '--op', 'show'], { timeoutMs: 5000 });
      if (r.code === 0) return;
      await sleep(50);
    }
    throw new Error(`tgtd control socket ${control} never answered:\n${stderr}`);
  };

  const configure = async (targets: readonly TgtdTarget[]): Promise<void> => {
    for (const t of targets) {
      const f = backing(t);
      if (!existsSync(f)) { writeFileSync(f, ''); truncateSync(f, t.sizeBytes); }
      const tid = ['--tid', String(t.tid)];
      await tgtadm(['--mode', 'target', '--op', 'new', ...tid, '--targetname', t.iqn]);
      await tgtadm(['--mode', 'logicalunit', '--op', 'new', ...tid, '--lun', '1', '--backing-store', f]);
      const lunParams = [t.thinProvisioning === true ? 'thin_provisioning=1' : '', t.readOnly === true ? 'readonly=1' : ''].filter((p) => p !== '');
      if (lunParams.length > 0) await tgtadm(['--mode', 'logicalunit', '--op', 'update', ...tid, '--lun', '1', '--params', lunParams.join(',')]);
      for (const [name, value] of Object.entries(t.params ?? {})) await tgtadm(['--mode', 'target', '--op', 'update', ...tid, '--name', name, '--value', value]);
      for (const [acct, outgoing] of [[t.incoming, false], [t.outgoing, true]] as const) {
        if (acct === undefined) continue;
        await run('tgtadm', ['-C', String(control), '--lld', 'iscsi', '--mode', 'account', '--op', 'new', '--user', acct.user, '--password', acct.secret]);
        await tgtadm(['--mode', 'account', '--op', 'bind', ...tid, '--user', acct.user, ...(outgoing ? ['--outgoing'] : [])]);
      }
      // Bound last: an initiator cannot log in to a half-configured target.
      await tgtadm(['--mode', 'target', '--op', 'bind', ...tid, '--initiator-address', 'ALL']);
    }
  };

  const kill = async (): Promise<void> => {
    if (child !== null) await stopChild(child, 5000, 'SIGKILL');
    child = null;
  };

  await start();
  return {
    port, control, dir, backing, configure, kill, start, tgtadm,
    stop: async () => {
      await kill();
      rmSync(dir, { recursive: true, force: true });
      // A SIGKILLed tgtd cannot remove its own control socket.
      for (const f of [`socket.${control}`, `socket.${control}.lock`]) rmSync(join(CONTROL_DIR, f), { force: true });
    },
    stderrTail: () => stderr,
  };
}
