// Raw TCP helpers of the live fuzz (test/fuzz-live.test.ts): a session that writes given bytes in
// pieces and drains whatever comes back (bounded in bytes and time), a recording proxy that
// captures what a real client sends, and the daemon's RSS and open fds from /proc.
import { readFileSync, readdirSync, readlinkSync } from 'node:fs';
import { type AddressInfo, type Server, type Socket, connect, createServer } from 'node:net';

export interface SessionResult {
  readonly receivedBytes: number;
  /** The server closed (or reset) the connection before we did. */
  readonly closedByServer: boolean;
}

const RECEIVE_BYTES_MAX = 256 * 1024 * 1024;

/**
 * Connects, writes `pieces` one after another (each awaited, so a piece boundary is a TCP send),
 * then waits up to `lingerMs` for the server to answer or close, and destroys the socket.
 */
export function fuzzSession(port: number, pieces: readonly Uint8Array[], lingerMs: number, timeoutMs = 10_000): Promise<SessionResult> {
  return new Promise((resolve) => {
    let receivedBytes = 0;
    let closedByServer = false;
    let done = false;
    const socket: Socket = connect({ host: '127.0.0.1', port });
    const finish = (): void => {
      if (done) return;
      done = true;
      clearTimeout(deadline);
      socket.destroy();
      resolve({ receivedBytes, closedByServer });
    };
    const deadline = setTimeout(finish, timeoutMs);
    socket.setNoDelay(true);
    socket.on('data', (d: Buffer) => {
      receivedBytes += d.length;
      if (receivedBytes > RECEIVE_BYTES_MAX) finish();
    });
    socket.on('error', () => { closedByServer = true; finish(); });
    socket.on('close', () => { closedByServer = !done; finish(); });
    socket.once('connect', () => {
      void (async () => {
        for (const piece of pieces) {
          if (done || socket.destroyed) return;
          await new Promise<void>((r) => socket.write(piece, () => r()));
        }
        setTimeout(finish, lingerMs);
      })();
    });
  });
}

/** A TCP proxy in front of `port` that records what each client sends (client → server bytes). */
export class RecordingProxy {
  readonly transcripts: Buffer[][] = [];
  private readonly sockets = new Set<Socket>();

  private constructor(private readonly server: Server) {}

  static async start(port: number): Promise<RecordingProxy> {
    const proxy: RecordingProxy = new RecordingProxy(createServer((client) => {
      const chunks: Buffer[] = [];
      proxy.transcripts.push(chunks);
      const upstream = connect({ host: '127.0.0.1', port });
      for (const s of [client, upstream]) {
        proxy.sockets.add(s);
        s.on('close', () => proxy.sockets.delete(s));
        s.on('error', () => { client.destroy(); upstream.destroy(); });
      }
      client.on('data', (d: Buffer) => { chunks.push(Buffer.from(d)); upstream.write(d); });
      upstream.on('data', (d: Buffer) => client.write(d));
      client.on('end', () => upstream.end());
      upstream.on('end', () => client.end());
    }));
    await new Promise<void>((resolve) => proxy.server.listen(0, '127.0.0.1', resolve));
    return proxy;
  }

  get port(): number {
    return (this.server.address() as AddressInfo).port;
  }

  close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}

/** Resident set size of a process, from /proc/PID/status. */
export function rssBytes(pid: number): number {
  const m = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (m === null) throw new Error(`no VmRSS for pid ${pid}`);
  return Number(m[1]) * 1024;
}

/** Open file descriptors of a process, from /proc/PID/fd. */
export function openFds(pid: number): number {
  return readdirSync(`/proc/${pid}/fd`).length;
}

/** What each open fd of a process points at ("socket:[123]", a path, "anon_inode:[eventfd]"...). */
export function fdTargets(pid: number): string[] {
  const out: string[] = [];
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    try {
      out.push(`${fd} → ${readlinkSync(`/proc/${pid}/fd/${fd}`)}`);
    } catch {
      // closed between readdir and readlink
    }
  }
  return out;
}
