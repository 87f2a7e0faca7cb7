// A simulated Ceph command line for the rbd lock tests (setRbdCliRunner): one header object with
// its cls lock and lease xattr, one OSD that can be down, watchers, the blocklist, and a partition
// in which every call hangs until killed.
import type { CliOptions, CliResult } from '../dist/remote/rbd-lock-cli.js';

/** A one-object Ceph: the header's lock and lease xattr, one OSD that can be down, watchers. */
export class FakeCeph {
  holder: { cookie: string; name: string } | null = null;
  lease: string | null = null;
  leaseWrites: string[] = [];
  osdUp = true;
  upFrom = 5;
  /** Every call hangs (until killed): a partition. */
  cutOff = false;
  watchers = [{ address: '127.0.0.1:0/111', client: 4100 }, { address: '127.0.0.1:0/222', client: 4200 }];
  blocklisted: string[] = [];
  clients = 7000;
  /** rados ops waiting for the OSD: like the Objecter, they go on once it is back. */
  private waiting: (() => void)[] = [];

  osdBack(upFrom: number): void {
    this.osdUp = true;
    this.upFrom = upFrom;
    for (const go of this.waiting.splice(0)) go();
  }

  run = (tool: string, full: readonly string[], opts: CliOptions): Promise<CliResult> => {
    const args = full.slice(full.indexOf('--client_mount_timeout') + 2);
    const hang = this.cutOff || (!this.osdUp && tool === 'rados');
    if (hang) {
      return new Promise((resolve) => {
        const t = setTimeout(() => resolve({ code: 1, stdout: '', stderr: 'timed out (killed)' }), opts.timeoutMs ?? 30_000);
        opts.signal?.addEventListener('abort', () => { clearTimeout(t); resolve({ code: 1, stdout: '', stderr: 'aborted' }); });
        if (!this.cutOff) this.waiting.push(() => { clearTimeout(t); setTimeout(() => resolve(this.answer(tool, args)), 50); });
      });
    }
    return new Promise((resolve) => setTimeout(() => resolve(this.answer(tool, args)), 50));
  };

  private answer(tool: string, a: readonly string[]): CliResult {
    const ok = (stdout = ''): CliResult => ({ code: 0, stdout, stderr: '' });
    const cmd = `${tool} ${a.filter((x) => !x.startsWith('-') && !['rbd', 'json'].includes(x)).slice(0, 2).join(' ')}`;
    if (tool === 'rbd' && a[0] === 'info') return ok('{"id":"abc"}');
    if (tool === 'rbd' && a[0] === 'status') return ok(JSON.stringify({ watchers: this.watchers }));
    if (tool === 'rbd' && a[0] === 'lock') return ok('[]');
    if (tool === 'rados') {
      const op = a[2];
      if (op === 'lock' && a[3] === 'info') return ok(JSON.stringify({ lockers: this.holder === null ? [] : [{ name: this.holder.name, cookie: this.holder.cookie, addr: '' }] }));
      if (op === 'lock' && a[3] === 'get') {
        if (this.holder !== null) return { code: 16, stdout: '', stderr: 'Device or resource busy' };
        this.holder = { cookie: a[a.indexOf('--lock-cookie') + 1]!, name: `client.${this.clients++}` };
        return ok();
      }
      if (op === 'lock' && a[3] === 'break') { this.holder = null; return ok(); }
      if (op === 'getxattr') return this.lease === null ? { code: 61, stdout: '', stderr: 'No data available' } : ok(this.lease);
      if (op === 'setxattr') { this.lease = a[5]!; this.leaseWrites.push(this.lease); return ok(); }
      if (op === 'rmxattr') { this.lease = null; return ok(); }
    }
    if (tool === 'ceph' && a[0] === 'osd' && a[1] === 'map') return ok(JSON.stringify({ epoch: 9, pgid: '2.7', up: this.osdUp ? [0] : [], up_primary: this.osdUp ? 0 : -1, acting: this.osdUp ? [0] : [], acting_primary: this.osdUp ? 0 : -1 }));
    if (tool === 'ceph' && a[0] === 'osd' && a[1] === 'dump') return ok(JSON.stringify({ osds: [{ osd: 0, up: this.osdUp ? 1 : 0, up_from: this.upFrom }] }));
    if (tool === 'ceph' && a[0] === 'pg') return ok(JSON.stringify({ pg_stats: [{ pgid: '2.7', state: this.osdUp ? 'active+clean' : 'stale+active+clean' }] }));
    if (tool === 'ceph' && a[0] === 'osd' && a[1] === 'blocklist') { this.blocklisted.push(a[3]!); return ok(); }
    return { code: 1, stdout: '', stderr: `fake ceph: unknown ${cmd}` };
  }
}
