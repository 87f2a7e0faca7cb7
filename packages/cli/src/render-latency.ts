// `onestack status` text for an element's measured transport figures (docs/transport.md):
// `  lat read 48µs write 1.2ms, 35.1 MiB/s read 0.0 MiB/s write`.
import type { ElementStatus } from '@onestack/engine';

function us(x: number | null): string {
  if (x === null) return '-';
  return x >= 1000 ? `${(x / 1000).toFixed(1)}ms` : `${x.toFixed(0)}µs`;
}

/** '' when the daemon sends no figures (older daemons) or the element has done no I/O yet. */
export function latencySuffix(e: ElementStatus): string {
  const l = e.latency;
  if (l === undefined || (l.readUsEwma === null && l.writeUsEwma === null)) return '';
  return `  lat read ${us(l.readUsEwma)} write ${us(l.writeUsEwma)}, ${l.readMiBPerSec.toFixed(1)} MiB/s read ${l.writeMiBPerSec.toFixed(1)} MiB/s write`;
}
