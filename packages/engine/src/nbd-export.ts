// Serves the engine's volumes over NBD: export name = volume name, '' = the boot volume.
import { createNbdServer, type NbdServerStats, type NbdExport, type NbdExportInfo, type NbdExportProvider } from '@onestack/nbd';
import type { Engine, LogFn } from './engine.js';
import { nbdExportFor } from './nbd-adapter.js';
import { loadNbdTls, nbdTlsMode, nbdTlsSetupError, type NbdTlsMode } from './nbd-tls.js';
import type { Volume } from './volume.js';

export interface NbdExportHandle {
  readonly host: string;
  readonly port: number;
  /** From config nbd.tls: whether clients must, may or cannot use TLS (STARTTLS). */
  readonly tls: NbdTlsMode;
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
    chunkBytes: (volumeConfig?.chunkKiB ?? 64) * 1024, canMultiConn: true,
    status: {
      allocation: (off, len, max) => engine.allocation(name, off, len, max),
      checkpointNames: () => engine.checkpoints(name).map((c) => c.name),
      dirtyExtents: (checkpoint, off, len, max) => engine.dirtyExtents(name, checkpoint, off, len, max),
    },
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
const serversOf = new WeakMap<Engine, Set<{ stats(): NbdServerStats }>>();

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

/** Starts an NBD server over the engine's volumes (default address: config nbd.listen). engine.close() closes it too. */
export async function startNbdExport(engine: Engine, listen?: { host: string; port: number }, opts: NbdExportOptions = {}): Promise<NbdExportHandle> {
  const address = listen ?? engine.config.nbd.listen;
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
  const bound = await server.listen(address.host, address.port);
  const servers = serversOf.get(engine) ?? new Set();
  serversOf.set(engine, servers.add(server));
  let closing: Promise<void> | null = null;
  const close = (): Promise<void> => {
    closing ??= (async () => {
      unregister();
      servers.delete(server);
      await server.close();
    })();
    return closing;
  };
  const unregister = engine.onClose(close);
  return { host: bound.host, port: bound.port, tls: nbdTlsMode(engine.config.nbd.tls), close };
}
