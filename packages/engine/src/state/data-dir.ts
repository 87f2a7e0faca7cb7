// The data dir: images of the embedded default, the runtime state file and the API token.
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { EngineError } from '../api-types.js';

export const API_TOKEN_FILE = 'api-token';
const TOKEN_MODE = 0o600;

/** Creates the data dir if missing; fails clearly if it is not a writable directory. */
export function ensureDataDir(dir: string): string {
  const resolved = path.resolve(dir);
  try {
    // 0700 when we create it: it holds the API token, secret files and volume images (an existing dir keeps its mode).
    fs.mkdirSync(resolved, { recursive: true, mode: 0o700 });
    if (!fs.statSync(resolved).isDirectory()) throw new Error('not a directory');
    fs.accessSync(resolved, fs.constants.W_OK | fs.constants.R_OK);
  } catch (err) {
    throw new EngineError('io', `cannot use data dir: ${(err as Error).message}`, resolved, 'pass --data-dir DIR (or set ONESTACK_DATA_DIR) to a writable directory');
  }
  return resolved;
}

/** The API token in DIR/api-token, or undefined if there is none (never logged by callers). */
export function readApiToken(dir: string): string | undefined {
  let text: string;
  try {
    text = fs.readFileSync(path.join(dir, API_TOKEN_FILE), 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new EngineError('io', `cannot read the API token: ${(err as Error).message}`, path.join(dir, API_TOKEN_FILE));
  }
  const token = text.trim();
  return /^[\x21-\x7e]{16,512}$/.test(token) ? token : undefined;
}

/** Returns the API token, creating DIR/api-token (mode 0600, 32 random bytes base64url) if missing. */
export function ensureApiToken(dir: string): string {
  const file = path.join(ensureDataDir(dir), API_TOKEN_FILE);
  const existing = readApiToken(dir);
  if (existing !== undefined) {
    if ((fs.statSync(file).mode & 0o777) !== TOKEN_MODE) fs.chmodSync(file, TOKEN_MODE);
    return existing;
  }
  // Missing or unusable: write a fresh one through a private temp file, then rename over.
  const token = randomBytes(32).toString('base64url');
  const tmp = `${file}.tmp-${process.pid}`;
  const fd = fs.openSync(tmp, 'w', TOKEN_MODE);
  try {
    fs.fchmodSync(fd, TOKEN_MODE);
    fs.writeSync(fd, `${token}\n`);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  fs.renameSync(tmp, file);
  return token;
}
