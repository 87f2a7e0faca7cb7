// One card per volume: state, boot flag, rebuild progress, its elements with fail / replace,
// and live IOPS, MiB/s and latency charts.
import { Fragment } from 'preact';
import { useState } from 'preact/hooks';
import { call, seg, SLOW_CALL_TIMEOUT_MS } from '../api.js';
import { formatBytes, formatEta, formatRate } from '../format.js';
import type { VolumeSeries } from '../history.js';
import { REPLACEABLE, type ElementStatus, type EngineStatus, type VolumeStatus } from '../types.js';
import { Chart } from './Chart.js';
import { LatencyCell, ReshapeLine, TransportDetailRow } from './Transport.js';
import { Badge, Message, Progress, useAction } from './ui.js';

interface Props {
  status: EngineStatus;
  series: ReadonlyMap<string, VolumeSeries>;
  refresh: () => void;
}

export function Volumes({ status, series, refresh }: Props) {
  if (status.volumes.length === 0) return <p class="empty">No volumes yet: add elements below, then create an array.</p>;
  const spares = status.elements.filter((e) => e.volume === null && e.state === 'spare');
  return (
    <div class="volumes">
      {status.volumes.map((v) => <VolumeCard key={v.name} volume={v} spares={spares} series={series.get(v.name)} refresh={refresh} />)}
    </div>
  );
}

function VolumeCard({ volume, spares, series, refresh }: { volume: VolumeStatus; spares: ElementStatus[]; series: VolumeSeries | undefined; refresh: () => void }) {
  const boot = useAction();
  const makeBoot = (): void => {
    void boot.run(async () => {
      await call('POST', `/volumes/${seg(volume.name)}/boot`, {});
      refresh();
      return `${volume.name} is now the boot volume (the empty NBD export name serves it)`;
    });
  };
  return (
    <article class="volume" data-testid={`volume-${volume.name}`}>
      <header class="volume-head">
        <h3>{volume.name}</h3>
        <span data-testid={`volume-state-${volume.name}`}><Badge state={volume.state} /></span>
        <span class="muted">{volume.layout} · {formatBytes(volume.sizeBytes)} · chunk {volume.chunkKiB} KiB</span>
        {volume.boot
          ? <span class="boot" data-testid={`boot-flag-${volume.name}`}>boot volume</span>
          : <button type="button" class="small" disabled={boot.busy} onClick={makeBoot} data-testid={`boot-${volume.name}`}>Make boot volume</button>}
      </header>
      <Message action={boot} />
      <RebuildLine volume={volume} />
      <ReshapeLine volume={volume} />
      <CheckpointLine volume={volume} refresh={refresh} />
      <ElementTable volume={volume} spares={spares} refresh={refresh} />
      <VolumeCharts name={volume.name} series={series} />
    </article>
  );
}

function RebuildLine({ volume }: { volume: VolumeStatus }) {
  const r = volume.rebuild;
  const testid = `rebuild-${volume.name}`;
  if (r !== null) {
    const what = r.element === null ? r.kind : `${r.kind} of ${r.element}`;
    const label = `${what}: ${r.percent.toFixed(1)}% · ${formatRate(r.mibPerSec)} MiB/s · ETA ${formatEta(r.etaSeconds)}`;
    return <Progress percent={r.percent} label={label} testid={testid} />;
  }
  const last = volume.lastRebuild;
  if (last === undefined || last === null) return null;
  const what = last.element === null ? last.kind : `${last.kind} of ${last.element}`;
  if (last.outcome !== 'done') {
    return <p class="msg msg-error" data-testid={`${testid}-outcome`}>Last {what} {last.outcome}{last.message !== undefined ? `: ${last.message}` : ''}</p>;
  }
  const label = `${what} done: 100% in ${last.seconds.toFixed(1)} s (${formatRate(last.mibPerSec)} MiB/s)`;
  return <Progress percent={100} label={label} testid={testid} />;
}

/** Checkpoints (qemu:dirty-bitmap:NAME over NBD) and a button to start one. */
function CheckpointLine({ volume, refresh }: { volume: VolumeStatus; refresh: () => void }) {
  const act = useAction();
  const list = volume.checkpoints ?? [];
  const start = (): void => {
    void act.run(async () => {
      const made = await call<{ name?: string } | null>('POST', `/volumes/${seg(volume.name)}/checkpoints`, {});
      refresh();
      return `checkpoint ${made?.name ?? ''} started: NBD clients can read qemu:dirty-bitmap:${made?.name ?? 'NAME'}`;
    });
  };
  return (
    <div class="checkpoints" data-testid={`checkpoints-${volume.name}`}>
      <span class="muted">Checkpoints: </span>
      {list.length === 0 ? <span class="muted">none</span> : list.map((c) => (
        <span key={c.name} class="checkpoint" data-testid={`checkpoint-${volume.name}-${c.name}`}>
          {c.name} ({c.unusable !== undefined ? `unusable: ${c.unusable}` : `${formatBytes(c.dirtyBytes)} changed`}){' '}
        </span>
      ))}
      <button type="button" class="small" disabled={act.busy} onClick={start} data-testid={`checkpoint-new-${volume.name}`}>New checkpoint</button>
      <Message action={act} />
    </div>
  );
}

