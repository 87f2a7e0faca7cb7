// Headless Debian chromium driven by playwright-core (no browser download): launch, screenshots
// into test/artifacts/, and a log of what the page complained about (console errors, CSP).
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import { REPO_ROOT } from './daemon.js';

export const CHROMIUM_PATH = process.env['ONESTACK_CHROMIUM'] ?? '/usr/bin/chromium';
export const ARTIFACTS_DIR = path.join(REPO_ROOT, 'test', 'artifacts');

const ARGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
];

/** A skip reason when no chromium is installed, else null. */
export function chromiumMissing(): string | null {
  return existsSync(CHROMIUM_PATH)
    ? null
    : `no chromium at ${CHROMIUM_PATH} (apt-get install chromium, as ./scripts/test.sh does; or set ONESTACK_CHROMIUM)`;
}

export function launchBrowser(): Promise<Browser> {
  return chromium.launch({ executablePath: CHROMIUM_PATH, args: ARGS, timeout: 30_000 });
}

/** Saves test/artifacts/gui-NAME.png (full page) and returns its path. */
export async function screenshot(page: Page, name: string): Promise<string> {
  mkdirSync(ARTIFACTS_DIR, { recursive: true });
  const file = path.join(ARTIFACTS_DIR, `gui-${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  return file;
}

/** Console errors and uncaught page errors, as they come (CSP violations are console errors). */
export function watchProblems(page: Page): string[] {
  const problems: string[] = [];
  page.on('console', (msg) => { if (msg.type() === 'error') problems.push(`console: ${msg.text()}`); });
  page.on('pageerror', (err) => { problems.push(`page error: ${err.message}`); });
  return problems;
}

/** Polls `probe` every 100 ms (page time) until `ok` holds (the last value); a timeout shows the last value and `context()` (e.g. the daemon log). */
export async function pageUntil<T>(page: Page, what: string, probe: () => Promise<T>, ok: (v: T) => boolean, timeoutMs = 20_000, context = (): string => ''): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: T = await probe();
  while (!ok(last)) {
    if (Date.now() > deadline) throw new Error(`${what}: still ${JSON.stringify(last)} after ${timeoutMs} ms\n${context()}`);
    await page.waitForTimeout(100);
    last = await probe();
  }
  return last;
}

export interface Dashboard { readonly browser: Browser; readonly page: Page; readonly problems: string[] }

/** Chromium on the daemon's GUI (its API token from DATA/api-token), once the dashboard shows and runs on live events. */
export async function openDashboard(apiPort: number, dataDir: string, context = (): string => ''): Promise<Dashboard> {
  const token = readFileSync(path.join(dataDir, 'api-token'), 'utf8').trim();
  const browser = await launchBrowser();
  const page = await browser.newPage({ viewport: { width: 1360, height: 900 } });
  page.setDefaultTimeout(15_000);
  const problems = watchProblems(page);
  await page.goto(`http://127.0.0.1:${apiPort}/?token=${encodeURIComponent(token)}`);
  await page.getByTestId('dashboard').waitFor();
  await pageUntil(page, 'live mode', () => page.getByTestId('live-mode').getAttribute('data-mode'), (m) => m === 'events', 20_000, context);
  return { browser, page, problems };
}
