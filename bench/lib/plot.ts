// The run as a picture: grouped bars, one group per workload, one bar per system, each bar the
// system's headline figure ÷ raw fio's (page cache) for that workload, on a log scale so equal
// ratios look equally far apart. Drawn as SVG here, rendered to PNG by resvg (@resvg/resvg-js).
import { writeFile } from 'node:fs/promises';
import { Resvg } from '@resvg/resvg-js';
import { headline, type Workload } from './fio.js';
import type { SystemDef, SystemGroup } from './systems.js';
import { findCell, type Cell } from './targets.js';

const WIDTH_PX = 1480;
const HEIGHT_PX = 720;
const M = { left: 70, right: 380, top: 90, bottom: 60 };
const REFERENCE = 'raw-fio';
const FONT = 'DejaVu Sans, Liberation Sans, Arial, sans-serif';

/** Colours by group: greys for the limit, cool for peers, warm for onestack. */
const PALETTE: Record<SystemGroup, readonly string[]> = {
  raw: ['#4d4d4d', '#a6a6a6'],
  peer: ['#1f77b4', '#6baed6', '#17becf', '#2ca02c', '#98df8a', '#9467bd', '#c5b0d5'],
  daemon: ['#d62728', '#ff7f0e', '#ffbb78', '#e7969c', '#bcbd22'],
  embedded: ['#8c2d04', '#e377c2'],
};

export interface PlotInput {
  readonly systems: readonly SystemDef[];
  readonly workloads: readonly Workload[];
  readonly cells: readonly Cell[];
  readonly subtitle: string;
}

interface Bar { readonly system: number; readonly workload: number; readonly value: number | null }

