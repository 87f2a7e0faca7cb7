// rbd:// elements, control plane: the image's ownership lock (rbd-lock.ts) first, then the path
// that reaches it — librbd in this process (rbd-native.ts) or a supervised qemu-nbd gateway
// (rbd-gateway.ts) — and the reverse at close: nothing of ours writes the image any more before
// its lock is released. The engine calls only this file; the two paths never see each other.
import type { ElementRbdStatus } from '../api-types.js';
import type { ElementConfig, RbdTarget } from '../config/types.js';
import { EngineError } from '../api-types.js';
import { ensureRbdGateway, fenceRbdGateway, rbdGatewayElement, rbdGatewayStatus, stopRbdGatewayOf, stopRbdGateways, type GatewayLog } from './rbd-gateway.js';
import { rbdLockOf, releaseRbdLockOf, releaseRbdLocks, setRbdClientAddrs, takeRbdLocks } from './rbd-lock.js';
import { ensureRbdNative, fenceRbdNative, rbdNativeElement, rbdNativeStatus, rbdPathChoice, stopRbdNativeOf, stopRbdNatives, type RbdPathChoice } from './rbd-native.js';

const owners = new Map<string, GatewayLog>();
const defaultLog: GatewayLog = (level, msg) => process.stderr.write(`onestack: ${level}: ${msg}\n`);
/** The path each element took when first opened: it does not change under a running engine. */
const chosen = new Map<string, RbdPathChoice>();

interface RbdElement { readonly target: RbdTarget; readonly socketPath: string }

function rbdOf(config: ElementConfig): RbdElement | undefined {
  const loc = config.location;
  return loc.kind === 'nbd' && loc.rbd !== undefined && loc.socketPath !== undefined ? { target: loc.rbd, socketPath: loc.socketPath } : undefined;
}

const logOf = (runDir: string): GatewayLog => owners.get(runDir) ?? defaultLog;
const choiceKey = (r: RbdElement): string => `${r.target.runDir}\0${r.socketPath}`;

/** An engine with this data dir owns the rbd elements placed there; their messages go to its log. */
export function attachRbd(runDir: string, log: GatewayLog): void {
  owners.set(runDir, log);
}

function choose(config: ElementConfig, r: RbdElement): RbdPathChoice {
  const known = chosen.get(choiceKey(r));
  if (known !== undefined) return known;
  let choice: RbdPathChoice;
  try {
    choice = rbdPathChoice(r.target);
  } catch (err) {
    throw new EngineError('config', `element ${config.name}: ${(err as Error).message}`, `element ${config.name}`, 'build the native addon (pnpm build:native) with librbd1 installed, or drop ?path=librbd to use the qemu-nbd gateway');
  }
  if (choice.path === 'gateway' && choice.fallback !== undefined) logOf(r.target.runDir)('info', `rbd ${r.target.pool}/${r.target.image} (element ${config.name}): qemu-nbd gateway, because ${choice.fallback}`);
  chosen.set(choiceKey(r), choice);
  return choice;
}

/**
 * Makes the element's image reachable: its lock (a no-op once held; an element added at run time
 * is locked too), then the keeper or the gateway. Returns the path the data path must use.
 */
export async function ensureRbdElement(config: ElementConfig): Promise<'librbd' | 'gateway'> {
  const r = rbdOf(config);
  if (r === undefined) throw new Error(`element ${config.name} is not rbd://`);
  const other = rbdNativeElement(r.target) ?? rbdGatewayElement(r.socketPath);
  if (other !== undefined && other !== config.name) throw new EngineError('conflict', `rbd image ${r.target.pool}/${r.target.image} is already element ${other}`);
  const choice = choose(config, r);
  const log = logOf(r.target.runDir);
  await takeRbdLocks(r.target.runDir, [config], log);
  if (choice.path === 'gateway') {
    await ensureRbdGateway(r.target, r.socketPath, config.name, log);
    return 'gateway';
  }
  await ensureRbdNative(config, r.target, log, (addrs) => setRbdClientAddrs(r.target.runDir, config.name, addrs));
  return 'librbd';
}

/** Closes one element's path and releases its lock (element removed, or opened only for a check). */
export async function stopRbdElementOf(config: ElementConfig): Promise<void> {
  const r = rbdOf(config);
  if (r === undefined) return;
  chosen.delete(choiceKey(r));
  await Promise.all([stopRbdGatewayOf(r.socketPath), stopRbdNativeOf(r.target)]);
  await releaseRbdLockOf(r.target.runDir, config.name, logOf(r.target.runDir));
}

/** Closes every rbd path of the engine whose data dir is runDir, then releases its locks. */
export async function stopRbdElements(runDir: string): Promise<void> {
  for (const key of [...chosen.keys()]) if (key.startsWith(`${runDir}\0`)) chosen.delete(key);
  await Promise.all([stopRbdGateways(runDir), stopRbdNatives(runDir)]);
  await releaseRbdLocks(runDir, logOf(runDir)); // only once nothing of ours writes the images
  owners.delete(runDir);
}

/** The ownership lock is lost: the gateway is killed, the librbd handle refuses every request. */
export function fenceRbdElement(config: ElementConfig, why: string): void {
  const r = rbdOf(config);
  if (r === undefined) return;
  fenceRbdGateway(r.socketPath, why);
  fenceRbdNative(r.target, why, logOf(r.target.runDir));
}

/** `status().elements[].rbd`, or undefined for elements that are not rbd://. */
export function rbdStatusOf(config: ElementConfig): ElementRbdStatus | undefined {
  const r = rbdOf(config);
  if (r === undefined) return undefined;
  const choice = chosen.get(choiceKey(r));
  const lock = rbdLockOf(r.target.runDir, config.name);
  const path = choice?.path === 'librbd' ? rbdNativeStatus(r.target)
    : { ...rbdGatewayStatus(r.target, r.socketPath), ...(choice?.path === 'gateway' && choice.fallback !== undefined ? { fallback: choice.fallback } : {}) };
  return lock === null ? path : { ...path, lock };
}

/** `{ rbd }` for a status spread. */
export function rbdField(config: ElementConfig): { rbd?: ElementRbdStatus } {
  const rbd = rbdStatusOf(config);
  return rbd === undefined ? {} : { rbd };
}
