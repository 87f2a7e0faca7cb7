// RDMA verbs probe: the addon dlopens libibverbs (rdma-core) and lists devices and port states.
// Never throws: without the addon, the library or a device, the answer says so.
import { nativeAddon, nativeInfo } from './loader.js';

/** 'unknown' when the addon is not loaded (only it can dlopen libibverbs). */
export type RdmaLibrary = 'missing' | 'loaded' | 'unknown';

export interface RdmaPort {
  port: number;
  /** DOWN, INIT, ARMED, ACTIVE, ACTIVE_DEFER, NOP or UNKNOWN(n). */
  state: string;
}

export interface RdmaDevice {
  name: string;
  ports: RdmaPort[];
}

export interface RdmaProbe {
  library: RdmaLibrary;
  devices: RdmaDevice[];
  reason?: string;
}

/** What the addon's rdmaProbe returns (napi-rs maps Option::None to null or absent). */
export interface NativeRdmaProbe {
  library: string;
  devices: RdmaDevice[];
  reason?: string | null;
}

const DEVICES_SHOWN_MAX = 8; // keeps the status line one line on a host with many HCAs

export function rdmaProbe(): RdmaProbe {
  const addon = nativeAddon();
  if (addon === null) {
    // Only the addon can dlopen libibverbs; say why it is absent (not built, or ONESTACK_NATIVE=off).
    const why = nativeInfo().reason ?? '';
    const reason = why.startsWith('addon not built') ? 'native addon not built' : `native addon not loaded: ${why}`;
    return { library: 'unknown', devices: [], reason };
  }
  if (addon.rdmaProbe === undefined) return { library: 'unknown', devices: [], reason: 'native addon lacks rdmaProbe (stale build? run pnpm build:native)' };
  try {
    const raw = addon.rdmaProbe();
    const library: RdmaLibrary = raw.library === 'loaded' || raw.library === 'missing' ? raw.library : 'unknown';
    const devices = raw.devices.map((d) => ({ name: d.name, ports: d.ports.map((p) => ({ port: p.port, state: p.state })) }));
    return { library, devices, ...(typeof raw.reason === 'string' ? { reason: raw.reason } : {}) };
  } catch (error) {
    // The Rust side never throws on purpose; a throw here means a broken addon, not a crash.
    const message = error instanceof Error ? error.message : String(error);
    return { library: 'unknown', devices: [], reason: `rdma probe failed: ${message}` };
  }
}

function deviceText(device: RdmaDevice): string {
  if (device.ports.length === 0) return `${device.name} (no port answered)`;
  return `${device.name} (${device.ports.map((p) => `port ${p.port} ${p.state}`).join(', ')})`;
}

/**
 * One line: `rdma: no RDMA device (libibverbs not installed)`,
 * `rdma: no RDMA device (libibverbs loaded, 0 devices)`, `rdma: 2 devices: mlx5_0 (port 1 ACTIVE), ...`.
 */
export function formatRdmaLine(probe: RdmaProbe): string {
  if (probe.devices.length === 0) {
    const why = probe.library === 'missing' ? 'libibverbs not installed'
      : probe.library === 'loaded' ? 'libibverbs loaded, 0 devices'
        : `not probed: ${probe.reason ?? 'no reason given'}`;
    return `rdma: no RDMA device (${why})`;
  }
  const shown = probe.devices.slice(0, DEVICES_SHOWN_MAX).map(deviceText);
  if (probe.devices.length > DEVICES_SHOWN_MAX) shown.push(`and ${probe.devices.length - DEVICES_SHOWN_MAX} more`);
  const count = `${probe.devices.length} device${probe.devices.length === 1 ? '' : 's'}`;
  return `rdma: ${count}: ${shown.join(', ')}`;
}
