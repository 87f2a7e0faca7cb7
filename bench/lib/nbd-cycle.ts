// One NBD connection's life, by hand (proto.md, fixed newstyle): greeting, client flags,
// NBD_OPT_GO for an export, optionally one 4 KiB READ, then NBD_CMD_DISC and close — or an abrupt
// close without DISC. The soak runs a thousand of these to see that connections leave nothing
// behind (fds, memory). Independent of @onestack/nbd on purpose: a bug there must not hide one here.
import { connect, type Socket } from 'node:net';

const NBDMAGIC = 0x4e42444d41474943n;
const IHAVEOPT = 0x49484156454f5054n;
const REPLY_MAGIC_OPT = 0x3e889045565a9n;
const SIMPLE_REPLY_MAGIC = 0x67446698;
const REQUEST_MAGIC = 0x25609513;
const FLAG_FIXED_NEWSTYLE = 1;
const FLAG_NO_ZEROES = 2;
const OPT_GO = 7;
const REP_ACK = 1;
const CMD_READ = 0;
const CMD_DISC = 2;
const OPTION_REPLIES_MAX = 16;
const READ_BYTES = 4096;

export type CycleEnd = 'disc' | 'abrupt';

/** Exact-length reads from a socket, each bounded by the cycle's deadline. */
class Reader {
  private buf: Buffer = Buffer.alloc(0);
  private closed = false;
  private wake: (() => void) | null = null;

  constructor(private readonly socket: Socket, private readonly deadlineMs: number) {
    socket.on('data', (d: Buffer) => { this.buf = this.buf.length === 0 ? d : Buffer.concat([this.buf, d]); this.kick(); });
    socket.on('close', () => { this.closed = true; this.kick(); });
    socket.on('error', () => { this.closed = true; this.kick(); });
  }

  private kick(): void {
    const w = this.wake;
    this.wake = null;
    w?.();
  }

  async read(n: number): Promise<Buffer> {
    while (this.buf.length < n) {
      if (this.closed) throw new Error(`server closed the connection after ${this.buf.length}/${n} bytes`);
      const left = this.deadlineMs - Date.now();
      if (left <= 0) throw new Error(`timed out waiting for ${n} bytes`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(() => { this.wake = null; resolve(); }, left);
        this.wake = () => { clearTimeout(t); resolve(); };
      });
    }
    const out = Buffer.from(this.buf.subarray(0, n));
    this.buf = this.buf.subarray(n);
    return out;
  }

  /** Resolves when the server has closed its side (after DISC), or at the deadline. */
  async closedByPeer(): Promise<boolean> {
    while (!this.closed && Date.now() < this.deadlineMs) {
      await new Promise<void>((resolve) => {
        const t = setTimeout(() => { this.wake = null; resolve(); }, Math.max(1, this.deadlineMs - Date.now()));
        this.wake = () => { clearTimeout(t); resolve(); };
      });
      this.buf = Buffer.alloc(0);
    }
    return this.closed;
  }
}

function open(port: number, deadlineMs: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = connect({ host: '127.0.0.1', port });
    const t = setTimeout(() => { s.destroy(); reject(new Error('connect timed out')); }, Math.max(1, deadlineMs - Date.now()));
    s.once('connect', () => { clearTimeout(t); s.setNoDelay(true); resolve(s); });
    s.once('error', (e) => { clearTimeout(t); reject(e); });
  });
}

async function negotiate(s: Socket, r: Reader, exportName: string): Promise<void> {
  const g = await r.read(18);
  if (g.readBigUInt64BE(0) !== NBDMAGIC || g.readBigUInt64BE(8) !== IHAVEOPT) throw new Error(`bad greeting ${g.toString('hex')}`);
  if ((g.readUInt16BE(16) & FLAG_FIXED_NEWSTYLE) === 0) throw new Error('server is not fixed-newstyle');
  const name = Buffer.from(exportName, 'utf8');
  const opt = Buffer.alloc(4 + 16 + 4 + name.length + 2);
  opt.writeUInt32BE(FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES, 0);
  opt.writeBigUInt64BE(IHAVEOPT, 4);
  opt.writeUInt32BE(OPT_GO, 12);
  opt.writeUInt32BE(4 + name.length + 2, 16);
  opt.writeUInt32BE(name.length, 20);
  name.copy(opt, 24);
  s.write(opt);
  for (let i = 0; i < OPTION_REPLIES_MAX; i++) {
    const h = await r.read(20);
    if (h.readBigUInt64BE(0) !== REPLY_MAGIC_OPT) throw new Error(`bad option reply ${h.toString('hex')}`);
    const type = h.readUInt32BE(12);
    const data = await r.read(h.readUInt32BE(16));
    if (type === REP_ACK) return;
    if (type >= 0x80000000) throw new Error(`NBD_OPT_GO refused (0x${type.toString(16)}): ${data.toString('utf8')}`);
  }
  throw new Error(`no ACK after ${OPTION_REPLIES_MAX} option replies`);
}

function request(type: number, cookie: bigint, offset: bigint, length: number): Buffer {
  const b = Buffer.alloc(28);
  b.writeUInt32BE(REQUEST_MAGIC, 0);
  b.writeUInt16BE(0, 4);
  b.writeUInt16BE(type, 6);
  b.writeBigUInt64BE(cookie, 8);
  b.writeBigUInt64BE(offset, 16);
  b.writeUInt32BE(length, 24);
  return b;
}

/** One connect → GO → [READ] → DISC (or abrupt close) cycle; throws with the reason on any failure. */
export async function nbdCycle(port: number, exportName: string, opts: { read: boolean; end: CycleEnd; timeoutMs: number }): Promise<void> {
  const deadlineMs = Date.now() + opts.timeoutMs;
  const s = await open(port, deadlineMs);
  const r = new Reader(s, deadlineMs);
  try {
    await negotiate(s, r, exportName);
    if (opts.read) {
      s.write(request(CMD_READ, 1n, 0n, READ_BYTES));
      const h = await r.read(16);
      if (h.readUInt32BE(0) !== SIMPLE_REPLY_MAGIC) throw new Error(`bad reply magic ${h.toString('hex')}`);
      if (h.readUInt32BE(4) !== 0) throw new Error(`READ failed with error ${h.readUInt32BE(4)}`);
      await r.read(READ_BYTES);
    }
    if (opts.end === 'abrupt') return;
    s.write(request(CMD_DISC, 2n, 0n, 0));
    s.end();
    if (!(await r.closedByPeer())) throw new Error('the server did not close the connection after NBD_CMD_DISC');
  } finally {
    s.destroy();
  }
}
