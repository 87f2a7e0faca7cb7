// Questions for `onestack init`, one line each, on node:readline. On a terminal: line editing,
// Ctrl-C to stop, and secrets typed without echo. Not on a terminal (a pipe, a test): the same
// questions, answered line by line, each answer echoed after its prompt so a transcript reads
// well (secrets excepted). A question whose answer does not fit is asked again, a bounded number
// of times; input that ends first is a usage error, Ctrl-C a runtime one; nothing is written.
import { createInterface, type Interface } from 'node:readline';
import { Writable } from 'node:stream';
import { CliError, usageError } from '../errors.js';

export const ATTEMPTS_MAX = 5;
const LINE_CHARS_MAX = 4096;

/** A parsed answer, or the reason it does not fit (printed before the question comes again). */
export type Parsed<T> = { readonly ok: T } | { readonly problem: string };

/** Terminal output that can be muted while a secret is typed (readline echoes through it). */
class PromptOutput extends Writable {
  muted = false;
  constructor(private readonly sink: (text: string) => void, private readonly widthOf: () => number | undefined) { super(); }
  get columns(): number | undefined { return this.widthOf(); }
  override _write(chunk: Buffer | string, _encoding: BufferEncoding, done: (error?: Error | null) => void): void {
    if (!this.muted) this.sink(chunk.toString());
    done();
  }
}

export interface PrompterOptions {
  readonly input: NodeJS.ReadableStream;
  readonly write: (text: string) => void;
  /** The input is a terminal: readline edits lines, and secrets are read without echo. */
  readonly terminal: boolean;
  /** Terminal width, for readline's line editing. */
  readonly columns?: () => number | undefined;
}

export class Prompter {
  readonly #rl: Interface;
  readonly #out: PromptOutput;
  readonly #write: (text: string) => void;
  readonly #terminal: boolean;
  readonly #lines: string[] = [];
  #waiting: ((line: string | null) => void) | undefined;
  #ended = false;
  #interrupted = false;

  constructor(opts: PrompterOptions) {
    this.#write = opts.write;
    this.#terminal = opts.terminal;
    this.#out = new PromptOutput(opts.write, opts.columns ?? (() => undefined));
    this.#rl = createInterface({ input: opts.input, output: this.#out, terminal: opts.terminal, historySize: 0 });
    this.#rl.on('line', (line) => { this.#deliver(line.slice(0, LINE_CHARS_MAX)); });
    this.#rl.on('close', () => { this.#ended = true; this.#deliver(null); });
    // Ctrl-C on a terminal: stop asking; the command reports that nothing was written.
    this.#rl.on('SIGINT', () => { this.#interrupted = true; this.#rl.close(); });
  }

  /** Prints text (tables, notes) between questions. */
  say(text: string): void {
    this.#write(text.endsWith('\n') ? text : `${text}\n`);
  }

  /** One answer, trimmed; an empty line takes the default (shown in brackets). */
  async ask(question: string, defaultAnswer?: string): Promise<string> {
    const prompt = defaultAnswer === undefined ? `${question}: ` : `${question} [${defaultAnswer}]: `;
    const line = (await this.#next(prompt, question, false)).trim();
    return line === '' ? defaultAnswer ?? '' : line;
  }

  /** Asks until `parse` accepts the answer, at most ATTEMPTS_MAX times. */
  async askValid<T>(question: string, defaultAnswer: string | undefined, parse: (answer: string) => Parsed<T>): Promise<T> {
    for (let attempt = 1; attempt <= ATTEMPTS_MAX; attempt++) {
      const result = parse(await this.ask(question, defaultAnswer));
      if ('ok' in result) return result.ok;
      this.say(`  ! ${result.problem}${attempt < ATTEMPTS_MAX ? ' - please answer again' : ''}`);
    }
    throw usageError(`no usable answer to "${question}" after ${ATTEMPTS_MAX} tries; nothing written`, 'init', 'see: onestack init --help');
  }

  /** Yes or no; an empty line takes the default. */
  confirm(question: string, defaultYes: boolean): Promise<boolean> {
    return this.askValid<boolean>(question, defaultYes ? 'Y/n' : 'y/N', (answer) => {
      const word = answer.toLowerCase();
      if (word === 'y/n') return { ok: defaultYes };
      if (word === 'y' || word === 'yes') return { ok: true };
      if (word === 'n' || word === 'no') return { ok: false };
      return { problem: `"${answer}" is neither yes nor no` };
    });
  }

  /** A secret: never echoed on a terminal, never repeated in the transcript. */
  async askSecret(question: string): Promise<string> {
    this.#write(`${question} (input hidden): `);
    const line = await this.#next('', question, true);
    this.#write(this.#terminal ? '\n' : '(hidden)\n');
    return line.trim();
  }

  close(): void {
    this.#rl.close();
  }

  async #next(prompt: string, question: string, secret: boolean): Promise<string> {
    this.#out.muted = secret;
    this.#rl.setPrompt(prompt);
    this.#rl.prompt();
    let line = this.#lines.shift() ?? null;
    if (line === null && !this.#ended) line = await new Promise<string | null>((resolve) => { this.#waiting = resolve; });
    this.#out.muted = false;
    if (line === null && this.#interrupted) throw new CliError(1, `interrupted before "${question}" was answered; nothing written`, 'init');
    if (line === null) {
      throw usageError(`input ended before "${question}" was answered; nothing written`, 'init', 'answer every question, or run onestack init --yes with flags');
    }
    // A pipe does not echo: show the answer after its prompt, so the output reads as a dialogue.
    if (!this.#terminal && !secret) this.#write(`${line}\n`);
    return line;
  }

  #deliver(line: string | null): void {
    const waiting = this.#waiting;
    this.#waiting = undefined;
    if (waiting !== undefined) { waiting(line); return; }
    if (line !== null && this.#lines.length < 1024) this.#lines.push(line);
  }
}
