// The embedded system of the benchmark: a child process that opens @onestack/engine in-process
// with a linear volume over one image file (cache: writeback, as the daemon's plain export) and
// runs workloads on request, so its RSS and CPU are its own. Started by lib/embedded-system.ts:
//   node bench/dist/embedded.js --image IMG --data-dir DIR
// stdout: "onestack-embedded: ready {json}", then per request line on stdin
// ({"workload":"randread4k","seconds":8}) one "result {json}" or "error {json}" line.
// Ends (engine closed) when stdin closes or on SIGTERM.
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import { Engine } from '@onestack/engine';
import { copiesOf, copyRates } from './lib/copies.js';
import { loadIoOf, runLoad, type LoadIo } from './lib/embedded-load.js';
import { RAMP_SECONDS, WORKLOADS } from './lib/fio.js';

const VOLUME = 'bench';
const SECONDS_MAX = 600;

interface Request { readonly workload: string; readonly seconds: number }

function parseRequest(line: string): Request {
  const r = JSON.parse(line) as Partial<Request>;
  if (typeof r.workload !== 'string' || typeof r.seconds !== 'number' || !(r.seconds >= 1 && r.seconds <= SECONDS_MAX)) {
    throw new Error(`bad request: ${line.slice(0, 200)}`);
  }
  return { workload: r.workload, seconds: r.seconds };
}

async function serve(engine: Engine, io: LoadIo, line: string): Promise<string> {
  const req = parseRequest(line);
  const w = WORKLOADS.find((x) => x.id === req.workload);
  if (w === undefined) throw new Error(`unknown workload ${req.workload}`);
  const before = copiesOf(engine.status());
  const figures = await runLoad(io, w, req.seconds, RAMP_SECONDS);
  const copies = copyRates(before, copiesOf(engine.status()));
  return `result ${JSON.stringify({ figures, copies })}`;
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { image: { type: 'string' }, 'data-dir': { type: 'string' } } });
  if (values.image === undefined || values['data-dir'] === undefined) throw new Error('usage: embedded.js --image IMG --data-dir DIR');
  const config = {
    elements: [{ name: 'e0', uri: `file:${values.image}`, cache: 'writeback' }],
    volumes: [{ name: VOLUME, layout: 'linear', elements: ['e0'], boot: true }],
  };
  const engine = await Engine.open({ config, dataDir: values['data-dir'], log: (level, msg) => { if (level !== 'info') process.stderr.write(`embedded: ${level}: ${msg}\n`); } });
  let closing: Promise<void> | null = null;
  const close = (): Promise<void> => (closing ??= engine.close());
  process.once('SIGTERM', () => { void close().finally(() => process.exit(0)); });
  const io = loadIoOf(engine.volume(VOLUME));
  process.stdout.write(`onestack-embedded: ready ${JSON.stringify({ path: io.path, sizeBytes: io.sizeBytes, pid: process.pid })}\n`);
  // One request at a time: the next line is read only after the last answer.
  for await (const line of createInterface({ input: process.stdin, crlfDelay: Infinity })) {
    if (line.trim() === '') continue;
    try {
      process.stdout.write(`${await serve(engine, io, line)}\n`);
    } catch (e) {
      process.stdout.write(`error ${JSON.stringify(e instanceof Error ? e.message : String(e))}\n`);
    }
  }
  await close();
}

main().then(() => process.exit(0), (e: unknown) => {
  process.stderr.write(`embedded: error: ${e instanceof Error ? e.stack ?? e.message : String(e)}\n`);
  process.exit(1);
});
