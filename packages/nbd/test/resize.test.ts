// The RESIZE extension and size refresh: the pure codec (request, checks, flag) with a fuzz of the
// check, the server advertising NBD_FLAG_SEND_RESIZE only with a backend hook and serving up to
// the new end on the same connection, our client's resize() and refreshSize() (a side handshake,
// also against nbdkit and qemu-nbd, servers we did not write), and watchSizeMs.
import { once } from 'node:events';
import * as fs from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  Cmd, CmdFlag, Errno, NbdClient, NbdError, TransmissionFlag, canResize, checkRequest, checkResize, createMemoryExport, createMemoryProvider,
  createNbdServer, decodeRequest, encodeRequest, resizeRequest, transmissionFlagsFor, type NbdExport,
} from '../src/index.js';
import { fuzz } from '../../../test/lib/fuzz-run.js';
import { freePort, rejectsWith, startNbdkit, useClientScope, waitListening } from './client-helpers.js';
import { spawnTracked, stopChild } from '../../../test/lib/proc.js';

const MiB = 1024 * 1024;
const scope = useClientScope('onestack-resize-');

/** A memory export of `capacityBytes` that shows `sizeBytes` of it and grows on request (ENOSPC beyond). */
function growable(name: string, sizeBytes: number, capacityBytes: number): NbdExport & { resizes: number[] } {
  const mem = createMemoryExport(name, capacityBytes);
  let size = sizeBytes;
  const resizes: number[] = [];
  return Object.create(mem, {
    sizeBytes: { get: () => size, enumerable: true },
    resizes: { value: resizes },
    resize: {
      value: async (n: number): Promise<void> => {
        if (n > capacityBytes) throw new NbdError('ENOSPC', `${n} bytes: at most ${capacityBytes}`);
        resizes.push(n);
        size = n;
      },
    },
  }) as NbdExport & { resizes: number[] };
}

async function serveExports(exports: NbdExport[]): Promise<{ port: number }> {
  const server = createNbdServer(createMemoryProvider(exports as Parameters<typeof createMemoryProvider>[0]));
  const { port } = await server.listen('127.0.0.1', 0);
  scope.fakes.push({ close: () => server.close() });
  return { port };
}

async function client(port: number, exportName: string, extra: { watchSizeMs?: number; log?: (line: string) => void } = {}): Promise<NbdClient> {
  const c = await NbdClient.connect({ host: '127.0.0.1', port, exportName, timeoutMs: 5000, ...extra });
  scope.clients.push(c);
  return c;
}