function esc(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

/** Each system ÷ the reference of its workload: raw fio, or the best system when raw fio did not run. */
function bars(p: PlotInput): { bars: Bar[]; reference: string[] } {
  const out: Bar[] = [];
  const reference: string[] = [];
  p.workloads.forEach((w, wi) => {
    const ref = findCell(p.cells, REFERENCE, w.id)?.figures;
    const best = Math.max(0, ...p.systems.map((s) => { const f = findCell(p.cells, s.id, w.id)?.figures; return f === undefined ? 0 : headline(f, w); }));
    const base = ref !== undefined && headline(ref, w) > 0 ? headline(ref, w) : best;
    reference.push(ref !== undefined && headline(ref, w) > 0 ? REFERENCE : 'best system');
    p.systems.forEach((s, si) => {
      const f = findCell(p.cells, s.id, w.id)?.figures;
      out.push({ system: si, workload: wi, value: f === undefined || !(base > 0) ? null : headline(f, w) / base });
    });
  });
  return { bars: out, reference };
}

function colours(systems: readonly SystemDef[]): string[] {
  const used: Record<SystemGroup, number> = { raw: 0, peer: 0, daemon: 0, embedded: 0 };
  return systems.map((s) => { const list = PALETTE[s.group]; return list[used[s.group]++ % list.length]!; });
}

/** Log-scale bounds on the 1-2-5 ticks that hold every value and 1.0. */
function scale(values: readonly number[]): { ticks: number[]; lo: number; hi: number } {
  const all: number[] = [];
  for (let e = -4; e <= 2; e++) for (const m of [1, 2, 5]) all.push(m * 10 ** e);
  const positive = values.filter((v) => v > 0);
  const min = Math.min(1, ...positive);
  const max = Math.max(1, ...positive);
  const lo = [...all].reverse().find((t) => t <= min) ?? all[0]!;
  const hi = all.find((t) => t >= max * 1.15) ?? all[all.length - 1]!;
  return { ticks: all.filter((t) => t >= lo && t <= hi), lo, hi };
}

function axes(y: (v: number) => number, ticks: readonly number[], plotW: number): string[] {
  const out: string[] = [];
  for (const t of ticks) {
    const yy = y(t).toFixed(1);
    const one = t === 1;
    out.push(`<line x1="${M.left}" x2="${M.left + plotW}" y1="${yy}" y2="${yy}" stroke="${one ? '#000' : '#ddd'}" stroke-width="${one ? 1.5 : 1}"${one ? ' stroke-dasharray="6 4"' : ''}/>`);
    out.push(`<text x="${M.left - 8}" y="${yy}" text-anchor="end" dominant-baseline="middle" font-size="12">${t >= 1 ? t.toFixed(0) : String(t)}×</text>`);
  }
  out.push(`<text x="18" y="${M.top + (HEIGHT_PX - M.top - M.bottom) / 2}" font-size="13" transform="rotate(-90 18 ${M.top + (HEIGHT_PX - M.top - M.bottom) / 2})" text-anchor="middle">figure ÷ raw fio (log scale)</text>`);
  return out;
}

function barShapes(p: PlotInput, data: readonly Bar[], y: (v: number) => number, lo: number, fill: readonly string[]): string[] {
  const plotW = WIDTH_PX - M.left - M.right;
  const groupW = plotW / p.workloads.length;
  const barW = (groupW * 0.86) / p.systems.length;
  const out: string[] = [];
  for (const b of data) {
    const x = M.left + b.workload * groupW + groupW * 0.07 + b.system * barW;
    const cx = (x + barW / 2).toFixed(1);
    if (b.value === null) {
      out.push(`<text x="${cx}" y="${y(lo) - 4}" font-size="10" text-anchor="middle" fill="#c00">✗</text>`);
      continue;
    }
    const top = y(Math.max(b.value, lo));
    out.push(`<rect x="${x.toFixed(1)}" y="${top.toFixed(1)}" width="${(barW * 0.9).toFixed(1)}" height="${(y(lo) - top).toFixed(1)}" fill="${fill[b.system]}"/>`);
    const label = b.value >= 10 ? b.value.toFixed(0) : b.value >= 1 ? b.value.toFixed(1) : b.value.toFixed(2);
    out.push(`<text x="${cx}" y="${(top - 4).toFixed(1)}" font-size="10" text-anchor="start" stroke="#fff" stroke-width="3" paint-order="stroke" transform="rotate(-90 ${cx} ${(top - 4).toFixed(1)})" dominant-baseline="middle">${label}</text>`);
  }
  return out;
}

function legend(systems: readonly SystemDef[], fill: readonly string[]): string[] {
  const x = WIDTH_PX - M.right + 24;
  const out = [`<text x="${x}" y="${M.top - 8}" font-size="13" font-weight="bold">systems (bar order)</text>`];
  systems.forEach((s, i) => {
    const yy = M.top + 8 + i * 22;
    out.push(`<rect x="${x}" y="${yy}" width="14" height="14" fill="${fill[i]}"/>`);
    out.push(`<text x="${x + 20}" y="${yy + 11}" font-size="12">${esc(s.label)}</text>`);
  });
  return out;
}

export function plotSvg(p: PlotInput): string {
  const { bars: data, reference } = bars(p);
  const { ticks, lo, hi } = scale(data.flatMap((b) => (b.value === null ? [] : [b.value])));
  const plotW = WIDTH_PX - M.left - M.right;
  const plotH = HEIGHT_PX - M.top - M.bottom;
  const y = (v: number): number => M.top + plotH * (1 - (Math.log(v) - Math.log(lo)) / (Math.log(hi) - Math.log(lo)));
  const fill = colours(p.systems);
  const groupW = plotW / p.workloads.length;
  const labels = p.workloads.map((w, i) => {
    const cx = M.left + (i + 0.5) * groupW;
    const note = reference[i] === REFERENCE ? '' : ` (÷ ${reference[i]})`;
    return `<text x="${cx.toFixed(1)}" y="${HEIGHT_PX - M.bottom + 22}" font-size="13" text-anchor="middle">${esc(w.title + note)}</text>`;
  });
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH_PX}" height="${HEIGHT_PX}" viewBox="0 0 ${WIDTH_PX} ${HEIGHT_PX}" font-family="${FONT}">`,
    `<rect width="${WIDTH_PX}" height="${HEIGHT_PX}" fill="#fff"/>`,
    `<text x="${M.left}" y="32" font-size="20" font-weight="bold">onestack bench: each system ÷ raw fio (io_uring, page cache) on the same image</text>`,
    `<text x="${M.left}" y="54" font-size="13" fill="#444">${esc(p.subtitle)}</text>`,
    `<text x="${M.left}" y="72" font-size="13" fill="#444">higher is better; dashed line = raw fio (1×); ✗ = no figure (failed)</text>`,
    ...axes(y, ticks, plotW),
    ...barShapes(p, data, y, lo, fill),
    `<line x1="${M.left}" x2="${M.left}" y1="${M.top}" y2="${M.top + plotH}" stroke="#000"/>`,
    ...labels,
    ...legend(p.systems, fill),
    '</svg>',
  ].join('\n');
}

/** Writes FILE.svg and FILE.png; returns the PNG path. */
export async function writePlot(p: PlotInput, fileNoExt: string): Promise<string> {
  const svg = plotSvg(p);
  await writeFile(`${fileNoExt}.svg`, svg);
  const png = new Resvg(svg, { font: { loadSystemFonts: true, defaultFontFamily: 'DejaVu Sans' }, background: '#fff' }).render().asPng();
  await writeFile(`${fileNoExt}.png`, png);
  return `${fileNoExt}.png`;
}
