// Acceptance (issue 9): a 4 GiB raid1 volume over sparse images holding 64 MiB of data at
// scattered offsets is copied out with nbdcopy and with `qemu-img convert`. Thanks to
// base:allocation each copy reads only about the data from the elements (status
// elements[].stats.readBytes before/after), and produces a sparse file with the volume's sha256
// (computed from what was written, never by reading the volume).
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { statSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Daemon } from './lib/daemon.js';
import { DATA_OFFSET_BYTES, GiB, MiB, removeDir, tempDir, writeConfig } from './lib/files.js';
import { nbdcopy, qemuIo, qemuIoFailed } from './lib/peers.js';
import { explain, missingTools, run, runOk } from './lib/proc.js';

const VOLUME_BYTES = 4 * GiB;
const PIECE_BYTES = 256 * 1024;
const PIECES = 256; // 64 MiB
const DATA_BYTES = PIECE_BYTES * PIECES;
/** Element bytes a copy may read: the data plus some slack for alignment and headers. */
const READ_LIMIT_BYTES = 96 * MiB;
const missing = missingTools(['nbdcopy', 'qemu-img', 'qemu-io', 'nbdinfo']);

interface ElementStats { readonly name: string; readonly stats?: { readonly readBytes: number } }

/** Piece slots (in PIECE_BYTES units), spread over the volume with a fixed jitter, sorted and distinct. */
function pieceSlots(): number[] {
  const slots = VOLUME_BYTES / PIECE_BYTES;
  return Array.from({ length: PIECES }, (_, i) => Math.floor((i * slots) / PIECES) + ((i * 7919) % Math.floor(slots / PIECES)));
}
const patternOf = (i: number): number => 1 + (i % 254);

/** sha256 of the volume as written: zeroes with piece i filled with patternOf(i). */
function expectedSha(slots: readonly number[]): string {
  const h = createHash('sha256');
  const zero = Buffer.alloc(PIECE_BYTES);
  const bySlot = new Map(slots.map((s, i) => [s, i]));
  for (let s = 0; s < VOLUME_BYTES / PIECE_BYTES; s++) {
    const i = bySlot.get(s);
    h.update(i === undefined ? zero : Buffer.alloc(PIECE_BYTES, patternOf(i)));
  }
  return h.digest('hex');
}

/** sha256 of a file in a child process, so several hash on both cores at once. */
function sha256InChild(file: string): Promise<string> {
  const script = "const h=require('crypto').createHash('sha256');const s=require('fs').createReadStream(process.argv[1],{highWaterMark:1<<22});s.on('data',(b)=>h.update(b));s.on('end',()=>console.log(h.digest('hex')));s.on('error',(e)=>{console.error(e.message);process.exit(1);});";
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['-e', script, file], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.setEncoding('utf8').on('data', (s: string) => { out += s; });
    child.stderr.setEncoding('utf8').on('data', (s: string) => { err += s; });
    const timer = setTimeout(() => child.kill('SIGKILL'), 120_000);
    child.on('exit', (code) => {
      clearTimeout(timer);
      if (code === 0) resolve(out.trim());
      else reject(new Error(`hashing ${file} failed (${code}): ${err}`));
    });
  });
}

