// The polling loop of `volume reshape --watch` and `volume scrub --wait`: bounded, stopped early by
// SIGINT/SIGTERM (which also cut the wait between polls short), progress in place on a terminal.

/** Without a terminal, a progress line at most this often (a log should not fill with them). */
const PLAIN_PROGRESS_EVERY_MS = 5000;
/** Polls at most this many times (about 290 days at 250 ms): every loop is bounded. */
const POLLS_MAX = 100_000_000;

export interface PollOutput {
  /** A progress line: rewritten in place on a terminal, else printed at most every 5 s. Nothing when quiet. */
  progress(line: string): void;
  /** Clears the in-place line before a final output (on a terminal, when not quiet). */
  clear(): void;
}

/**
 * Calls `step` every `pollMs` until it returns a result other than undefined, which is returned.
 * Returns undefined when interrupted or after POLLS_MAX polls (a newline ends a progress line first).
 */
export async function pollWatch<T>(io: { stdout(text: string): void; stdoutIsTty: boolean }, pollMs: number, quiet: boolean,
  step: (out: PollOutput) => Promise<T | undefined>): Promise<T | undefined> {
  let interrupted = false;
  let wake: (() => void) | undefined;
  const onSignal = (): void => { interrupted = true; wake?.(); };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  let lastPlainMs = Date.now();
  const out: PollOutput = {
    progress(line) {
      if (quiet) return;
      if (io.stdoutIsTty) io.stdout(`\r${line}\x1b[K`);
      else if (Date.now() - lastPlainMs >= PLAIN_PROGRESS_EVERY_MS) {
        lastPlainMs = Date.now();
        io.stdout(line + '\n');
      }
    },
    clear() {
      if (!quiet && io.stdoutIsTty) io.stdout('\r\x1b[K');
    },
  };
  try {
    for (let poll = 0; poll < POLLS_MAX && !interrupted; poll++) {
      const result = await step(out);
      if (result !== undefined) return result;
      await new Promise<void>((done) => {
        const timer = setTimeout(done, pollMs);
        wake = () => { clearTimeout(timer); done(); };
      });
    }
    if (!quiet && io.stdoutIsTty) io.stdout('\n');
    return undefined;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}
