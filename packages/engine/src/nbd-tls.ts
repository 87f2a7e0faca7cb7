// nbd.tls → the NBD server's TLS options. The config holds file paths only; the PEM files are
// read here, when the export starts, so key material never sits in EngineConfig (which status,
// the API and error messages may print). Every failure is a config error naming its field.
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import type { NbdServerTlsOptions } from '@onestack/nbd';
import { EngineError } from './api-types.js';
import type { EngineConfig, TlsConfig } from './config/types.js';

/** How clients meet TLS on the NBD port: as shown in status and the start-up banner. */
export type NbdTlsMode = 'required' | 'optional' | 'off';

// A PEM certificate chain or key is a few KiB; refuse to slurp a mistaken multi-GB path.
const PEM_BYTES_MAX = 1024 * 1024;

export function nbdTlsMode(tls: TlsConfig | undefined): NbdTlsMode {
  if (tls?.cert === undefined || tls.key === undefined) return 'off';
  return tls.require ? 'required' : 'optional';
}

function tlsError(config: EngineConfig, key: string, message: string, hint: string): EngineError {
  const field = `nbd.tls${key === '' ? '' : `.${key}`}`;
  return new EngineError('config', `${field}: ${message}`, config.sourcePath === undefined ? field : `${config.sourcePath} ${field}`, hint);
}

function readPem(config: EngineConfig, key: 'cert' | 'key' | 'ca', file: string): Buffer {
  let bytes: Buffer;
  try {
    const stat = statSync(file);
    if (!stat.isFile()) throw new Error('not a regular file');
    if (stat.size > PEM_BYTES_MAX) throw new Error(`too large (${stat.size} bytes) for a PEM file`);
    bytes = readFileSync(file);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const reason = code === 'ENOENT' ? 'file not found' : code === 'EACCES' ? 'permission denied' : (err as Error).message;
    throw tlsError(config, key, `cannot read ${file}: ${reason}`, 'relative paths are resolved against the config file\'s directory');
  }
  try {
    // Parsed one by one so that the error names the field; OpenSSL's messages never quote the PEM.
    if (key === 'key') createPrivateKey(bytes);
    else new X509Certificate(bytes);
  } catch (err) {
    const what = key === 'key' ? 'an unencrypted PEM private key' : 'a PEM certificate';
    throw tlsError(config, key, `${file} is not ${what} (${(err as Error).message})`, `point ${key} at ${what}`);
  }
  return bytes;
}

/** The NBD server's TLS options, or undefined when TLS is off. Throws EngineError('config'). */
export function loadNbdTls(config: EngineConfig): NbdServerTlsOptions | undefined {
  const tls = config.nbd.tls;
  if (tls === undefined || nbdTlsMode(tls) === 'off' || tls.cert === undefined || tls.key === undefined) return undefined;
  return {
    cert: readPem(config, 'cert', tls.cert),
    key: readPem(config, 'key', tls.key),
    ...(tls.ca !== undefined ? { ca: readPem(config, 'ca', tls.ca) } : {}),
    require: tls.require,
    verifyClient: tls.verifyClient,
  };
}

/** createNbdServer refused the material as a whole (e.g. the key does not belong to the cert). */
export function nbdTlsSetupError(config: EngineConfig, err: unknown): EngineError {
  const message = err instanceof Error ? err.message : String(err);
  return tlsError(config, '', message, 'check that key is the private key of cert');
}
