// The built web GUI (packages/web/dist), read once when the API server starts: index.html and
// the files under assets/. Only names found there are served, so no request path can reach
// another file (no traversal to guard against at request time). Missing dist = no GUI: the
// server falls back to the minimal page of page.ts.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import type { ServerResponse } from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** packages/web/dist, seen from packages/cli/{src,dist}/api/. */
export const DEFAULT_WEB_DIR = fileURLToPath(new URL('../../../web/dist', import.meta.url));

const ASSET_FILES_MAX = 256;
const ASSET_BYTES_MAX = 32 * 1024 * 1024;
const ASSET_NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

const CONTENT_TYPES: Readonly<Record<string, string>> = {
  '.js': 'text/javascript; charset=utf-8', '.mjs': 'text/javascript; charset=utf-8', '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml', '.png': 'image/png', '.ico': 'image/x-icon', '.woff2': 'font/woff2', '.json': 'application/json; charset=utf-8',
  '.map': 'application/json; charset=utf-8', '.txt': 'text/plain; charset=utf-8',
};

/**
 * The GUI's policy: scripts, styles and API calls from this origin only, no inline script or
 * style element, no framing, no form posts elsewhere. (uPlot and Preact set styles through the
 * CSSOM, which style-src does not restrict.)
 */
export const GUI_CSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; font-src 'self'; "
  + "base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

interface Asset { readonly body: Buffer; readonly contentType: string }

export class WebRoot {
  readonly dir: string;
  readonly #index: Buffer;
  readonly #assets: ReadonlyMap<string, Asset>;

  private constructor(dir: string, index: Buffer, assets: ReadonlyMap<string, Asset>) {
    this.dir = dir;
    this.#index = index;
    this.#assets = assets;
  }

  /** The GUI in `dir`, or null when it is not built there (no index.html). Bounded in files and bytes. */
  static load(dir: string): WebRoot | null {
    let index: Buffer;
    try {
      index = readFileSync(path.join(dir, 'index.html'));
    } catch {
      return null;
    }
    const assets = new Map<string, Asset>();
    const assetDir = path.join(dir, 'assets');
    let names: string[] = [];
    try {
      names = readdirSync(assetDir);
    } catch {
      names = [];
    }
    let total = index.length;
    for (const name of names.slice(0, ASSET_FILES_MAX)) {
      const contentType = CONTENT_TYPES[path.extname(name).toLowerCase()];
      const file = path.join(assetDir, name);
      if (!ASSET_NAME_RE.test(name) || contentType === undefined || !statSync(file).isFile()) continue;
      const body = readFileSync(file);
      total += body.length;
      if (total > ASSET_BYTES_MAX) throw new Error(`web GUI in ${dir} is larger than ${ASSET_BYTES_MAX} bytes`);
      assets.set(name, { body, contentType });
    }
    return new WebRoot(dir, index, assets);
  }

  get assetCount(): number { return this.#assets.size; }

  /** index.html: holds no data and no token, so it is served to anyone; the page asks for the token. */
  sendIndex(res: ServerResponse, head: boolean): void {
    send(res, 200, 'text/html; charset=utf-8', this.#index, head, { 'cache-control': 'no-store', 'content-security-policy': GUI_CSP });
  }

  /** `name` is the part after /assets/; false when there is no such asset. */
  sendAsset(res: ServerResponse, name: string, head: boolean): boolean {
    const asset = ASSET_NAME_RE.test(name) ? this.#assets.get(name) : undefined;
    if (asset === undefined) return false;
    // Vite names assets by content hash: they never change under the same name.
    send(res, 200, asset.contentType, asset.body, head, { 'cache-control': 'public, max-age=31536000, immutable' });
    return true;
  }
}

function send(res: ServerResponse, status: number, contentType: string, body: Buffer, head: boolean, extra: Record<string, string>): void {
  res.writeHead(status, {
    ...extra, 'content-type': contentType, 'content-length': body.length,
    'x-content-type-options': 'nosniff', 'referrer-policy': 'no-referrer',
  });
  res.end(head ? undefined : body);
}
