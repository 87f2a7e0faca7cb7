// Opens a remote element through our own protocol clients (@onestack/nbd, @onestack/iscsi).
// Both expose the same block-device shape, so the rest of the engine sees one RemoteDevice.
import { NbdClient, type BlockDeviceInfo, type NbdClientOptions } from '@onestack/nbd';
import { IscsiClient } from '@onestack/iscsi';
import { DataPathError, type DataPathErrno } from '../datapath/errno.js';
import type { NbdRemoteSpec, RemoteSpec } from './spec.js';

/** Both clients report the same shape (each protocol package declares it; nbd's is the reference here). */
export type RemoteDeviceInfo = BlockDeviceInfo;

/** The block-device face both protocol clients present. */
export interface RemoteDevice {
  readonly info: RemoteDeviceInfo;
  readonly connected: boolean;
  read(offsetBytes: number, into: Uint8Array): Promise<void>;
  write(offsetBytes: number, data: Uint8Array, flags?: { fua?: boolean }): Promise<void>;
  flush(): Promise<void>;
  trim(offsetBytes: number, lengthBytes: number, flags?: { fua?: boolean }): Promise<void>;
  writeZeroes(offsetBytes: number, lengthBytes: number, flags?: { fua?: boolean; noHole?: boolean }): Promise<void>;
  close(): Promise<void>;
}

export type LogLine = (line: string) => void;

function nbdOptions(spec: NbdRemoteSpec, log?: LogLine): NbdClientOptions {
  const logOpt = log !== undefined ? { log: (line: string) => log(`${spec.where}: ${line}`) } : {};
  return {
    exportName: spec.exportName, timeoutMs: spec.timeoutMs, connections: spec.connections,
    ...(spec.host !== undefined ? { host: spec.host } : {}), ...(spec.port !== undefined ? { port: spec.port } : {}),
    ...(spec.socketPath !== undefined ? { socketPath: spec.socketPath } : {}), ...(spec.tls !== undefined ? { tls: spec.tls } : {}), ...logOpt,
  };
}

export async function connectRemote(spec: RemoteSpec, log?: LogLine): Promise<RemoteDevice> {
  const logOpt = log !== undefined ? { log: (line: string) => log(`${spec.where}: ${line}`) } : {};
  if (spec.kind === 'nbd') return NbdClient.connect(nbdOptions(spec, log));
  return IscsiClient.connect({
    host: spec.host, port: spec.port, targetIqn: spec.targetIqn, lun: spec.lun, timeoutMs: spec.timeoutMs,
    digests: { header: spec.digest, data: spec.digest }, ...(spec.chap !== undefined ? { chap: spec.chap } : {}), ...logOpt,
  });
}

/**
 * A control-plane NBD connection asking block status (allocation/probe-remote.ts): one
 * connection, the given meta contexts selected; the data path's connections never select any.
 */
export function connectStatusProbe(spec: NbdRemoteSpec, metaContexts: readonly string[], log?: LogLine): Promise<NbdClient> {
  return NbdClient.connect({ ...nbdOptions(spec, log), connections: 1, metaContexts });
}

const PASS_THROUGH: ReadonlySet<string> = new Set<DataPathErrno>(['EPERM', 'EIO', 'ENOMEM', 'EINVAL', 'ENOSPC', 'EOVERFLOW', 'ENOTSUP', 'ESHUTDOWN']);

/** A remote failure as the data path's errno: transport trouble (timeouts, resets, refusals) is EIO. */
export function remoteErrno(err: unknown): DataPathErrno {
  const code = typeof err === 'object' && err !== null && 'code' in err ? String((err as { code: unknown }).code) : '';
  return PASS_THROUGH.has(code) ? (code as DataPathErrno) : 'EIO';
}

/** One clear line for logs and errors: the client's own message already names the remote. */
export function remoteError(err: unknown, where: string): DataPathError {
  const message = err instanceof Error ? err.message : String(err);
  return new DataPathError(remoteErrno(err), message.includes(where) ? message : `${where}: ${message}`);
}
