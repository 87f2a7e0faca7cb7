// Serves the engine's volumes over NBD: export name = volume name, '' = the boot volume.
import {
  createNbdServer, describeTarget, type NbdServer, type NbdBoundAddress, type NbdListenTarget, type NbdServerStats, type NbdExport, type NbdExportInfo, type NbdExportProvider,
} from '@onestack/nbd';
import type { Engine, LogFn } from './engine.js';
import { nbdExportFor } from './nbd-adapter.js';
import { growNbdError } from './volume-grow.js';
import { loadNbdTls, nbdTlsMode, nbdTlsSetupError, type NbdTlsMode } from './nbd-tls.js';
import type { Volume } from './volume.js';

export interface NbdExportHandle {
  /** Every listener, in the order asked for (an inherited fd reports what it turned out to be). */
  readonly addresses: readonly NbdBoundAddress[];
  /** The first TCP listener's address; '' and 0 when the export listens on Unix sockets only. */
  readonly host: string;
  readonly port: number;
  /** From config nbd.tls: whether clients must, may or cannot use TLS (STARTTLS). */
  readonly tls: NbdTlsMode;
  /** The NBD server itself: a takeover hands its connections over (packages/cli/src/takeover*.ts). */
  readonly server: NbdServer;
  close(): Promise<void>;
}

export interface NbdExportOptions {
  log?: LogFn;
  /** Connections beyond this are refused. Default: config nbd.maxConnections (64). */
  maxConnections?: number;
}

function describe(volume: Volume): string {
  return `onestack ${volume.layout} volume, ${volume.sizeBytes} bytes`;
}

function exportOf(engine: Engine, volume: Volume): NbdExport {
  const config = engine.config;
  const volumeConfig = config.volumes.find((v) => v.name === volume.name);
  // Every connection goes through the same data path, and flush reaches every element: multi-conn is safe.
  const name = volume.name;
  return nbdExportFor(volume.io, {
    name, description: describe(volume), layout: volume.layout,
    chunkBytes: (volumeConfig?.chunkKiB ?? 64) * 1024, elementCount: volumeConfig?.elements.length ?? 1, canMultiConn: true,
    status: {
      allocation: (off, len, max) => engine.allocation(name, off, len, max),
      checkpointNames: () => engine.checkpoints(name).map((c) => c.name),
      dirtyExtents: (checkpoint, off, len, max) => engine.dirtyExtents(name, checkpoint, off, len, max),
      // Offered only by integrity volumes (their checksum store exists once attached).
      ...(engine.integrityStoreOf(name) !== undefined ? { integrityExtents: (off: number, len: number, max: number) => engine.integrityExtents(name, off, len, max) } : {}),
    },
    // NBD_CMD_RESIZE (docs/nbd.md "Growing a volume"): the same grow as `onestack volume grow`.
    grow: (sizeBytes) => engine.growVolume(name, { sizeBytes }).then(() => undefined, (err: unknown) => { throw growNbdError(err); }),
  });
}

function providerFor(engine: Engine): NbdExportProvider {
  return {
    list(): readonly NbdExportInfo[] {
      return engine.volumes().filter((v) => v.open).map((v) => ({ name: v.name, description: describe(v) }));
    },
    open(name: string): NbdExport | undefined {
      try {
        const volume = name === '' ? engine.bootVolume() : engine.volume(name);
        return volume === undefined || !volume.open ? undefined : exportOf(engine, volume);
      } catch {
        return undefined; // unknown or closed: the server answers NBD_REP_ERR_UNKNOWN
      }
    },
  };
}

/** The NBD servers of each engine, for status `io.copies` (their payload copy counters). */
const serversOf = new WeakMap<Engine, Set<{ stats(): NbdServerStats; addresses?: readonly NbdBoundAddress[] }>>();