function ElementTable({ volume, spares, refresh }: { volume: VolumeStatus; spares: ElementStatus[]; refresh: () => void }) {
  const action = useAction();
  const [pick, setPick] = useState<Record<string, string>>({});
  const replaceable = REPLACEABLE.has(volume.layout);
  const fail = (name: string): void => {
    if (!window.confirm(`Fail element ${name}? Volume ${volume.name} goes on without it; replace it afterwards.`)) return;
    void action.run(async () => {
      await call('POST', `/elements/${seg(name)}/fail`);
      refresh();
      return `element ${name} failed by request`;
    });
  };
  const replace = (old: string): void => {
    const fresh = pick[old] ?? spares[0]?.name;
    if (fresh === undefined) return;
    void action.run(async () => {
      await call('POST', `/volumes/${seg(volume.name)}/replace`, { old, new: fresh }, SLOW_CALL_TIMEOUT_MS);
      refresh();
      return `rebuilding ${old}'s role onto ${fresh}`;
    });
  };
  return (
    <>
      <table class="elements">
        <thead><tr><th>Role</th><th>Element</th><th>Kind</th><th>State</th><th>Size</th><th>Errors</th><th>Latency (EWMA)</th><th>URI</th><th /></tr></thead>
        <tbody>
          {volume.elements.map((e) => (
            <Fragment key={e.name}>
              <tr data-testid={`member-${e.name}`}>
                <td>{e.role ?? '–'}</td>
                <td>{e.name}</td>
                <td>{e.kind}</td>
                <td><Badge state={e.state} />{e.reason !== undefined ? <span class="reason"> {e.reason}</span> : null}</td>
                <td>{formatBytes(e.sizeBytes)}</td>
                <td>{e.errors}</td>
                <LatencyCell element={e} prefix="member-" />
                <td><code>{e.uri}</code></td>
                <td class="actions">
                  {e.state === 'active' || e.state === 'rebuilding'
                    ? <button type="button" class="small danger" disabled={action.busy} onClick={() => fail(e.name)} data-testid={`fail-${e.name}`}>Fail</button>
                    : null}
                  {replaceable && spares.length > 0 ? (
                    <span class="replace">
                      <select value={pick[e.name] ?? spares[0]?.name} onChange={(ev) => setPick({ ...pick, [e.name]: (ev.currentTarget as HTMLSelectElement).value })}
                        data-testid={`replace-with-${e.name}`} aria-label={`spare to replace ${e.name} with`}>
                        {spares.map((s) => <option key={s.name} value={s.name}>{s.name}</option>)}
                      </select>
                      <button type="button" class="small" disabled={action.busy} onClick={() => replace(e.name)} data-testid={`replace-${e.name}`}>Replace</button>
                    </span>
                  ) : null}
                </td>
              </tr>
              <TransportDetailRow element={e} columns={9} prefix="member-" />
            </Fragment>
          ))}
        </tbody>
      </table>
      <Message action={action} testid={`volume-msg-${volume.name}`} />
    </>
  );
}

function VolumeCharts({ name, series }: { name: string; series: VolumeSeries | undefined }) {
  if (series === undefined || series.t.length === 0) return <p class="muted">Charts start with the next samples.</p>;
  return (
    <div class="charts">
      <Chart title="IOPS" unit="ops/s" t={series.t} testid={`chart-iops-${name}`}
        lines={[{ label: 'read', values: series.readIops, color: '#0969da' }, { label: 'write', values: series.writeIops, color: '#cf222e' }]} />
      <Chart title="Throughput" unit="MiB/s" t={series.t} testid={`chart-mibs-${name}`}
        lines={[{ label: 'read', values: series.readMiBs, color: '#0969da' }, { label: 'write', values: series.writeMiBs, color: '#cf222e' }]} />
      {series.hasLatency ? (
        <Chart title="Mean latency" unit="µs" t={series.t} testid={`chart-latency-${name}`}
          lines={[{ label: 'read', values: series.readLatUs, color: '#0969da', dots: true }, { label: 'write', values: series.writeLatUs, color: '#cf222e', dots: true }]} />
      ) : null}
    </div>
  );
}
