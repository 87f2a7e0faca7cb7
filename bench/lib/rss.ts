// Peak resident memory of a serving process while a workload runs: VmRSS from /proc sampled on
// a timer (VmHWM would also count start-up and earlier workloads).
import { rssBytes } from './proc.js';

const SAMPLE_MS = 100;

export interface RssSampler {
  /** Stops sampling; the highest VmRSS seen in bytes, NaN if none could be read. */
  stop(): number;
}

export function sampleRss(pid: number | undefined): RssSampler {
  let peakBytes = Number.NaN;
  const take = (): void => {
    const b = rssBytes(pid);
    if (Number.isFinite(b) && !(b <= peakBytes)) peakBytes = b;
  };
  take();
  const timer = setInterval(take, SAMPLE_MS);
  return {
    stop() {
      clearInterval(timer);
      take();
      return peakBytes;
    },
  };
}
