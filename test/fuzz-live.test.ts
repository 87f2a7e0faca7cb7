// Live-server fuzz (issue 8): the real daemon gets batches of concurrent TCP connections that send
// random bytes, mutated transcripts of real clients' handshakes (nbdinfo and qemu-io, recorded
// through a proxy), and valid handshakes followed by random and mutated requests (unknown types
// and flags, huge lengths, offsets past the end, bad magic, payloads cut off by a disconnect).
// Afterwards the daemon must be alive, serve nbdinfo and qemu-io with the right data (a canary
// volume no fuzz connection touches, and fresh writes on the fuzzed one), have kept its RSS
// bounded throughout, and be back to its open-fd count. FUZZ_LIVE_RUNS = batches (CI: 60 of ≤ 8).
import fc from 'fast-check';
import { beforeAll, describe, expect, it } from 'vitest';
import { useDaemon } from './lib/fixture.js';
import { MiB } from './lib/files.js';
import { applyMutations, concatBytes, cuts, mutations, splitAt } from './lib/fuzz-bytes.js';
import { RecordingProxy, fdTargets, fuzzSession, openFds, rssBytes } from './lib/fuzz-net.js';
import { fuzzAsync, liveRunsFor, recordCases } from './lib/fuzz-run.js';
import { CMD, FLAG_FIXED_NEWSTYLE, FLAG_NO_ZEROES, OPT, REQUEST_MAGIC, option, request } from './lib/nbd-raw.js';
import { nbdinfo, qemuIo, qemuIoFailed } from './lib/peers.js';
import { explain, missingTools, sleep } from './lib/proc.js';

const missing = missingTools(['nbdinfo', 'qemu-io']);
const BATCHES_CI = 60;
const SESSIONS_PER_BATCH_MAX = 8;
/** RSS may grow this much over its level before the fuzz (the slab is allocated at start-up). */
const RSS_GROWTH_MAX_BYTES = 192 * MiB;
const PAYLOAD_SENT_MAX_BYTES = 64 * 1024;
const CANARY = ['write -P 0xc7 1M 2M', 'flush'];
const CANARY_CHECK = ['read -P 0xc7 1M 2M', 'read -P 0 0 1M'];

function goData(name: string): Buffer {
  const n = Buffer.from(name, 'utf8');
  const data = Buffer.alloc(4 + n.length + 2);
  data.writeUInt32BE(n.length, 0);
  n.copy(data, 4);
  return data;
}

function clientFlags(flags: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(flags >>> 0);
  return b;
}

/** Client flags and NBD_OPT_GO for `fz` (optionally after NBD_OPT_STRUCTURED_REPLY): transmission starts after these. */
function validPrefix(structured: boolean): Uint8Array {
  return concatBytes([clientFlags(FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES), ...(structured ? [option(OPT.STRUCTURED_REPLY)] : []), option(OPT.GO, goData('fz'))]);
}

interface RequestSpec {
  readonly type: number;
  readonly flags: number;
  readonly cookie: bigint;
  readonly offset: bigint;
  readonly length: number;
  readonly payload: 'full' | 'short' | 'none';
  readonly shortFraction: number;
  readonly badMagic: boolean;
}

/** Requests as bytes; a WRITE whose payload is cut short ends the stream there (a disconnect mid-payload). */
function encodeRequests(reqs: readonly RequestSpec[]): Uint8Array {
  const parts: Uint8Array[] = [];
  for (const r of reqs) {
    parts.push(request(r.type, r.cookie, r.offset, r.length, r.flags, r.badMagic ? 0x25609514 : REQUEST_MAGIC));
    if (r.type !== CMD.WRITE || r.payload === 'none') continue;
    const full = r.payload === 'full' && r.length <= PAYLOAD_SENT_MAX_BYTES;
    const bytes = full ? r.length : Math.min(PAYLOAD_SENT_MAX_BYTES, Math.floor(r.length * r.shortFraction));
    parts.push(new Uint8Array(bytes).fill(0x33));
    if (!full) break;
  }
  return concatBytes(parts);
}

/** Up to `n` values spread evenly over `values`, the last one included. */
function spread(values: readonly number[], n: number): number[] {
  if (values.length <= n) return [...values];
  return Array.from({ length: n }, (_, i) => values[Math.round((i * (values.length - 1)) / (n - 1))]!);
}

