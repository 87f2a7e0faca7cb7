// A deliberately small, independent NBD client (NetworkBlockDevice proto.md) for sending what
// well-behaved clients never send: bad magic, unknown options, oversized lengths, garbage, and
// requests abandoned half-way. It does not import @onestack/nbd on purpose.
import { Socket, connect } from 'node:net';

export const NBDMAGIC = 0x4e42444d41474943n;
export const IHAVEOPT = 0x49484156454f5054n;
export const REPLY_MAGIC_OPT = 0x3e889045565a9n;
export const REQUEST_MAGIC = 0x25609513;
export const SIMPLE_REPLY_MAGIC = 0x67446698;
export const FLAG_FIXED_NEWSTYLE = 1;
export const FLAG_NO_ZEROES = 2;
export const OPT = { EXPORT_NAME: 1, ABORT: 2, LIST: 3, INFO: 6, GO: 7, STRUCTURED_REPLY: 8 } as const;
export const REP = { ACK: 1, SERVER: 2, INFO: 3, ERR_UNSUP: 0x80000001 } as const;
export const CMD = { READ: 0, WRITE: 1, DISC: 2, FLUSH: 3, TRIM: 4, CACHE: 5, WRITE_ZEROES: 6 } as const;
export const ERRNO = { EPERM: 1, EIO: 5, ENOMEM: 12, EINVAL: 22, ENOSPC: 28, EOVERFLOW: 75, ENOTSUP: 95, ESHUTDOWN: 108 } as const;

const BUFFERED_BYTES_MAX = 64 * 1024 * 1024;

/** A socket with exact-length reads, each bounded by a timeout. */
export class RawConn {
  private buf: Buffer = Buffer.alloc(0);
  private closedFlag = false;
  private wake: (() => void) | null = null;

  private constructor(readonly socket: Socket) {
    socket.on('data', (d: Buffer) => {
      this.buf = this.buf.length === 0 ? d : Buffer.concat([this.buf, d]);
      if (this.buf.length > BUFFERED_BYTES_MAX) socket.destroy(new Error('test client buffer overflow'));
      this.kick();
    });
    socket.on('close', () => { this.closedFlag = true; this.kick(); });
    socket.on('error', () => { this.closedFlag = true; this.kick(); });
  }

  static connect(port: number, timeoutMs = 5_000): Promise<RawConn> {
    return new Promise((resolve, reject) => {
      const s = connect({ host: '127.0.0.1', port });
      const timer = setTimeout(() => { s.destroy(); reject(new Error(`connect 127.0.0.1:${port} timed out`)); }, timeoutMs);
      s.once('connect', () => { clearTimeout(timer); s.setNoDelay(true); resolve(new RawConn(s)); });
      s.once('error', (e) => { clearTimeout(timer); reject(e); });
    });
  }

  get closed(): boolean { return this.closedFlag; }

  private kick(): void {
    const w = this.wake;
    this.wake = null;
    w?.();
  }

  private waitSomething(timeoutMs: number): Promise<boolean> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => { this.wake = null; resolve(false); }, timeoutMs);
      this.wake = () => { clearTimeout(timer); resolve(true); };
    });
  }

  /** Exactly n bytes; rejects if the server closes first or nothing arrives in time. */
  async read(n: number, timeoutMs = 5_000): Promise<Buffer> {
    const deadline = Date.now() + timeoutMs;
    while (this.buf.length < n) {
      if (this.closedFlag) throw new Error(`connection closed after ${this.buf.length}/${n} bytes`);
      const left = deadline - Date.now();
      if (left <= 0 || !(await this.waitSomething(left))) throw new Error(`timed out waiting for ${n} bytes (have ${this.buf.length})`);
    }
    const out = this.buf.subarray(0, n);
    this.buf = this.buf.subarray(n);
    return Buffer.from(out);
  }

  write(data: Uint8Array): Promise<void> {
    return new Promise((resolve) => {
      if (this.closedFlag) { resolve(); return; }
      this.socket.write(data, () => resolve());
    });
  }

  /** True when the server closes the connection within timeoutMs (bytes it sends meanwhile are dropped). */
  async waitClosed(timeoutMs = 5_000): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    while (!this.closedFlag) {
      this.buf = Buffer.alloc(0);
      const left = deadline - Date.now();
      if (left <= 0 || !(await this.waitSomething(left))) return this.closedFlag;
    }
    return true;
  }

  /** Bytes received but not read yet. */
  pending(): number { return this.buf.length; }

  destroy(): void { this.socket.destroy(); }
}

