// Transport state of an element (measured latency and throughput, a write-behind leg's lag, a
// stale leg's probing) and a volume's reshape progress. Shared by the Elements table and the
// member table of each volume card. Every figure also sits in a data-* attribute for tests.
import { lagPercent, latencyText, reshapeLabel, retryText, writeBehindText } from '../format-transport.js';
import type { ElementStatus, VolumeStatus } from '../types.js';
import { RbdDetail } from './Rbd.js';
import { Progress } from './ui.js';

/** The Latency column: read / write EWMA and MiB/s, or a dash before any I/O. */
export function LatencyCell({ element, prefix }: { element: ElementStatus; prefix: string }) {
  const l = element.latency;
  const text = latencyText(l);
  if (l === undefined || text === null) return <td class="latency muted" data-testid={`${prefix}latency-${element.name}`}>–</td>;
  return (
    <td class="latency" data-testid={`${prefix}latency-${element.name}`}
      data-read-us={l.readUsEwma ?? ''} data-write-us={l.writeUsEwma ?? ''} data-read-mibs={l.readMiBPerSec} data-write-mibs={l.writeMiBPerSec}>
      <span class="lat">{text.read}</span> <span class="lat">{text.write}</span>
      <br /><span class="muted">{text.throughput}</span>
    </td>
  );
}

/** True when the element has a line for the detail row. */
export function hasTransportDetail(e: ElementStatus): boolean {
  return e.writeBehind !== undefined || e.retry !== undefined || e.rbd !== undefined;
}

/**
 * A full-width row under an element: an rbd:// element's path and lock, its write-behind lag (with
 * a meter of the allowed lag) and, while it is stale, its probing. `columns` is the table's column count.
 */
export function TransportDetailRow({ element, columns, prefix }: { element: ElementStatus; columns: number; prefix: string }) {
  if (!hasTransportDetail(element)) return null;
  const wb = element.writeBehind;
  const r = element.retry;
  return (
    <tr class="detail-row" data-testid={`${prefix}detail-${element.name}`}>
      <td colSpan={columns}>
        <RbdDetail element={element} prefix={prefix} />
        {wb !== undefined ? (
          <div class="detail" data-testid={`${prefix}wb-${element.name}`} data-lag-bytes={wb.lagBytes} data-max-lag-bytes={wb.maxLagBytes}
            data-writes-done={wb.writesDone} data-dropped={wb.droppedWrites}>
            <span class="meter" title={`${lagPercent(wb).toFixed(0)}% of the allowed lag`}>
              <span class="meter-bar" style={{ width: `${lagPercent(wb)}%` }} />
            </span>
            {writeBehindText(wb)}
          </div>
        ) : null}
        {r !== undefined ? (
          <div class="detail detail-warn" data-testid={`${prefix}retry-${element.name}`} data-attempts={r.attempts} data-delay-ms={r.delayMs}
            data-next-ms={r.nextAttemptMs ?? ''} data-last-error={r.lastError ?? ''}>
            {retryText(r, Date.now())}
          </div>
        ) : null}
      </td>
    </tr>
  );
}

/** A reshape's progress bar (from → to, percent, MiB/s) and its error, if any; nothing without one. */
export function ReshapeLine({ volume }: { volume: VolumeStatus }) {
  const r = volume.reshape;
  if (r === undefined || r === null) return null;
  return (
    <div class="reshape" data-testid={`reshape-box-${volume.name}`} data-state={r.state}>
      <Progress percent={r.percent} label={reshapeLabel(r)} testid={`reshape-${volume.name}`} />
      {r.error !== undefined ? <p class="msg msg-error" data-testid={`reshape-error-${volume.name}`}>Reshape: {r.error}</p> : null}
    </div>
  );
}