describe('RESIZE codec', () => {
  it('the request carries the size in the offset field, length 0, no flags; it round-trips', () => {
    const req = resizeRequest(3 * MiB, 7, 9);
    expect(req).toEqual({ flags: 0, type: Cmd.RESIZE, cookieHi: 7, cookieLo: 9, offsetBytes: 3 * MiB, lengthBytes: 0 });
    const bytes = new Uint8Array(28);
    encodeRequest(bytes, 0, req);
    const d = decodeRequest(bytes);
    expect(d.kind === 'value' && d.value).toEqual(req);
    expect(() => resizeRequest(-1, 0, 0)).toThrow(RangeError);
    expect(Cmd.RESIZE).toBe(8);
    expect(TransmissionFlag.SEND_RESIZE).toBe(1 << 9);
  });

  it('the server check: offered, writable, length 0, no flags, not smaller', () => {
    const t = { sizeBytes: MiB, readOnly: false, canResize: true };
    expect(checkResize(resizeRequest(2 * MiB, 0, 0), t)).toBe(0);
    expect(checkResize(resizeRequest(MiB, 0, 0), t)).toBe(0); // the same size: a no-op for the backend
    expect(checkResize(resizeRequest(MiB - 4096, 0, 0), t)).toBe(Errno.EINVAL);
    expect(checkResize({ ...resizeRequest(2 * MiB, 0, 0), lengthBytes: 1 }, t)).toBe(Errno.EINVAL);
    expect(checkResize({ ...resizeRequest(2 * MiB, 0, 0), flags: CmdFlag.FUA }, t)).toBe(Errno.EINVAL);
    expect(checkResize(resizeRequest(2 * MiB, 0, 0), { ...t, readOnly: true })).toBe(Errno.EPERM);
    expect(checkResize(resizeRequest(2 * MiB, 0, 0), { ...t, canResize: false })).toBe(Errno.EINVAL);
    expect(canResize(TransmissionFlag.HAS_FLAGS | TransmissionFlag.SEND_RESIZE)).toBe(true);
    expect(canResize(TransmissionFlag.SEND_RESIZE)).toBe(false); // flags without HAS_FLAGS mean nothing
  });

  it('fuzz: checkResize never throws, answers 0 or a known errno, and 0 only for a well-formed growth', () => {
    const u53 = fc.oneof(fc.constantFrom(0, 4096, 2 ** 32, Number.MAX_SAFE_INTEGER), fc.nat({ max: Number.MAX_SAFE_INTEGER }));
    fuzz('nbd checkResize', fc.property(fc.nat({ max: 0xffff }), u53, fc.nat({ max: 0xffffffff }), u53, fc.boolean(), fc.boolean(), (flags, off, len, size, ro, can) => {
      const req = { flags, type: Cmd.RESIZE, cookieHi: 0, cookieLo: 0, offsetBytes: off, lengthBytes: len };
      const errno = checkResize(req, { sizeBytes: size, readOnly: ro, canResize: can });
      expect([0, Errno.EINVAL, Errno.EPERM]).toContain(errno);
      expect(errno === 0).toBe(can && !ro && flags === 0 && len === 0 && off >= size);
    }));
  });

  it('fuzz: any size round-trips through the request header', () => {
    fuzz('nbd resize request round trip', fc.property(fc.nat({ max: Number.MAX_SAFE_INTEGER }), fc.nat({ max: 0xffffffff }), (size, cookie) => {
      const bytes = new Uint8Array(28);
      encodeRequest(bytes, 0, resizeRequest(size, cookie, cookie));
      const d = decodeRequest(bytes);
      expect(d.kind === 'value' && d.value.offsetBytes).toBe(size);
    }));
  });

  it('the flag is advertised only with the hook and only on a writable export; checkRequest follows', () => {
    const plain = createMemoryExport('p', MiB);
    const grow = growable('g', MiB, 4 * MiB);
    expect(transmissionFlagsFor(plain, true) & TransmissionFlag.SEND_RESIZE).toBe(0);
    expect(transmissionFlagsFor(grow, true) & TransmissionFlag.SEND_RESIZE).toBe(TransmissionFlag.SEND_RESIZE);
    expect(transmissionFlagsFor(Object.create(grow, { readOnly: { value: true } }) as NbdExport, true) & TransmissionFlag.SEND_RESIZE).toBe(0);
    expect(checkRequest(resizeRequest(2 * MiB, 0, 0), plain, true)).toBe(Errno.EINVAL);
    expect(checkRequest(resizeRequest(2 * MiB, 0, 0), grow, true)).toBe(0);
  });
});

