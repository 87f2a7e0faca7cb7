// One status line for a running reshape (engine durable/reshape.ts):
// `reshape raid5 4→5: 37% (1.2 GiB of 3 GiB), 85 MiB/s`.
import type { ReshapeStatus } from '@onestack/engine';

/** Short sizes: at most one decimal, none when whole (`1.2 GiB`, `3 GiB`). */
export function shortBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) { value /= 1024; unit++; }
  const text = value.toFixed(1).replace(/\.0$/, '');
  return `${text} ${units[unit]}`;
}

export function reshapeLine(r: ReshapeStatus): string {
  const shape = r.from.layout === r.to.layout ? `${r.to.layout} ${r.from.count}→${r.to.count}` : `${r.from.layout} ${r.from.count}→${r.to.layout} ${r.to.count}`;
  const state = r.state === 'running' ? '' : ` ${r.state}`;
  const error = r.error === undefined ? '' : ` (stopped: ${r.error})`;
  return `reshape ${shape}${state}: ${Math.floor(r.percent)}% (${shortBytes(r.positionBytes)} of ${shortBytes(r.totalBytes)}), ${Math.round(r.rateMiBps)} MiB/s${error}`;
}
