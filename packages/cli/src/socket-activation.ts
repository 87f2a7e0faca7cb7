// systemd socket activation (sd_listen_fds(3)): the supervisor opens the listening sockets and
// passes them from fd 3 on, with LISTEN_PID (who they are for), LISTEN_FDS (how many) and
// LISTEN_FDNAMES (colon-separated names, FileDescriptorName= in the .socket unit). Pure
// functions over the environment; serve.ts opens the fds.
import { usageError } from './errors.js';

/** The first passed fd (SD_LISTEN_FDS_START). */
export const LISTEN_FDS_START = 3;
/** More than this many passed fds is a mistake, not a plan. */
const LISTEN_FDS_MAX = 64;
const NAME_NBD = 'nbd';
const NAME_API = 'api';

export interface ActivationFds {
  /** Served over NBD: every fd named "nbd", else the first fd not named "api". */
  readonly nbd: readonly number[];
  /** Served as the HTTP API/GUI: the fd named "api". */
  readonly api?: number;
  /** Passed but not used (named something else), for a warning. */
  readonly unused: readonly { fd: number; name: string }[];
  /** The LISTEN_FDNAMES entry of each fd, for the log ("unknown" when unnamed). */
  readonly names: ReadonlyMap<number, string>;
}

export type ActivationResult =
  | { readonly kind: 'none' }
  /** LISTEN_FDS set for another process (our parent's, leaked into our environment). */
  | { readonly kind: 'other-pid'; readonly listenPid: string }
  | { readonly kind: 'fds'; readonly fds: ActivationFds };

const KEYS = ['LISTEN_PID', 'LISTEN_FDS', 'LISTEN_FDNAMES'] as const;

/**
 * Reads LISTEN_* for process `pid`. Malformed values are usage errors (exit 2): a supervisor
 * that sets them wrong would otherwise leave the daemon listening somewhere unexpected.
 */
export function readActivation(env: NodeJS.ProcessEnv, pid: number): ActivationResult {
  const listenPid = env.LISTEN_PID;
  const listenFds = env.LISTEN_FDS;
  if (listenPid === undefined || listenFds === undefined) return { kind: 'none' };
  if (!/^\d{1,10}$/.test(listenPid)) throw usageError(`LISTEN_PID=${JSON.stringify(listenPid.slice(0, 40))} is not a process id`, 'LISTEN_PID');
  if (Number(listenPid) !== pid) return { kind: 'other-pid', listenPid };
  if (!/^\d{1,3}$/.test(listenFds) || Number(listenFds) > LISTEN_FDS_MAX) {
    throw usageError(`LISTEN_FDS=${JSON.stringify(listenFds.slice(0, 40))} is not a count from 0 to ${LISTEN_FDS_MAX}`, 'LISTEN_FDS');
  }
  const count = Number(listenFds);
  if (count === 0) return { kind: 'none' };
  const rawNames = env.LISTEN_FDNAMES;
  const names = rawNames === undefined || rawNames === '' ? [] : rawNames.split(':');
  if (names.length > 0 && names.length !== count) {
    throw usageError(`LISTEN_FDNAMES names ${names.length} fds but LISTEN_FDS is ${count}`, 'LISTEN_FDNAMES');
  }
  return { kind: 'fds', fds: assignFds(count, names) };
}

function assignFds(count: number, names: readonly string[]): ActivationFds {
  const byFd = new Map<number, string>();
  for (let i = 0; i < count; i++) byFd.set(LISTEN_FDS_START + i, names[i] ?? 'unknown');
  const fds = [...byFd.keys()];
  const named = (name: string): number[] => fds.filter((fd) => byFd.get(fd) === name);
  const apiFds = named(NAME_API);
  if (apiFds.length > 1) throw usageError(`${apiFds.length} passed fds are named "api"; the API listens on one`, 'LISTEN_FDNAMES');
  let nbd = named(NAME_NBD);
  // Unnamed (or named after the unit, systemd's default): the first one that is not the API's.
  if (nbd.length === 0) nbd = fds.filter((fd) => byFd.get(fd) !== NAME_API).slice(0, 1);
  if (nbd.length === 0) throw usageError('no passed fd for NBD: the only fd is named "api" (name the NBD socket "nbd")', 'LISTEN_FDNAMES');
  const api = apiFds[0];
  const unused = fds.filter((fd) => !nbd.includes(fd) && fd !== api).map((fd) => ({ fd, name: byFd.get(fd) ?? 'unknown' }));
  return { nbd, ...(api !== undefined ? { api } : {}), unused, names: byFd };
}

/** Removes LISTEN_* so processes we start do not take the sockets for theirs (sd_listen_fds(unset=1)). */
export function clearActivation(env: NodeJS.ProcessEnv): void {
  for (const key of KEYS) delete env[key];
}
