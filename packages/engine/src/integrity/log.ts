// Integrity events go to the daemon log, but a damaged leg can fail thousands of blocks a second:
// a few lines per second at most, the rest counted and summed up in the next line.

/** Log lines per second at most. */
const LINES_PER_SECOND = 5;

export class RateLimitedLog {
  private windowMs = 0;
  private logged = 0;
  private suppressed = 0;

  constructor(
    private readonly log: (line: string) => void,
    private readonly volume: string,
    private readonly now: () => number = Date.now,
  ) {}

  line(text: string): void {
    const t = this.now();
    if (t - this.windowMs >= 1000) {
      if (this.suppressed > 0) this.log(`volume ${this.volume}: ${this.suppressed} more integrity event(s) not logged`);
      this.windowMs = t;
      this.logged = 0;
      this.suppressed = 0;
    }
    if (this.logged++ < LINES_PER_SECOND) this.log(text);
    else this.suppressed++;
  }
}
