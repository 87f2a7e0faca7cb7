// GET / when the web GUI (packages/web) is not built: a small page rendered on the server from
// the status object, volumes and elements with their state, reloaded every few seconds. It says
// that the GUI is missing and how to build it. No script runs; every value is HTML-escaped.
import type { EngineStatus } from '@onestack/engine';
import { formatBytes } from '../render.js';

export const PAGE_REFRESH_S = 5;

export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

const STATE_COLOR: Readonly<Record<string, string>> = {
  optimal: '#1a7f37', active: '#1a7f37', degraded: '#9a6700', rebuilding: '#0969da', spare: '#57606a',
  failed: '#cf222e', stale: '#9a6700',
};

function state(text: string): string {
  return `<span class="state" style="color:${STATE_COLOR[text] ?? '#24292f'}">${escapeHtml(text)}</span>`;
}

function row(cells: readonly string[]): string {
  return `<tr>${cells.map((c) => `<td>${c}</td>`).join('')}</tr>`;
}

export function renderPage(status: EngineStatus, version: string): string {
  const volumes = status.volumes.map((v) => row([
    `<b>${escapeHtml(v.name)}</b>${v.boot ? ' (boot)' : ''}`, escapeHtml(v.layout), state(v.state), formatBytes(v.sizeBytes),
    v.rebuild === null ? '&ndash;' : `${v.rebuild.percent.toFixed(1)}%`,
    v.elements.map((e) => `${escapeHtml(e.name)} ${state(e.state)}`).join(', '),
    `${v.stats.readOps} / ${v.stats.writeOps}`,
  ]));
  const elements = status.elements.map((e) => row([
    escapeHtml(e.name), escapeHtml(e.kind), state(e.state), formatBytes(e.sizeBytes),
    e.volume === null ? '&ndash;' : escapeHtml(`${e.volume}[${e.role ?? '-'}]`), String(e.errors), `<code>${escapeHtml(e.uri)}</code>`,
  ]));
  const p = status.pools;
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="refresh" content="${PAGE_REFRESH_S}">
<meta name="referrer" content="no-referrer">
<title>onestack</title>
<style>
body{font:14px/1.4 system-ui,sans-serif;margin:2em;color:#24292f}
table{border-collapse:collapse;margin-bottom:1.5em}td,th{border-bottom:1px solid #d0d7de;padding:.3em .8em;text-align:left}
th{background:#f6f8fa}.state{font-weight:600}code{font-size:90%}footer{color:#57606a;font-size:12px}
.missing{background:#fff8c5;border:1px solid #d4a72c;padding:.5em .8em}
</style></head><body>
<h1>onestack</h1>
<h2>Volumes</h2>
${status.volumes.length === 0 ? '<p>No volumes.</p>' : `<table><tr><th>Name</th><th>Layout</th><th>State</th><th>Size</th><th>Rebuilt</th><th>Elements</th><th>Ops read / write</th></tr>
${volumes.join('\n')}</table>`}
<h2>Elements</h2>
${status.elements.length === 0 ? '<p>No elements.</p>' : `<table><tr><th>Name</th><th>Kind</th><th>State</th><th>Size</th><th>Volume</th><th>Errors</th><th>URI</th></tr>
${elements.join('\n')}</table>`}
<p>Pools: top ${p.top.threads} (queued ${p.top.queueDepth}), middle ${p.middle.threads} (queued ${p.middle.queueDepth}),
bottom ${p.bottom.threads} (queued ${p.bottom.queueDepth}). I/O backend: ${escapeHtml(status.native.backend)}.</p>
<p class="missing"><b>The web GUI is not built</b> (no <code>packages/web/dist/index.html</code>): this is the minimal read-only
page. Run <code>pnpm run build</code> and restart the daemon for the interactive GUI.</p>
<footer>onestack ${escapeHtml(version)}. This page is rendered by the daemon and reloads every ${PAGE_REFRESH_S} s; it changes
nothing. Manage volumes with the <code>onestack</code> CLI or the JSON API under
<code>/api/v1</code> (header <code>Authorization: Bearer TOKEN</code>).</footer>
</body></html>
`;
}

export function renderUnauthorizedPage(): string {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="referrer" content="no-referrer"><title>onestack: token needed</title></head>
<body style="font:14px system-ui,sans-serif;margin:2em">
<h1>Token needed</h1>
<p>Open the GUI URL that <code>onestack serve</code> printed at start-up: it ends in <code>?token=&hellip;</code>.
The token is also in the file <code>api-token</code> in the daemon's data dir.</p>
</body></html>
`;
}
