// Request bounds of the CLI's API client against an in-process HTTP server that answers late.
// Quick calls (status, lists) give up after 10 s; element add, volume create and the other
// operations that open elements wait up to 120 s, since taking an rbd image's lock from a dead
// holder waits out its lease (15 s) plus fencing; `--timeout SEC` sets the bound for a command.
// A timeout says that the daemon keeps working and to check `onestack status`.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ApiClient, SLOW_TIMEOUT_MS_DEFAULT, TIMEOUT_MS_DEFAULT, TIMEOUT_MS_MAX } from '../src/api/client.js';
import { run } from '../src/cli.js';
import { captureIo } from './helpers.js';

interface Seen { method: string; path: string; body: string; atMs: number }

const ELEMENT = { name: 'r0', kind: 'nbd', uri: 'rbd://rbd/img', state: 'active', sizeBytes: 60 * 1024 * 1024, volume: null, role: null, errors: 0 };
const VOLUME = { name: 'v', layout: 'raid1', sizeBytes: 60 * 1024 * 1024, state: 'optimal', elements: [{ name: 'l0' }, { name: 'r0' }] };

describe('API client request bounds', () => {
  let server: Server;
  let api = '';
  /** Milliseconds to wait before answering, by "METHOD /path". */
  const delays = new Map<string, number>();
  const seen: Seen[] = [];
  const env = { ONESTACK_TOKEN: 't0ken' };

  const answer = (req: IncomingMessage, res: ServerResponse, body: string): void => {
    const path = (req.url ?? '').replace(/^\/api\/v1/, '');
    const key = `${req.method ?? ''} ${path}`;
    seen.push({ method: req.method ?? '', path, body, atMs: Date.now() });
    const reply = key === 'POST /elements' ? ELEMENT : key === 'POST /volumes' ? VOLUME : { volumes: [], elements: [], pools: {}, dataDir: '/x' };
    const timer = setTimeout(() => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify(reply));
    }, delays.get(key) ?? 0);
    res.once('close', () => clearTimeout(timer));
  };

  beforeAll(async () => {
    server = createServer((req, res) => {
      let body = '';
      req.setEncoding('utf8').on('data', (s: string) => { body += s; }).once('end', () => answer(req, res, body));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    api = `127.0.0.1:${(server.address() as AddressInfo).port}`;
  });

  afterAll(async () => {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  });

  it('bounds quick calls at 10 s and the operations that open elements at 120 s; --timeout sets both, at most 300 s', () => {
    expect([TIMEOUT_MS_DEFAULT, SLOW_TIMEOUT_MS_DEFAULT, TIMEOUT_MS_MAX]).toEqual([10_000, 120_000, 300_000]);
    const host = { host: '127.0.0.1', port: 1 };
    const plain = new ApiClient({ api: host });
    expect([plain.timeoutMsFor('quick'), plain.timeoutMsFor('slow')]).toEqual([10_000, 120_000]);
    const set = new ApiClient({ api: host, timeoutMs: 45_000 });
    expect([set.timeoutMsFor('quick'), set.timeoutMsFor('slow')]).toEqual([45_000, 45_000]);
    expect(new ApiClient({ api: host, timeoutMs: 10_000_000 }).timeoutMsFor('slow')).toBe(300_000);
  });

  it('element add answered after 11 s (a lease being waited out) succeeds with the default bounds', async () => {
    delays.set('POST /elements', 11_000);
    const io = captureIo(env);
    const started = Date.now();
    const code = await run(['element', 'add', 'rbd://rbd/img?conf=/etc/ceph/ceph.conf', '--name', 'r0', '--api', api], io);
    expect(code, io.err()).toBe(0);
    expect(Date.now() - started).toBeGreaterThanOrEqual(11_000);
    expect(io.out()).toBe('added element r0: nbd, 60.00 MiB, active, rbd://rbd/img\n');
    expect(JSON.parse(seen.at(-1)?.body ?? '{}')).toEqual({ uri: 'rbd://rbd/img?conf=/etc/ceph/ceph.conf', name: 'r0' });
  }, 30_000);

  it('volume create past --timeout: exit 1, says the daemon keeps working and to check onestack status', async () => {
    delays.set('POST /volumes', 3000);
    const io = captureIo(env);
    const before = seen.length;
    const started = Date.now();
    const code = await run(['volume', 'create', 'v', '--layout', 'raid1', '--element', 'l0', 'r0', '--timeout', '1', '--api', api], io);
    const tookMs = Date.now() - started;
    expect(code).toBe(1);
    expect(tookMs).toBeGreaterThanOrEqual(900);
    expect(tookMs).toBeLessThan(2900);
    expect(io.out()).toBe('');
    expect(io.err()).toBe(`onestack: error: the daemon at ${api} did not answer within 1 s; the daemon keeps working on the request `
      + '(taking an rbd image\'s lock from a dead holder waits out its lease first) (POST timeout)\n'
      + 'onestack: hint: check the outcome with onestack status before trying again; give it longer with --timeout SEC (at most 300)\n');
    // The request did reach the daemon: giving up on the client side does not withdraw it.
    expect(seen.slice(before).map((s) => `${s.method} ${s.path}`)).toEqual(['POST /volumes']);
  });

  it('status past --timeout: the quick-call hint; answered in time it prints', async () => {
    delays.set('GET /status', 2500);
    const io = captureIo(env);
    expect(await run(['status', '--timeout', '1', '--api', api], io)).toBe(1);
    expect(io.err()).toContain(`did not answer within 1 s (GET timeout)`);
    expect(io.err()).toContain('hint: is it overloaded or stuck? check its log (stderr of onestack serve); wait longer with --timeout SEC');
    delays.set('GET /status', 200);
    const ok = captureIo(env);
    expect(await run(['status', '--json', '--timeout', '2', '--api', api], ok), ok.err()).toBe(0);
    expect(JSON.parse(ok.out())).toMatchObject({ dataDir: '/x' });
  });

  it('refuses a --timeout that is not 1..300 seconds as a usage error', async () => {
    for (const bad of ['0', '301', '1.5', 'ten']) {
      const io = captureIo(env);
      expect(await run(['element', 'add', 'file:/x.img', '--timeout', bad, '--api', api], io)).toBe(2);
      expect(io.err()).toContain(`--timeout wants a whole number from 1 to 300, got "${bad}"`);
    }
  });
});
