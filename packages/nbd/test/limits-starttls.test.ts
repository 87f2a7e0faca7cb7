// FORCEDTLS accepts nothing before STARTTLS (issue 8, item 5): every option code a client can
// send — the ones we implement, the ones we do not, malformed ones — gets NBD_REP_ERR_TLS_REQD
// and nothing else (no export list, no export info); EXPORT_NAME, which cannot carry an error,
// closes; a client that skips haggling and sends transmission requests is closed; the backend
// is never touched. ABORT alone is answered. tls.test.ts covers the real clients and the upgrade.

import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeTestPki, type TestPki } from '../../../test/lib/certs.js';
import {
  Cmd, Info, type NbdExport, type NbdServer, Opt, Rep, Size, createMemoryExport, createMemoryProvider, createNbdServer,
  decodeOptionReply, encodeClientFlags, encodeInfoOption, encodeOption, encodeRequest,
} from '../src/index.js';
import { RawClient, run } from './helpers.js';

let dir: string;
let pki: TestPki;
let server: NbdServer;
let port: number;
const logs: string[] = [];
/** Every backend call: must stay empty while no client has upgraded. */
const backendCalls: string[] = [];

function countingExport(): NbdExport {
  const mem = createMemoryExport('disk0', 1 << 20);
  const note = <T>(what: string, f: () => T): T => { backendCalls.push(what); return f(); };
  return {
    ...mem,
    read: (o, l) => note('read', () => mem.read(o, l)),
    acquireWriteBuffer: (l) => note('acquireWriteBuffer', () => mem.acquireWriteBuffer(l)),
    write: (o, b, f) => note('write', () => mem.write(o, b, f)),
    flush: () => note('flush', () => mem.flush()),
    trim: (o, l, f) => note('trim', () => mem.trim(o, l, f)),
    writeZeroes: (o, l, f) => note('writeZeroes', () => mem.writeZeroes(o, l, f)),
    cache: (o, l) => note('cache', () => mem.cache(o, l)),
  };
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'onestack-nbd-starttls-'));
  pki = await makeTestPki(join(dir, 'pki'));
  const exp = countingExport();
  // list() and open() are counted too: before STARTTLS nobody may learn what is exported.
  const provider = createMemoryProvider([exp]);
  server = createNbdServer({
    list: () => { backendCalls.push('list'); return provider.list(); },
    open: (name) => { backendCalls.push(`open ${name}`); return provider.open(name); },
  }, {
    tls: { cert: readFileSync(pki.serverCert), key: readFileSync(pki.serverKey), require: true },
    log: (level, msg) => logs.push(`${level} ${msg}`),
  });
  ({ port } = await server.listen('127.0.0.1', 0));
});

afterAll(async () => {
  await server.close();
  rmSync(dir, { recursive: true, force: true });
});

async function readOptionReply(c: RawClient): Promise<{ option: number; replyType: number }> {
  const header = await c.read(Size.OPTION_REPLY_HEADER);
  const data = await c.read(new DataView(header.buffer).getUint32(16));
  const d = decodeOptionReply(new Uint8Array([...header, ...data]), 1 << 20);
  if (d.kind !== 'value') throw new Error('bad option reply');
  return { option: d.value.option, replyType: d.value.replyType };
}

async function plaintextClient(): Promise<RawClient> {
  const c = await RawClient.open(port);
  await c.read(Size.GREETING);
  c.write(encodeClientFlags());
  return c;
}

const name = (text: string): Uint8Array => new TextEncoder().encode(text);
const OPT_EXTENDED_HEADERS = 11;
const OPT_PEEK_EXPORT = 4; // withdrawn from proto.md, still a number a client may send

