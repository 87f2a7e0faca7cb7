// A uPlot line chart that follows the data it is given. The chart's numbers are also on the
// element as data-max, data-last and data-points, so tests and scripts can read what is drawn.
import { useEffect, useRef } from 'preact/hooks';
import uPlot from 'uplot';

export interface Line {
  label: string;
  values: readonly (number | null)[];
  color: string;
  /** Draw each sample as a dot too: for series with gaps (null), where a lone value has no line. */
  dots?: boolean;
}

interface Props {
  title: string;
  unit: string;
  t: readonly number[];
  lines: readonly Line[];
  testid: string;
  height?: number;
}

const WIDTH_MIN = 240;
/** The x axis always spans this much, ending at the newest sample: charts side by side line up. */
export const WINDOW_S = 120;

function summary(lines: readonly Line[]): { max: number; last: number } {
  let max = 0;
  let last = 0;
  for (const line of lines) {
    for (const v of line.values) if (v !== null && v > max) max = v;
    last += line.values[line.values.length - 1] ?? 0;
  }
  return { max, last };
}

/** HH:MM:SS of a time in seconds: the window is two minutes, dates would only crowd the axis. */
function clock(seconds: number): string {
  const d = new Date(seconds * 1000);
  return [d.getHours(), d.getMinutes(), d.getSeconds()].map((n) => String(n).padStart(2, '0')).join(':');
}

function options(title: string, unit: string, lines: readonly Line[], width: number, height: number): uPlot.Options {
  return {
    width, height,
    legend: { show: true, live: false },
    cursor: { show: true, drag: { x: false, y: false } },
    scales: {
      x: { time: true, range: (_u, _min, max) => [max - WINDOW_S, max] },
      y: { range: (_u, _min, max) => [0, max > 0 ? max * 1.1 : 1] },
    },
    axes: [{ stroke: '#57606a', grid: { stroke: '#eaeef2' }, values: (_u, splits) => splits.map(clock) }, { stroke: '#57606a', grid: { stroke: '#eaeef2' }, size: 60, label: unit, labelSize: 18 }],
    series: [{}, ...lines.map((l) => ({ label: l.label, stroke: l.color, width: 1.5, points: { show: l.dots === true, size: 4 }, spanGaps: false }))],
    title,
  };
}

export function Chart({ title, unit, t, lines, testid, height = 160 }: Props) {
  const box = useRef<HTMLDivElement>(null);
  const plot = useRef<uPlot | null>(null);
  const shape = lines.map((l) => l.label).join('|');

  // (Re)create the chart when its series change; size it to its box and follow resizes.
  useEffect(() => {
    const el = box.current;
    if (el === null) return undefined;
    const width = Math.max(WIDTH_MIN, el.clientWidth);
    const chart = new uPlot(options(title, unit, lines, width, height), [[...t], ...lines.map((l) => [...l.values])] as uPlot.AlignedData, el);
    plot.current = chart;
    const resize = new ResizeObserver(() => { chart.setSize({ width: Math.max(WIDTH_MIN, el.clientWidth), height }); });
    resize.observe(el);
    return () => {
      resize.disconnect();
      chart.destroy();
      plot.current = null;
    };
  }, [shape, title, unit, height]);

  useEffect(() => {
    plot.current?.setData([[...t], ...lines.map((l) => [...l.values])] as uPlot.AlignedData);
  });

  const { max, last } = summary(lines);
  return (
    <div class="chart" ref={box} data-testid={testid} data-max={String(max)} data-last={String(last)} data-points={String(t.length)} />
  );
}
