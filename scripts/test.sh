#!/usr/bin/env bash
# Fresh machine → installed peers, built packages, whole test suite. `.ci/run` calls exactly this.
# Ends with one line "N passed, N failed, N skipped"; exits non-zero on any failure or if nothing ran.
set -euo pipefail

cd "$(dirname "$0")/.."
log() { printf 'test.sh: %s\n' "$*" >&2; }

# If set-up fails before vitest reports, still end with the summary line CI looks for.
step="start"
summary_printed=0
on_exit() {
  local rc=$?
  if [ "$summary_printed" -eq 0 ]; then
    log "failed during: $step (exit $rc)"
    echo "0 passed, 1 failed, 0 skipped"
  fi
  exit "$rc"
}
trap on_exit EXIT

# shellcheck source=lib/setup.sh
. scripts/lib/setup.sh

step="installing Debian packages"
# Test-only peers (PEERS.md): NBD clients/servers, qemu, fio, FUSE, ext4 and loop tools, iSCSI,
# systemd-socket-activate (package systemd; test/socket-activation.test.ts), and a one-node Ceph
# for the rbd:// tests (test/lib/ceph.ts bootstraps it, ~1.5 min; qemu's rbd driver is in
# qemu-block-extra, which install_qemu_system keeps on the same suite as qemu-utils), and nftables
# to cut one daemon off from that cluster (test/rbd-partition.test.ts).
install_debs ca-certificates nbdkit libnbd-bin python3-libnbd qemu-utils fio fuse3 e2fsprogs \
  util-linux mount tgt libiscsi-bin chromium systemd uuid-runtime \
  ceph-mon ceph-mgr ceph-osd ceph-common nftables
install_qemu_system
step="installing node/pnpm"
ensure_node
ensure_pnpm

step="pnpm install and build"
build_project
step="pnpm exec tsc -p bench"
pnpm exec tsc -p bench
step="vitest"

mkdir -p .tmp
report=.tmp/vitest.json
rm -f "$report"
vitest_rc=0
# Bounded: the suite (about 25 minutes with the Ceph tests and their cluster bootstrap) must
# finish well inside CI's 60 minutes.
timeout --kill-after=30s 35m pnpm exec vitest run --reporter=default --reporter=json \
  --outputFile="$report" || vitest_rc=$?

summary_rc=0
node - "$report" "$vitest_rc" <<'JS' || summary_rc=$?
const fs = require('node:fs');
const [reportPath, vitestRc] = process.argv.slice(2);
let r = null;
try { r = JSON.parse(fs.readFileSync(reportPath, 'utf8')); } catch { r = null; }
if (r === null) {
  console.log(`vitest wrote no report (exit ${vitestRc})`);
  console.log('0 passed, 0 failed, 0 skipped');
  process.exit(1);
}
// A file that fails to load has no failed tests of its own: count it as one failure.
const brokenFiles = (r.testResults ?? []).filter(
  (f) => f.status === 'failed' && !(f.assertionResults ?? []).some((a) => a.status === 'failed'));
for (const f of brokenFiles) console.log(`failed to run: ${f.name}: ${(f.message ?? '').split('\n')[0]}`);
const passed = r.numPassedTests ?? 0;
const failed = (r.numFailedTests ?? 0) + brokenFiles.length;
const skipped = (r.numPendingTests ?? 0) + (r.numTodoTests ?? 0);
console.log(`${passed} passed, ${failed} failed, ${skipped} skipped`);
process.exit(failed > 0 || passed === 0 || Number(vitestRc) !== 0 ? 1 : 0);
JS
summary_printed=1
exit "$summary_rc"