/** Every option but STARTTLS, ABORT and EXPORT_NAME, well-formed and malformed, with the code its reply must carry. */
const REFUSED: readonly (readonly [string, number, Uint8Array])[] = [
  ['LIST', Opt.LIST, encodeOption(Opt.LIST)],
  ['LIST with data (malformed)', Opt.LIST, encodeOption(Opt.LIST, name('junk'))],
  ['INFO', Opt.INFO, encodeInfoOption(Opt.INFO, 'disk0', [Info.BLOCK_SIZE, Info.NAME, Info.DESCRIPTION])],
  ['INFO of an unknown export', Opt.INFO, encodeInfoOption(Opt.INFO, 'nope', [])],
  ['GO', Opt.GO, encodeInfoOption(Opt.GO, 'disk0', [Info.BLOCK_SIZE])],
  ['GO of the default export', Opt.GO, encodeInfoOption(Opt.GO, '', [])],
  ['GO truncated (malformed)', Opt.GO, encodeOption(Opt.GO, new Uint8Array(3))],
  ['STRUCTURED_REPLY', Opt.STRUCTURED_REPLY, encodeOption(Opt.STRUCTURED_REPLY)],
  ['LIST_META_CONTEXT', Opt.LIST_META_CONTEXT, encodeOption(Opt.LIST_META_CONTEXT, new Uint8Array(8))],
  ['SET_META_CONTEXT', Opt.SET_META_CONTEXT, encodeOption(Opt.SET_META_CONTEXT, new Uint8Array(8))],
  ['EXTENDED_HEADERS', OPT_EXTENDED_HEADERS, encodeOption(OPT_EXTENDED_HEADERS)],
  ['PEEK_EXPORT', OPT_PEEK_EXPORT, encodeOption(OPT_PEEK_EXPORT)],
  ['option 0', 0, encodeOption(0)],
  ['unknown option 0x1234', 0x1234, encodeOption(0x1234, new Uint8Array(10))],
  ['unknown option 0xffffffff', 0xffffffff, encodeOption(0xffffffff)],
];

describe('FORCEDTLS before STARTTLS', () => {
  it('every option code gets ERR_TLS_REQD and nothing else, on one connection; the backend is never asked', async () => {
    const c = await plaintextClient();
    for (const [what, option, bytes] of REFUSED) {
      c.write(bytes);
      expect(await readOptionReply(c), what).toEqual({ option, replyType: Rep.ERR_TLS_REQD });
    }
    // Still haggling (not closed), and the upgrade is still offered afterwards.
    c.write(encodeOption(Opt.STARTTLS));
    expect(await readOptionReply(c)).toEqual({ option: Opt.STARTTLS, replyType: Rep.ACK });
    c.destroy();
    expect(backendCalls).toEqual([]);
  });

  it('EXPORT_NAME (known, unknown, empty) closes without a byte of reply', async () => {
    for (const exportName of ['disk0', 'nope', '']) {
      const c = await plaintextClient();
      c.write(encodeOption(Opt.EXPORT_NAME, name(exportName)));
      expect(await c.waitClosed(), exportName).toBe(true);
      await expect(c.read(1, 50)).rejects.toThrow(/closed after 0 of 1 bytes/);
    }
    expect(logs.filter((l) => l.includes('NBD_OPT_EXPORT_NAME before NBD_OPT_STARTTLS'))).toHaveLength(3);
    expect(backendCalls).toEqual([]);
  });

  it('transmission requests instead of haggling close the connection; the backend is never asked', async () => {
    for (const type of [Cmd.READ, Cmd.WRITE, Cmd.FLUSH, Cmd.TRIM, Cmd.WRITE_ZEROES, Cmd.DISC]) {
      const c = await plaintextClient();
      const request = new Uint8Array(Size.REQUEST);
      encodeRequest(request, 0, { type, flags: 0, cookieHi: 0, cookieLo: 1, offsetBytes: 0, lengthBytes: 512 });
      c.write(request);
      if (type === Cmd.WRITE) c.write(new Uint8Array(512));
      expect(await c.waitClosed(), `command ${type}`).toBe(true);
    }
    expect(backendCalls).toEqual([]);
  });

  it('ABORT is answered with ACK, then the connection closes', async () => {
    const c = await plaintextClient();
    c.write(encodeOption(Opt.ABORT));
    expect(await readOptionReply(c)).toEqual({ option: Opt.ABORT, replyType: Rep.ACK });
    expect(await c.waitClosed()).toBe(true);
    expect(backendCalls).toEqual([]);
  });

  it('python libnbd without TLS cannot list, get info or connect', async () => {
    const script = `
import nbd
uri = "nbd://127.0.0.1:${port}/disk0"
for what in ("connect", "list", "info"):
    h = nbd.NBD()
    h.set_tls(nbd.TLS_DISABLE)
    try:
        if what != "connect":
            h.set_opt_mode(True)
        h.connect_uri(uri)
        if what == "list":
            print(what, "got", h.opt_list(lambda name, description: 0))
        elif what == "info":
            h.opt_info()
            print(what, "got", h.get_size())
        else:
            print(what, "got", h.get_size())
    except nbd.Error as e:
        print(what, "refused")
`;
    const r = await run('/usr/bin/python3', ['-c', script], 30_000);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout.trim().split('\n')).toEqual(['connect refused', 'list refused', 'info refused']);
    expect(backendCalls).toEqual([]);
  });
});
