// What a command may touch of the process: output streams and environment. Tests pass fakes.

export interface CliIo {
  readonly stdout: (text: string) => void;
  readonly stderr: (text: string) => void;
  readonly env: Readonly<Record<string, string | undefined>>;
  /** stdout is a terminal: `status --watch` clears the screen between frames. */
  readonly stdoutIsTty: boolean;
}

export function processIo(): CliIo {
  return {
    stdout: (text) => { process.stdout.write(text); },
    stderr: (text) => { process.stderr.write(text); },
    env: process.env,
    stdoutIsTty: process.stdout.isTTY === true,
  };
}
