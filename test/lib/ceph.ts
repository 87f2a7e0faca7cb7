// The real one-node Ceph of ../shared/tools/ceph-single-node.sh (mon, mgr, one OSD, pool rbd,
// image rbd/img): found running, restarted (`start`) or bootstrapped, and read behind onestack's
// back with `rbd export` and qemu-io's own rbd driver.
import { spawn } from 'node:child_process';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import { REPO_ROOT } from './daemon.js';
import { PEER_ENV, explain, missingTools, run } from './proc.js';

export const CEPH_DIR = process.env.CEPH_DIR ?? '/tmp/onestack-ceph';
export const CEPH_CONF = path.join(CEPH_DIR, 'ceph.conf');
// Beside the project (../shared/tools), or where the machine keeps the shared tools when the
// project is a clone elsewhere (CI clones into a fresh directory); CEPH_SCRIPT overrides both.
const SCRIPT_PLACES = [path.resolve(REPO_ROOT, '../shared/tools/ceph-single-node.sh'), '/work/shared/tools/ceph-single-node.sh'];
export const CEPH_SCRIPT = process.env.CEPH_SCRIPT ?? SCRIPT_PLACES.find((p) => existsSync(p)) ?? SCRIPT_PLACES[0]!;
const RBD_MODULE = '/usr/lib/x86_64-linux-gnu/qemu/block-rbd.so';
const CEPH_ENV: NodeJS.ProcessEnv = { ...PEER_ENV, CEPH_CONF };

/** Why the Ceph tests cannot run here (packages absent), or null. */
export function cephMissing(): string | null {
  const tools = missingTools(['ceph', 'rbd', 'ceph-mon', 'ceph-osd', 'qemu-nbd', 'qemu-io', 'nbdcopy', 'fio']);
  if (tools !== null) return `${tools} (install ceph-mon ceph-mgr ceph-osd ceph-common qemu-block-extra, or run ${CEPH_SCRIPT})`;
  if (!existsSync(RBD_MODULE)) return `qemu's rbd driver ${RBD_MODULE} (package qemu-block-extra, same version as qemu-utils)`;
  if (!existsSync(CEPH_SCRIPT)) return `the cluster script ${CEPH_SCRIPT}`;
  return null;
}

export async function cephRunning(): Promise<boolean> {
  if (!existsSync(CEPH_CONF)) return false;
  const r = await run('ceph', ['-s', '--connect-timeout', '5'], { env: CEPH_ENV, timeoutMs: 15_000 });
  return r.code === 0;
}

/** The cluster up: as found, else `start` (state kept from an earlier bootstrap), else a bootstrap (~1.5 min). */
export async function ensureCeph(): Promise<void> {
  if (await cephRunning()) {
    stopScriptGateway();
    // The monitor answers but the OSD may be gone (a run cut short while its OSD-stop test held
    // it down): every image op would then hang, so start it again and wait for clean PGs.
    if (osdPid() === null) {
      await startOsd();
      await pgsClean();
    }
    return;
  }
  const mode = existsSync(path.join(CEPH_DIR, 'mon')) ? 'start' : 'bootstrap';
  const r = await run('bash', [CEPH_SCRIPT, mode], { env: { ...PEER_ENV, CEPH_DIR }, timeoutMs: 280_000 });
  if (r.code !== 0 || !(await cephRunning())) throw new Error(`ceph cluster did not come up (${mode})\n${explain(r)}`);
  stopScriptGateway();
}

/**
 * The script also serves rbd/img with its own qemu-nbd (port 12809, librbd writeback cache): a
 * second client of the image the tests give to onestack's gateway, so it is stopped here.
 */
function stopScriptGateway(): void {
  const pidFile = path.join(CEPH_DIR, 'pids', 'qemu-nbd.pid');
  if (!existsSync(pidFile)) return;
  const pid = Number(readFileSync(pidFile, 'utf8').trim());
  try {
    if (Number.isInteger(pid) && pid > 0) process.kill(pid, 'SIGTERM');
  } catch {
    // already gone
  }
  rmSync(pidFile, { force: true });
}

/** qemu's legacy rbd: filename of rbd/IMAGE with the test cluster's conf. */
export function rbdFilename(image = 'img'): string {
  return `rbd:rbd/${image}:id=admin:conf=${CEPH_CONF}`;
}

