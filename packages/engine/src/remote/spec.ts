// What a thread needs to open a remote element: plain data (it crosses MessagePorts), with the
// secrets and PEM files already read by the control plane. It is never logged or put in status;
// `where` (the URI with any secret masked) is what messages name.
import * as fs from 'node:fs/promises';
import { EngineError } from '../api-types.js';
import type { ElementConfig } from '../config/types.js';
import { ensureRbdElement } from './rbd-access.js';
import { rbdRemoteSpec } from './rbd-device.js';

export interface NbdRemoteSpec {
  readonly kind: 'nbd';
  readonly where: string;
  readonly host?: string;
  readonly port?: number;
  readonly socketPath?: string;
  readonly exportName: string;
  /** Present for nbds: PEM text (absent ca = the system's CAs). */
  readonly tls?: { readonly ca?: string; readonly cert?: string; readonly key?: string };
  readonly connections: number;
  readonly timeoutMs: number;
}

export interface IscsiRemoteSpec {
  readonly kind: 'iscsi';
  readonly where: string;
  readonly host: string;
  readonly port: number;
  readonly targetIqn: string;
  readonly lun: number;
  readonly chap?: { readonly user: string; readonly secret: string; readonly targetUser?: string; readonly targetSecret?: string };
  readonly digest: 'none' | 'crc32c';
  readonly timeoutMs: number;
}

/** rbd:// on the librbd path (remote/rbd-device.ts): librbd reads the keyring file itself. */
export interface RbdRemoteSpec {
  readonly kind: 'rbd';
  readonly where: string;
  readonly pool: string;
  readonly image: string;
  readonly conf: string;
  readonly id: string;
  readonly keyring?: string;
  readonly timeoutMs: number;
}

export type RemoteSpec = NbdRemoteSpec | IscsiRemoteSpec | RbdRemoteSpec;

export function isRemote(config: ElementConfig): boolean {
  return config.location.kind !== 'local';
}

async function readText(file: string, element: string, what: string): Promise<string> {
  try {
    const text = await fs.readFile(file, 'utf8');
    if (text.length > 1 << 20) throw new Error('larger than 1 MiB');
    return text;
  } catch (err) {
    // The file's name is safe to print; its content never is.
    throw new EngineError('config', `element ${element}: cannot read the ${what} file ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, `element ${element}`);
  }
}

/** A secret file holds the secret on its first line (trailing newline and spaces ignored). */
async function readSecret(file: string, element: string, what: string): Promise<string> {
  const secret = (await readText(file, element, what)).split(/\r?\n/)[0]!.trim();
  if (secret === '') throw new EngineError('config', `element ${element}: the ${what} file ${file} is empty`, `element ${element}`);
  return secret;
}

async function chapOf(config: ElementConfig, user: string | undefined): Promise<IscsiRemoteSpec['chap']> {
  const secret = config.secret ?? (config.secretFile !== undefined ? await readSecret(config.secretFile, config.name, 'CHAP secret') : undefined);
  if (user === undefined) {
    if (secret !== undefined) throw new EngineError('config', `element ${config.name}: a CHAP secret needs a user name in the URI (iscsi://USER@HOST/...)`, `element ${config.name}`);
    return undefined;
  }
  if (secret === undefined) throw new EngineError('config', `element ${config.name}: CHAP user ${user} has no secret`, `element ${config.name}`, 'give secretFile: PATH (a file holding the secret)');
  const mutual = config.targetUser !== undefined && config.targetSecretFile !== undefined
    ? { targetUser: config.targetUser, targetSecret: await readSecret(config.targetSecretFile, config.name, 'target CHAP secret') }
    : {};
  return { user, secret, ...mutual };
}

/** Reads the element's secrets and PEM files; throws EngineError('config') naming the file, never its content. */
export async function remoteSpecFor(config: ElementConfig): Promise<RemoteSpec> {
  const loc = config.location;
  if (loc.kind === 'local') throw new Error(`element ${config.name} is local`);
  if (loc.kind === 'nbd') {
    // rbd://: librbd in this process, or a qemu-nbd gateway serving the socket before anyone connects to it.
    if (loc.rbd !== undefined) {
      const path = await ensureRbdElement(config);
      if (path === 'librbd') return rbdRemoteSpec(loc.rbd, config.uri, config.timeoutMs);
    }
    let tls: NbdRemoteSpec['tls'];
    if (loc.tls) {
      const t = config.tls ?? {};
      const pem = async (file: string | undefined, what: string): Promise<string | undefined> => (file === undefined ? undefined : readText(file, config.name, what));
      const [ca, cert, key] = await Promise.all([pem(t.ca, 'TLS CA'), pem(t.cert, 'TLS certificate'), pem(t.key, 'TLS key')]);
      tls = { ...(ca !== undefined ? { ca } : {}), ...(cert !== undefined ? { cert } : {}), ...(key !== undefined ? { key } : {}) };
    }
    return {
      kind: 'nbd', where: config.uri, exportName: loc.exportName, connections: config.connections ?? 1, timeoutMs: config.timeoutMs,
      ...(loc.host !== undefined ? { host: loc.host } : {}), ...(loc.port !== undefined ? { port: loc.port } : {}),
      ...(loc.socketPath !== undefined ? { socketPath: loc.socketPath } : {}), ...(tls !== undefined ? { tls } : {}),
    };
  }
  const chap = await chapOf(config, loc.user);
  return {
    kind: 'iscsi', where: config.uri, host: loc.host, port: loc.port, targetIqn: loc.targetIqn, lun: loc.lun,
    digest: config.digest ?? 'none', timeoutMs: config.timeoutMs, ...(chap !== undefined ? { chap } : {}),
  };
}