describe('RESIZE and refreshSize over a socket', () => {
  it('resize() grows the export; the same connection then serves up to the new end; refusals come back as errors', async () => {
    const grow = growable('g', MiB, 4 * MiB);
    const { port } = await serveExports([grow]);
    const c = await client(port, 'g');
    expect(c.info.canResize).toBe(true);
    await rejectsWith(c.write(MiB, new Uint8Array(4096)), ['EINVAL']); // past the end, checked locally
    const seen = once(c.events, 'size');
    await c.resize(3 * MiB);
    expect(await seen).toEqual([3 * MiB, MiB]);
    expect(c.sizeBytes).toBe(3 * MiB);
    const data = new Uint8Array(64 * 1024).fill(0x3c);
    await c.write(3 * MiB - data.length, data);
    const back = new Uint8Array(data.length);
    await c.read(3 * MiB - data.length, back);
    expect(back).toEqual(data);
    await rejectsWith(c.resize(2 * MiB), ['EINVAL']); // shrinking
    await rejectsWith(c.resize(8 * MiB), ['ENOSPC']); // beyond the backend's room
    expect(grow.resizes).toEqual([3 * MiB]);
    expect(c.sizeBytes).toBe(3 * MiB);
  });

  it('a client of an export without the hook is told ENOTSUP locally', async () => {
    const { port } = await serveExports([createMemoryExport('p', MiB)]);
    const c = await client(port, 'p');
    expect(c.info.canResize).toBe(false);
    await rejectsWith(c.resize(2 * MiB), ['ENOTSUP']);
  });

  it('refreshSize() learns a grow made by another client without reconnecting; watchSizeMs does it by itself', async () => {
    const grow = growable('g', MiB, 8 * MiB);
    const { port } = await serveExports([grow]);
    const a = await client(port, 'g');
    const lines: string[] = [];
    const b = await client(port, 'g', { log: (line) => lines.push(line) });
    const w = await client(port, 'g', { watchSizeMs: 100 });
    await rejectsWith(client(port, 'g', { watchSizeMs: 5 }), ['EINVAL']);
    const watched = once(w.events, 'size');
    await a.resize(2 * MiB);
    expect(b.sizeBytes).toBe(MiB);
    expect(await b.refreshSize()).toBe(2 * MiB);
    expect(b.sizeBytes).toBe(2 * MiB);
    await b.write(2 * MiB - 4096, new Uint8Array(4096).fill(1));
    expect(await watched).toEqual([2 * MiB, MiB]);
    // No connection of b's was lost or re-established: only the size line was logged.
    expect(lines).toEqual([`the export's size changed from ${MiB} to ${2 * MiB} bytes`]);
  });

  it('refreshSize() against servers we did not write: nbdkit (file grown on disk) and qemu-nbd', async () => {
    const file = join(scope.dir, 'grow.img');
    fs.writeFileSync(file, '');
    fs.truncateSync(file, MiB);
    const kit = await startNbdkit(['file', file]);
    scope.peers.push(kit);
    const c = await NbdClient.connect({ host: '127.0.0.1', port: kit.port, exportName: '', timeoutMs: 5000 });
    scope.clients.push(c);
    expect(c.sizeBytes).toBe(MiB);
    fs.truncateSync(file, 3 * MiB);
    expect(await c.refreshSize()).toBe(3 * MiB); // nbdkit's file plugin sizes each new connection
    // nbdkit offers no RESIZE and sizes each connection at its handshake: the client re-handshakes
    // (DISC, reconnect) so that requests to the new end are served.
    const data = new Uint8Array(8192).fill(0x5d);
    await c.write(3 * MiB - data.length, data);
    const back = new Uint8Array(data.length);
    await c.read(3 * MiB - data.length, back);
    expect(back).toEqual(data);
    // A request past the end as known asks for the size by itself (as the engine's remote legs need).
    fs.truncateSync(file, 4 * MiB);
    await c.write(4 * MiB - data.length, data);
    expect(c.sizeBytes).toBe(4 * MiB);
    expect(fs.readFileSync(file).subarray(4 * MiB - data.length)).toEqual(Buffer.from(data));
    await rejectsWith(c.write(4 * MiB, data), ['EINVAL']); // still past the end: the first error stands
    // qemu-nbd serves one client at a time unless told otherwise (--shared=1): the side
    // handshake needs a second slot (-e 2), else it waits and times out (docs/nbd.md).
    const qport = await freePort();
    const q = spawnTracked('qemu-nbd', ['-f', 'raw', '-x', 'q', '-p', String(qport), '-b', '127.0.0.1', '-t', '-e', '2', file]);
    try {
      await waitListening({ port: qport }, q);
      const d = await NbdClient.connect({ host: '127.0.0.1', port: qport, exportName: 'q', timeoutMs: 5000 });
      scope.clients.push(d);
      expect(d.info.canResize).toBe(false);
      // qemu-nbd sizes its export once at start: the side handshake is answered (INFO, ABORT) with that size.
      expect(await d.refreshSize()).toBe(4 * MiB);
      await d.read(0, back);
      await d.close();
    } finally {
      await stopChild(q, 5000, 'SIGKILL');
    }
  });
});