/** Where the engine's NBD servers listen: "HOST:PORT" or "unix:PATH" (an unnamed inherited socket: "unix:"), for status. */
export function nbdListenAddresses(engine: Engine): string[] {
  const out: string[] = [];
  for (const s of serversOf.get(engine) ?? []) {
    for (const a of s.addresses ?? []) out.push(a.transport === 'tcp' ? (a.host.includes(':') ? `[${a.host}]:${a.port}` : `${a.host}:${a.port}`) : `unix:${a.socketPath ?? ''}`);
  }
  return out;
}

/** Payload copies made by the engine's NBD servers so far (closed servers' counts are dropped). */
export function nbdCopyStats(engine: Engine): NbdServerStats {
  let payloadCopies = 0;
  let payloadBytesCopied = 0;
  for (const s of serversOf.get(engine) ?? []) {
    const one = s.stats();
    payloadCopies += one.payloadCopies;
    payloadBytesCopied += one.payloadBytesCopied;
  }
  return { payloadCopies, payloadBytesCopied };
}

/**
 * Starts an NBD server over the engine's volumes, listening on every target given: TCP
 * addresses, Unix socket paths, inherited listening fds (default: config nbd.listen). A failure
 * on any target closes the ones opened before it. engine.close() closes the server too.
 */
export async function startNbdExport(engine: Engine, listen?: NbdListenTarget | readonly NbdListenTarget[], opts: NbdExportOptions = {}): Promise<NbdExportHandle> {
  const targets: readonly NbdListenTarget[] = listen === undefined ? [engine.config.nbd.listen] : isTargetList(listen) ? listen : [listen];
  if (targets.length === 0) throw new RangeError('startNbdExport: no listen target');
  // Read and checked before listening: a bad cert or key is a config error at start, not per client.
  const tls = loadNbdTls(engine.config);
  let server: ReturnType<typeof createNbdServer>;
  try {
    // Limits and the allowlist come from config nbd (validated there with field paths).
    const nbd = engine.config.nbd;
    server = createNbdServer(providerFor(engine), {
      ...nbd.limits,
      allow: nbd.allow,
      ...(opts.log !== undefined ? { log: opts.log } : {}),
      ...(opts.maxConnections !== undefined ? { maxConnections: opts.maxConnections } : {}),
      ...(tls !== undefined ? { tls } : {}),
    });
  } catch (err) {
    throw tls === undefined ? err : nbdTlsSetupError(engine.config, err);
  }
  const addresses: NbdBoundAddress[] = [];
  for (const target of targets) {
    try {
      addresses.push(await server.listenOn(target));
    } catch (err) {
      await server.close();
      throw withTarget(err, target);
    }
  }
  const servers = serversOf.get(engine) ?? new Set();
  const entry = { stats: () => server.stats(), addresses };
  serversOf.set(engine, servers.add(entry));
  let closing: Promise<void> | null = null;
  const close = (): Promise<void> => {
    closing ??= (async () => {
      unregister();
      servers.delete(entry);
      await server.close();
    })();
    return closing;
  };
  const unregister = engine.onClose(close);
  const tcp = addresses.find((a) => a.transport === 'tcp');
  return {
    addresses, host: tcp?.transport === 'tcp' ? tcp.host : '', port: tcp?.transport === 'tcp' ? tcp.port : 0,
    tls: nbdTlsMode(engine.config.nbd.tls), server, close,
  };
}

function isTargetList(listen: NbdListenTarget | readonly NbdListenTarget[]): listen is readonly NbdListenTarget[] {
  return Array.isArray(listen);
}

/** The listen error with the target it was for, keeping its code (EADDRINUSE, EEXIST, ENOTSOCK...). */
function withTarget(err: unknown, target: NbdListenTarget): unknown {
  if (!(err instanceof Error)) return err;
  const what = describeTarget(target);
  const named = 'socketPath' in target ? target.socketPath : 'fd' in target ? `fd ${target.fd}` : what;
  if (err.message.includes(named)) return err;
  const wrapped: NodeJS.ErrnoException = new Error(`NBD listen on ${what}: ${err.message}`, { cause: err });
  const code = (err as NodeJS.ErrnoException).code;
  if (code !== undefined) wrapped.code = code;
  return wrapped;
}