describe.skipIf(missing !== null)(`sparse copies of a 4 GiB volume holding 64 MiB${missing !== null ? ` (skipped: ${missing})` : ''}`, () => {
  let dir = '';
  let daemon: Daemon | null = null;
  let native = false;
  const slots = pieceSlots();
  const d = (): Daemon => daemon!;

  async function elementReadBytes(): Promise<number> {
    const status = (await d().status()) as unknown as { elements: readonly ElementStats[] };
    return status.elements.filter((e) => e.name === 'a' || e.name === 'b').reduce((sum, e) => sum + (e.stats?.readBytes ?? 0), 0);
  }

  beforeAll(async () => {
    dir = tempDir('sparse-copy');
    const { configPath } = await writeConfig(dir, [{ name: 'a', sizeBytes: DATA_OFFSET_BYTES + VOLUME_BYTES }, { name: 'b', sizeBytes: DATA_OFFSET_BYTES + VOLUME_BYTES }],
      [{ name: 'big', layout: 'raid1', elements: ['a', 'b'] }]);
    daemon = await Daemon.start({ dataDir: path.join(dir, 'data'), configPath });
    native = ((await d().status()) as unknown as { native: { backend: string } }).native.backend === 'native';
    // One qemu-io process writes every piece (one NBD connection, 256 requests).
    const r = await qemuIo(d().uri('big'), slots.map((s, i) => `write -P ${patternOf(i)} ${s * PIECE_BYTES} ${PIECE_BYTES}`), 120_000);
    expect(qemuIoFailed(r), explain(r)).toBe(false);
  }, 120_000);

  afterAll(async () => {
    await daemon?.stop();
    if (dir !== '') removeDir(dir);
  });

  it('nbdcopy and qemu-img convert read about the data only and write sparse files with the volume sha256', async (ctx) => {
    ctx.skip(!native, 'the daemon runs without the native addon (ONESTACK_NATIVE=off or not built): local elements answer "all data", so a copy reads everything');
    const uri = d().uri('big');
    const started = Date.now();
    const mapped = await runOk('nbdinfo', ['--map', '--json', uri], { timeoutMs: 30_000 });
    const mapMs = Date.now() - started;
    const extents = JSON.parse(mapped.stdout) as { offset: number; length: number; type: number }[];
    const dataBytes = extents.filter((e) => (e.type & 2) === 0).reduce((sum, e) => sum + e.length, 0);
    expect(dataBytes).toBe(DATA_BYTES);

    const outputs: { tool: string; file: string; readBytes: number; ms: number }[] = [];
    const copy = async (tool: string, file: string, work: () => Promise<void>): Promise<void> => {
      const before = await elementReadBytes();
      const t0 = Date.now();
      await work();
      outputs.push({ tool, file, readBytes: (await elementReadBytes()) - before, ms: Date.now() - t0 });
    };
    const out1 = path.join(dir, 'out.raw');
    const out2 = path.join(dir, 'out2.raw');
    await copy('nbdcopy', out1, async () => {
      const r = await nbdcopy(uri, out1, [], 120_000);
      expect(r.code, explain(r)).toBe(0);
    });
    await copy('qemu-img convert', out2, async () => {
      const r = await run('qemu-img', ['convert', '-f', 'raw', '-O', 'raw', uri, out2], { timeoutMs: 120_000 });
      expect(r.code, explain(r)).toBe(0);
    });
    const [want, ...got] = await Promise.all([Promise.resolve().then(() => expectedSha(slots)), ...outputs.map((o) => sha256InChild(o.file))]);
    const lines = outputs.map((o, i) => `${o.tool}: ${(o.readBytes / MiB).toFixed(1)} MiB read from elements in ${o.ms} ms; output ${(statSync(o.file).blocks * 512 / MiB).toFixed(1)} MiB allocated; sha256 ${got[i] === want ? 'matches' : 'DIFFERS'}`);
    console.log(`nbdinfo --map of the 4 GiB volume: ${extents.length} extents in ${mapMs} ms\n${lines.join('\n')}`);
    for (const [i, o] of outputs.entries()) {
      expect(statSync(o.file).size, o.tool).toBe(VOLUME_BYTES);
      expect(got[i], `${o.tool} sha256`).toBe(want);
      expect(o.readBytes, `${o.tool} element bytes read`).toBeGreaterThanOrEqual(DATA_BYTES);
      expect(o.readBytes, `${o.tool} element bytes read`).toBeLessThan(READ_LIMIT_BYTES);
      const allocated = statSync(o.file).blocks * 512;
      expect(allocated, `${o.tool} output allocation`).toBeGreaterThanOrEqual(DATA_BYTES);
      expect(allocated, `${o.tool} output allocation`).toBeLessThan(READ_LIMIT_BYTES);
    }
  }, 180_000);
});
