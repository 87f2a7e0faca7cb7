// The `onestack-embedded` system: @onestack/engine opened in a child process of its own
// (bench/embedded.ts), which runs each workload in-process on request. One request at a time
// over its stdin; one answer line on its stdout.
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { CopyRates } from './copies.js';
import type { FioFigures, Measured, Workload } from './fio.js';
import { startServer, stopServer, waitOutput, type Server } from './proc.js';
import type { SystemDef } from './system-kit.js';

const CHILD_JS = fileURLToPath(new URL('../embedded.js', import.meta.url));
const STARTUP_MS = 60_000;
/** Answer lines are short JSON; anything longer is a broken child. */
const LINE_CHARS_MAX = 64 * 1024;

interface Answer { readonly figures: FioFigures; readonly copies: CopyRates | null }

/** Hands out the child's stdout lines that answer requests ("result …" / "error …"). */
class AnswerReader {
  private buf = '';
  private waiter: ((line: string) => void) | null = null;
  private readonly lines: string[] = [];

  constructor(private readonly server: Server) {
    server.child.stdout?.on('data', (d: string) => this.feed(d));
  }

  private feed(d: string): void {
    this.buf = (this.buf + d).slice(-LINE_CHARS_MAX);
    for (let nl = this.buf.indexOf('\n'); nl >= 0; nl = this.buf.indexOf('\n')) {
      const line = this.buf.slice(0, nl);
      this.buf = this.buf.slice(nl + 1);
      if (!line.startsWith('result ') && !line.startsWith('error ')) continue;
      if (this.waiter !== null) this.waiter(line); else this.lines.push(line);
    }
  }

  /** The next answer line, or an error when the child exits or `timeoutMs` passes first. */
  next(timeoutMs: number): Promise<string> {
    const queued = this.lines.shift();
    if (queued !== undefined) return Promise.resolve(queued);
    const child = this.server.child;
    return new Promise((resolve, reject) => {
      const done = (fn: () => void): void => { clearTimeout(t); child.off('exit', onExit); this.waiter = null; fn(); };
      const onExit = (): void => done(() => reject(new Error(`embedded engine exited:\n${this.server.output().slice(-2000)}`)));
      const t = setTimeout(() => done(() => reject(new Error(`embedded engine gave no answer within ${timeoutMs} ms`))), timeoutMs);
      child.once('exit', onExit);
      this.waiter = (line) => done(() => resolve(line));
    });
  }
}

async function ask(server: Server, reader: AnswerReader, w: Workload, seconds: number): Promise<Measured> {
  const stdin = server.child.stdin;
  if (stdin === null) throw new Error('embedded engine has no stdin');
  stdin.write(`${JSON.stringify({ workload: w.id, seconds })}\n`);
  const line = await reader.next((seconds + 60) * 1000);
  if (line.startsWith('error ')) throw new Error(`embedded ${w.id}: ${JSON.parse(line.slice(6)) as string}`);
  const a = JSON.parse(line.slice(7)) as Answer;
  return { figures: a.figures, copies: a.copies };
}

export function onestackEmbedded(id: string, label: string): SystemDef {
  return {
    id, label, group: 'embedded', onestackImages: 1,
    unavailable: () => (existsSync(CHILD_JS) ? null : `${CHILD_JS} is missing: run \`pnpm exec tsc -p bench\``),
    async start(ctx) {
      const dataDir = path.join(ctx.workDir, `data-${id}`);
      const server = startServer(id, process.execPath, [CHILD_JS, '--image', ctx.images[0], '--data-dir', dataDir], ctx.repoRoot, 'pipe');
      const reader = new AnswerReader(server);
      try {
        await waitOutput(server, /onestack-embedded: ready/, STARTUP_MS);
      } catch (e) {
        await stopServer(server);
        throw e;
      }
      const ready = /onestack-embedded: ready (\{.*\})/.exec(server.output())?.[1] ?? '{}';
      const how = (JSON.parse(ready) as { path?: string }).path ?? '?';
      return { server, where: `in-process engine, ${how} calls`, measure: (w, seconds) => ask(server, reader, w, seconds) };
    },
  };
}
