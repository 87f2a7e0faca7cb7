// Opens a remote element through our own protocol clients (@onestack/nbd, @onestack/iscsi).
// Both expose the same block-device shape, so the rest of the engine sees one RemoteDevice.
import { MetaContext, NbdClient, type BlockDeviceInfo, type NbdClientOptions } from '@onestack/nbd';
import { IscsiClient, type IscsiClientOptions } from '@onestack/iscsi';
import { DataPathError, type DataPathErrno } from '../datapath/errno.js';
import type { IscsiRemoteSpec, NbdRemoteSpec, RemoteSpec } from './spec.js';
import { explainGateway } from './rbd-gateway.js';
import { RbdDevice } from './rbd-device.js';

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

function iscsiOptions(spec: IscsiRemoteSpec, log?: LogLine): IscsiClientOptions {
  const logOpt = log !== undefined ? { log: (line: string) => log(`${spec.where}: ${line}`) } : {};
  return {
    host: spec.host, port: spec.port, targetIqn: spec.targetIqn, lun: spec.lun, timeoutMs: spec.timeoutMs,
    digests: { header: spec.digest, data: spec.digest }, ...(spec.chap !== undefined ? { chap: spec.chap } : {}), ...logOpt,
  };
}

export async function connectRemote(spec: RemoteSpec, log?: LogLine): Promise<RemoteDevice> {
  if (spec.kind === 'nbd') return NbdClient.connect(nbdOptions(spec, log)).catch((err: unknown) => { throw explainGateway(spec.socketPath, err); });
  if (spec.kind === 'rbd') return RbdDevice.connect(spec);
  return IscsiClient.connect(iscsiOptions(spec, log));
}

/** What the allocation probe (allocation/probe-remote.ts) needs of a remote element. */
export interface StatusProbeClient {
  readonly info: RemoteDeviceInfo;
  /** Why this remote cannot tell holes from data (no base:allocation, a thick LUN), or null. */
  readonly unsupported: string | null;
  /** Extents from offsetBytes (flags: 1 hole, 2 reads as zeroes), at least one, maybe covering less than asked. */
  blockStatus(offsetBytes: number, lengthBytes: number): Promise<readonly { readonly lengthBytes: number; readonly flags: number }[]>;
  close(): Promise<void>;
}

/**
 * A control-plane connection asking block status, apart from the data path's: NBD with one
 * connection and base:allocation selected (the data path's select none), iSCSI a session of
 * its own (a random ISID: never a reinstatement of the data path's) using GET LBA STATUS.
 */
export async function connectStatusProbe(spec: RemoteSpec, log?: LogLine): Promise<StatusProbeClient> {
  if (spec.kind === 'nbd') {
    const base = MetaContext.BASE_ALLOCATION;
    const c = await NbdClient.connect({ ...nbdOptions(spec, log), connections: 1, metaContexts: [base] });
    return { info: c.info, unsupported: c.metaContexts.includes(base) ? null : 'the server offers no base:allocation', blockStatus: (o, l) => c.blockStatus(o, l, base), close: () => c.close() };
  }
  if (spec.kind === 'rbd') {
    const d = await RbdDevice.connect(spec);
    return { info: d.info, unsupported: null, blockStatus: (o, l) => d.blockStatus(o, l), close: () => d.close() };
  }
  const c = await IscsiClient.connect(iscsiOptions(spec, log));
  return { info: c.info, unsupported: c.canBlockStatus ? null : 'the LUN is not thin-provisioned (or lacks GET LBA STATUS)', blockStatus: (o, l) => c.blockStatus(o, l), close: () => c.close() };
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