/** Reads the fixed-newstyle greeting and answers with client flags. Returns the handshake flags. */
export async function handshake(c: RawConn, clientFlags = FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES): Promise<number> {
  const g = await c.read(18);
  if (g.readBigUInt64BE(0) !== NBDMAGIC || g.readBigUInt64BE(8) !== IHAVEOPT) throw new Error(`bad greeting ${g.toString('hex')}`);
  const flags = g.readUInt16BE(16);
  const cf = Buffer.alloc(4);
  cf.writeUInt32BE(clientFlags >>> 0);
  await c.write(cf);
  return flags;
}

export function optionHeader(option: number, lengthBytes: number, magic = IHAVEOPT): Buffer {
  const h = Buffer.alloc(16);
  h.writeBigUInt64BE(magic, 0);
  h.writeUInt32BE(option >>> 0, 8);
  h.writeUInt32BE(lengthBytes >>> 0, 12);
  return h;
}

export function option(optionCode: number, data: Uint8Array = new Uint8Array(0)): Buffer {
  return Buffer.concat([optionHeader(optionCode, data.length), data]);
}

export interface OptReply { readonly option: number; readonly type: number; readonly data: Buffer }

export async function readOptReply(c: RawConn, timeoutMs = 5_000): Promise<OptReply> {
  const h = await c.read(20, timeoutMs);
  if (h.readBigUInt64BE(0) !== REPLY_MAGIC_OPT) throw new Error(`bad option reply magic ${h.toString('hex')}`);
  const len = h.readUInt32BE(16);
  if (len > 1024 * 1024) throw new Error(`option reply of ${len} bytes`);
  return { option: h.readUInt32BE(8), type: h.readUInt32BE(12), data: await c.read(len, timeoutMs) };
}

/** NBD_OPT_GO for an export; returns size and transmission flags from NBD_INFO_EXPORT. */
export async function go(c: RawConn, exportName: string): Promise<{ sizeBytes: bigint; transmissionFlags: number }> {
  const name = Buffer.from(exportName, 'utf8');
  const data = Buffer.alloc(4 + name.length + 2);
  data.writeUInt32BE(name.length, 0);
  name.copy(data, 4);
  data.writeUInt16BE(0, 4 + name.length);
  await c.write(option(OPT.GO, data));
  let sizeBytes = -1n;
  let transmissionFlags = 0;
  for (let i = 0; i < 16; i++) {
    const r = await readOptReply(c);
    if (r.type === REP.ACK) break;
    if (r.type >= 0x80000000) throw new Error(`NBD_OPT_GO refused: reply type 0x${r.type.toString(16)} ${r.data.toString('utf8')}`);
    if (r.type === REP.INFO && r.data.length >= 12 && r.data.readUInt16BE(0) === 0) {
      sizeBytes = r.data.readBigUInt64BE(2);
      transmissionFlags = r.data.readUInt16BE(10);
    }
  }
  if (sizeBytes < 0n) throw new Error('NBD_OPT_GO: no NBD_INFO_EXPORT before ACK');
  return { sizeBytes, transmissionFlags };
}

export function request(type: number, cookie: bigint, offsetBytes: bigint, lengthBytes: number, flags = 0, magic = REQUEST_MAGIC): Buffer {
  const r = Buffer.alloc(28);
  r.writeUInt32BE(magic >>> 0, 0);
  r.writeUInt16BE(flags, 4);
  r.writeUInt16BE(type, 6);
  r.writeBigUInt64BE(cookie, 8);
  r.writeBigUInt64BE(offsetBytes, 16);
  r.writeUInt32BE(lengthBytes >>> 0, 24);
  return r;
}

export interface SimpleReply { readonly error: number; readonly cookie: bigint; readonly data: Buffer }

/** A simple reply (no structured replies negotiated); `dataBytes` follow only when error is 0. */
export async function readSimpleReply(c: RawConn, dataBytes = 0, timeoutMs = 10_000): Promise<SimpleReply> {
  const h = await c.read(16, timeoutMs);
  if (h.readUInt32BE(0) !== SIMPLE_REPLY_MAGIC) throw new Error(`bad simple reply magic ${h.toString('hex')}`);
  const error = h.readUInt32BE(4);
  const data = error === 0 && dataBytes > 0 ? await c.read(dataBytes, timeoutMs) : Buffer.alloc(0);
  return { error, cookie: h.readBigUInt64BE(8), data };
}

/** A connection in transmission phase on an export. */
export async function openExport(port: number, exportName: string): Promise<{ conn: RawConn; sizeBytes: bigint; transmissionFlags: number }> {
  const conn = await RawConn.connect(port);
  try {
    await handshake(conn);
    const info = await go(conn, exportName);
    return { conn, ...info };
  } catch (e) {
    conn.destroy();
    throw e;
  }
}
