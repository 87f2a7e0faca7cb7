// Every element with its state, owner and measured transport figures (latency, write-behind lag,
// retries while stale), and the driver pools with their queue depth chart.
import { Fragment } from 'preact';
import { call, seg } from '../api.js';
import { formatBytes } from '../format.js';
import { POOL_NAMES, type PoolSeries } from '../history.js';
import type { EngineStatus } from '../types.js';
import { Chart } from './Chart.js';
import { LatencyCell, TransportDetailRow } from './Transport.js';
import { Badge, Message, useAction } from './ui.js';

export function Elements({ status, refresh }: { status: EngineStatus; refresh: () => void }) {
  const action = useAction();
  if (status.elements.length === 0) return <p class="empty">No elements yet: add one below.</p>;
  const remove = (name: string): void => {
    if (!window.confirm(`Remove element ${name} from onestack? Its file or disk is left as it is.`)) return;
    void action.run(async () => {
      await call('DELETE', `/elements/${seg(name)}`);
      refresh();
      return `element ${name} removed`;
    });
  };
  return (
    <>
      <table class="elements" data-testid="elements-table">
        <thead><tr><th>Element</th><th>Kind</th><th>State</th><th>Size</th><th>Volume</th><th>Errors</th><th>Latency (EWMA)</th><th>URI</th><th /></tr></thead>
        <tbody>
          {status.elements.map((e) => (
            <Fragment key={e.name}>
              <tr data-testid={`element-${e.name}`}>
                <td>{e.name}</td>
                <td>{e.kind}</td>
                <td><Badge state={e.state} />{e.reason !== undefined ? <span class="reason"> {e.reason}</span> : null}</td>
                <td>{formatBytes(e.sizeBytes)}</td>
                <td>{e.volume === null ? '–' : `${e.volume} [${e.role ?? '-'}]`}</td>
                <td>{e.errors}</td>
                <LatencyCell element={e} prefix="" />
                <td><code>{e.uri}</code></td>
                <td class="actions">
                  {e.volume === null
                    ? <button type="button" class="small" disabled={action.busy} onClick={() => remove(e.name)} data-testid={`remove-${e.name}`}>Remove</button>
                    : null}
                </td>
              </tr>
              <TransportDetailRow element={e} columns={9} prefix="" />
            </Fragment>
          ))}
        </tbody>
      </table>
      <Message action={action} />
    </>
  );
}

const POOL_COLORS = { top: '#8250df', middle: '#0969da', bottom: '#1a7f37', remote: '#bc4c00' } as const;

export function Pools({ status, pools }: { status: EngineStatus; pools: PoolSeries }) {
  const present = POOL_NAMES.filter((p) => status.pools[p] !== undefined);
  return (
    <div class="pools">
      <table class="compact">
        <thead><tr><th>Pool</th><th>Threads</th><th>Queued now</th></tr></thead>
        <tbody>
          {present.map((p) => (
            <tr key={p} data-testid={`pool-${p}`}><td>{p}</td><td>{status.pools[p]?.threads}</td><td>{status.pools[p]?.queueDepth}</td></tr>
          ))}
        </tbody>
      </table>
      {status.queue !== undefined ? <p class="muted">Shared queue: {status.queue.inFlight} in flight of {status.queue.depth}.</p> : null}
      {pools.t.length > 0
        ? <Chart title="Queue depth per driver pool" unit="requests" t={pools.t} testid="chart-pools"
          lines={present.map((p) => ({ label: p, values: pools.depth[p], color: POOL_COLORS[p] }))} />
        : null}
    </div>
  );
}
