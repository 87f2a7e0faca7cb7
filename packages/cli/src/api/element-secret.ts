// POST /api/v1/elements with a CHAP secret (field `secret`, or USER%SECRET@ inside `uri`), as
// the GUI sends it: the daemon keeps the secret in DATA_DIR/secrets/chap-RANDOM.secret (mode
// 0600, directory 0700) and hands the engine that file as `secretFile`, so the element still
// logs in after a restart while the secret stays out of the state file, status, errors and logs.
import { randomBytes } from 'node:crypto';
import { chmodSync, mkdirSync, openSync, closeSync, writeSync, fsyncSync, unlinkSync } from 'node:fs';
import path from 'node:path';
import type { ElementStatus } from '@onestack/engine';
import type { ApiEngine } from './engine-port.js';
import { badRequest } from './http.js';
import { checkAddElement, type AddElementSpec } from './validate.js';
import { splitInlineSecret } from '../uri-secret.js';

export const SECRETS_DIR = 'secrets';
const SECRET_CHARS_MAX = 1024;

export interface AddElementRequest {
  readonly spec: AddElementSpec;
  /** Never logged, echoed or put in an error. */
  readonly secret?: string;
}

/** Validates a POST /elements body; the secret is taken out before anything else looks at it. */
export function checkAddElementRequest(body: unknown): AddElementRequest {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) return { spec: checkAddElement(body) };
  const { secret: field, ...rest } = body as Record<string, unknown>;
  const split = typeof rest['uri'] === 'string' ? splitInlineSecret(rest['uri']) : undefined;
  if (split?.secret !== undefined) rest['uri'] = split.uri;
  const spec = checkAddElement(rest);
  if (field !== undefined && split?.secret !== undefined) throw badRequest('give the secret once: in the URI or in secret', 'secret');
  const secret = field ?? split?.secret;
  if (secret === undefined) return { spec };
  if (typeof secret !== 'string' || secret === '' || secret.length > SECRET_CHARS_MAX || /[\0\r\n]/.test(secret)) {
    throw badRequest(`secret must be a string of 1 to ${SECRET_CHARS_MAX} characters on one line`, 'secret');
  }
  if (!/^iscsi:\/\//i.test(spec.uri)) throw badRequest('a CHAP secret only applies to iscsi:// elements', 'secret');
  if (splitInlineSecret(spec.uri).user === '') throw badRequest('a CHAP secret needs a user in the URI', 'uri', 'iscsi://USER@HOST[:PORT]/IQN/LUN');
  if (spec.secretFile !== undefined) throw badRequest('give the secret once: secret or secretFile', 'secret');
  return { spec, secret };
}

/** Adds the element; with a secret, through a private file that is removed again if the add fails. */
export async function addElement(engine: ApiEngine, request: AddElementRequest): Promise<ElementStatus> {
  if (request.secret === undefined) return engine.addElement(request.spec);
  const file = writeSecretFile(engine.status().dataDir, request.secret);
  try {
    return await engine.addElement({ ...request.spec, secretFile: file });
  } catch (err) {
    try { unlinkSync(file); } catch { /* already gone */ }
    throw err;
  }
}

function writeSecretFile(dataDir: string, secret: string): string {
  const dir = path.join(dataDir, SECRETS_DIR);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  chmodSync(dir, 0o700);
  const file = path.join(dir, `chap-${randomBytes(8).toString('hex')}.secret`);
  const fd = openSync(file, 'wx', 0o600);
  try {
    writeSync(fd, `${secret}\n`);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  return file;
}