describe.skipIf(missing !== null)(`live fuzz of the NBD server${missing !== null ? ` (skipped: ${missing})` : ''}`, () => {
  const fx = useDaemon('fuzz-live', [{ name: 'f0', sizeBytes: 64 * MiB }, { name: 'c0', sizeBytes: 64 * MiB }, { name: 'c1', sizeBytes: 64 * MiB }],
    [{ name: 'canary', layout: 'raid1', elements: ['c0', 'c1'], boot: true }, { name: 'fz', layout: 'linear', elements: ['f0'] }]);
  /** What nbdinfo and qemu-io send (client → server), recorded through a proxy. */
  const transcripts: Uint8Array[] = [];
  let fzBytes = 0;
  let canaryBytes = 0;

  beforeAll(async () => {
    const w = await qemuIo(fx.daemon.uri('canary'), CANARY);
    expect(qemuIoFailed(w), explain(w)).toBe(false);
    const proxy = await RecordingProxy.start(fx.daemon.nbdPort);
    try {
      const info = await nbdinfo(`nbd://127.0.0.1:${proxy.port}/fz`);
      fzBytes = info.exports[0]?.['export-size'] ?? 0;
      const r = await qemuIo(`nbd://127.0.0.1:${proxy.port}/fz`, ['read 0 4096', 'write -P 0x11 8192 4096', 'flush']);
      expect(qemuIoFailed(r), explain(r)).toBe(false);
      const canary = await nbdinfo(fx.daemon.uri('canary'));
      canaryBytes = canary.exports[0]?.['export-size'] ?? 0;
    } finally {
      await proxy.close();
    }
    for (const t of proxy.transcripts) if (t.length > 0) transcripts.push(concatBytes(t));
    expect(transcripts.length, 'recorded the handshakes of nbdinfo and qemu-io').toBeGreaterThanOrEqual(2);
    expect(fzBytes).toBeGreaterThan(0);
  });

  it('random and mutated handshakes and requests: the daemon stays up, bounded, and serves correct data', async () => {
    const daemon = fx.daemon;
    const pid = daemon.child.pid!;
    await sleep(500);
    const rssBefore = rssBytes(pid);
    const fdsBefore = openFds(pid);
    const fdsBeforeList = fdTargets(pid);
    let rssPeak = rssBefore;
    const rssSamples: number[] = [];
    let sessions = 0;
    let sentBytes = 0;
    let receivedBytes = 0;
    let closedByServer = 0;
    const startedMs = performance.now();

    const size = BigInt(fzBytes);
    const offset = fc.oneof(
      fc.constantFrom(0n, 4096n, size - 4096n, size - 1n, size, size + 1n, 1n << 40n, (1n << 53n) - 1n, 1n << 53n, (1n << 64n) - 1n),
      fc.bigInt({ min: 0n, max: size + 65536n }),
    );
    const length = fc.oneof(fc.constantFrom(0, 1, 512, 4096, 65536, 65537, 32 * MiB, 32 * MiB + 1, 64 * MiB + 1, 0xffffffff), fc.nat({ max: 1 << 20 }));
    const requestSpec: fc.Arbitrary<RequestSpec> = fc.record({
      type: fc.oneof({ weight: 6, arbitrary: fc.constantFrom(CMD.READ, CMD.WRITE, CMD.FLUSH, CMD.TRIM, CMD.CACHE, CMD.WRITE_ZEROES, 7) }, { weight: 1, arbitrary: fc.nat({ max: 0xffff }) }),
      flags: fc.oneof({ weight: 4, arbitrary: fc.constantFrom(0, 1, 2, 4, 8, 16) }, { weight: 1, arbitrary: fc.nat({ max: 0xffff }) }),
      cookie: fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }), offset, length,
      payload: fc.constantFrom('full', 'full', 'full', 'short', 'none'), shortFraction: fc.double({ min: 0, max: 0.99, noNaN: true }),
      badMagic: fc.nat({ max: 30 }).map((n) => n === 0),
    });
    const transcript = fc.constantFrom(...transcripts, concatBytes([validPrefix(true), request(CMD.READ, 1n, 0n, 4096), request(CMD.DISC, 2n, 0n, 0)]));
    const stream = fc.oneof(
      { weight: 1, arbitrary: fc.uint8Array({ maxLength: 2048 }) },
      { weight: 1, arbitrary: fc.tuple(fc.constantFrom(0, 1, 2, 3), fc.uint8Array({ maxLength: 512 })).map(([f, b]) => concatBytes([clientFlags(f), b])) },
      { weight: 4, arbitrary: fc.tuple(transcript, mutations(6)).map(([t, m]) => applyMutations(t, m)) },
      {
        weight: 6,
        arbitrary: fc.tuple(fc.boolean(), fc.array(requestSpec, { minLength: 1, maxLength: 12 }), fc.option(mutations(3), { freq: 3 }), fc.boolean())
          .map(([structured, reqs, muts, disc]) => {
            const body = concatBytes([encodeRequests(reqs), ...(disc ? [request(CMD.DISC, 9n, 0n, 0)] : [])]);
            return concatBytes([validPrefix(structured), muts === null ? body : applyMutations(body, muts)]);
          }),
      },
    );
    const session = fc.record({ bytes: stream, cuts: cuts(6), lingerMs: fc.constantFrom(0, 20, 60, 150) });

    await fuzzAsync('live NBD batches', fc.asyncProperty(fc.array(session, { minLength: 1, maxLength: SESSIONS_PER_BATCH_MAX }), async (batch) => {
      const results = await Promise.all(batch.map((s) => fuzzSession(daemon.nbdPort, splitAt(s.bytes, s.cuts), s.lingerMs)));
      receivedBytes += results.reduce((n, r) => n + r.receivedBytes, 0);
      closedByServer += results.filter((r) => r.closedByServer).length;
      sessions += batch.length;
      sentBytes += batch.reduce((n, s) => n + s.bytes.length, 0);
      expect(daemon.alive, daemon.logs()).toBe(true);
      rssSamples.push(rssBytes(pid));
      rssPeak = Math.max(rssPeak, rssSamples[rssSamples.length - 1]!);
      expect(rssPeak - rssBefore, `RSS grew from ${rssBefore} to ${rssPeak} bytes`).toBeLessThan(RSS_GROWTH_MAX_BYTES);
    }), BATCHES_CI, { numRuns: liveRunsFor(BATCHES_CI), endOnFailure: true });
    recordCases('live NBD connections', sessions, performance.now() - startedMs);
    console.log(`fuzz-live: ${sessions} connections (${closedByServer} closed by the server), ${sentBytes} bytes sent, ${receivedBytes} received; `
      + `RSS ${rssBefore} → peak ${rssPeak} bytes; RSS MiB over the run: ${spread(rssSamples, 12).map((b) => Math.round(b / MiB)).join(' ')}`);
    if (process.env.FUZZ_LIVE_LOG === '1') console.log(daemon.logs());

    // Every fuzz connection is closed on our side: the daemon's sockets come back to where they
    // were, and nothing else is left open but element images (opened lazily by the fast lane).
    const sockets = (list: readonly string[]): number => list.filter((t) => t.includes('socket:')).length;
    let after = fdTargets(pid);
    for (let i = 0; i < 100 && sockets(after) > sockets(fdsBeforeList); i++) {
      await sleep(100);
      after = fdTargets(pid);
    }
    const extra = after.filter((t) => !fdsBeforeList.includes(t) && !t.includes(fx.dir));
    expect(sockets(after), `sockets before the fuzz ${sockets(fdsBeforeList)}, after ${sockets(after)}`).toBeLessThanOrEqual(sockets(fdsBeforeList));
    expect(extra, `fds opened during the fuzz and still open (${fdsBefore} before, ${after.length} after)`).toEqual([]);

    // A real client still gets the right answers: sizes, the untouched canary, and fresh data.
    expect(daemon.alive, daemon.logs()).toBe(true);
    expect((await nbdinfo(daemon.uri('fz'))).exports[0]?.['export-size']).toBe(fzBytes);
    expect((await nbdinfo(daemon.uri('canary'))).exports[0]?.['export-size']).toBe(canaryBytes);
    const canary = await qemuIo(daemon.uri('canary'), CANARY_CHECK);
    expect(qemuIoFailed(canary), explain(canary)).toBe(false);
    const fresh = await qemuIo(daemon.uri('fz'), ['write -P 0x5e 4M 1M', 'flush', 'read -P 0x5e 4M 1M']);
    expect(qemuIoFailed(fresh), explain(fresh)).toBe(false);
    // Nothing thrown inside the daemon reached its log as a JavaScript error.
    expect(`${daemon.stdout}\n${daemon.stderr}`).not.toMatch(/TypeError|ReferenceError|uncaught|unhandled|at [\w.<>]+ \(/i);
  }, liveRunsFor(BATCHES_CI) * 5_000 + 60_000);
});