/** Zeroes the image's first bytes through qemu-io's rbd driver (no onestack superblock left from an earlier run). */
export async function zeroRbd(lengthBytes: number, image = 'img'): Promise<void> {
  const r = await run('qemu-io', ['-f', 'raw', '-c', `write -z 0 ${lengthBytes}`, rbdFilename(image)], { env: CEPH_ENV, timeoutMs: 60_000 });
  if (r.code !== 0 || /error|failed/i.test(r.stdout + r.stderr)) throw new Error(explain(r));
}

/** The first `lengthBytes` of `rbd export rbd/IMAGE -` (librbd, bypassing onestack and its gateway). */
export function rbdExportHead(lengthBytes: number, image = 'img'): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const child = spawn('rbd', ['export', '--no-progress', `rbd/${image}`, '-'], { env: CEPH_ENV, stdio: ['ignore', 'pipe', 'pipe'] });
    const chunks: Buffer[] = [];
    let have = 0;
    let stderr = '';
    const timer = setTimeout(() => { child.kill('SIGKILL'); reject(new Error(`rbd export: no ${lengthBytes} bytes within 60 s\n${stderr}`)); }, 60_000);
    child.stderr.setEncoding('utf8').on('data', (s: string) => { stderr = (stderr + s).slice(-4000); });
    child.stdout.on('data', (chunk: Buffer) => {
      if (have >= lengthBytes) return;
      chunks.push(chunk);
      have += chunk.length;
      if (have >= lengthBytes) {
        clearTimeout(timer);
        child.kill('SIGTERM'); // the rest of the image is not needed
        resolve(Buffer.concat(chunks).subarray(0, lengthBytes));
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      if (have < lengthBytes) reject(new Error(`rbd export ended (${String(code)}) after ${have} of ${lengthBytes} bytes\n${stderr}`));
    });
  });
}

/** The admin key of the test cluster (to check it never reaches logs or status). */
export function adminKey(): string {
  const text = readFileSync(path.join(CEPH_DIR, 'ceph.client.admin.keyring'), 'utf8');
  return /key\s*=\s*(\S+)/.exec(text)?.[1] ?? '';
}

/** The OSD's pid (from the script's pid file), or null when it is not running. */
export function osdPid(): number | null {
  try {
    const pid = Number(readFileSync(path.join(CEPH_DIR, 'pids', 'osd.0.pid'), 'utf8').trim());
    return Number.isInteger(pid) && pid > 1 && existsSync(`/proc/${pid}`) ? pid : null;
  } catch {
    return null;
  }
}

/** Waits (bounded) until every placement group is active+clean, as the script's wait_clean does. */
async function pgsClean(): Promise<void> {
  const deadline = Date.now() + 120_000;
  while (Date.now() < deadline) {
    const r = await run('ceph', ['pg', 'stat', '--connect-timeout', '5'], { env: CEPH_ENV, timeoutMs: 15_000 });
    const m = /^(\d+) pgs: (\d+) active\+clean;/.exec(r.stdout.trim());
    if (m !== null && m[1] === m[2]) return;
    await new Promise((r2) => setTimeout(r2, 1000));
  }
  throw new Error('ceph placement groups not active+clean within 120 s');
}

/** Starts osd.0 again the way the script does (pid file included) and waits until the cluster has it up (bounded). */
export async function startOsd(): Promise<void> {
  const child = spawn('sh', ['-c', `ceph-osd -i 0 -f >>${CEPH_DIR}/log/osd.0.stdout 2>&1 & echo $! > ${CEPH_DIR}/pids/osd.0.pid`], { env: CEPH_ENV, stdio: 'ignore' });
  await new Promise((resolve) => child.once('exit', resolve));
  const deadline = Date.now() + 90_000;
  while (Date.now() < deadline) {
    const r = await run('ceph', ['osd', 'stat', '--connect-timeout', '5'], { env: CEPH_ENV, timeoutMs: 15_000 });
    if (/1 up/.test(r.stdout)) return;
    await new Promise((r2) => setTimeout(r2, 1000));
  }
  throw new Error('osd.0 not up again within 90 s');
}
