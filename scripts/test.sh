#!/usr/bin/env bash
# Fresh machine → installed peers, built packages, whole test suite. `.ci/run` calls exactly this.
# Ends with one line "N passed, N failed, N skipped"; exits non-zero on any failure or if nothing ran.
set -euo pipefail

cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive
export COREPACK_ENABLE_DOWNLOAD_PROMPT=0

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

# Root runs apt directly; anyone else needs sudo that works without a prompt (CI has no stdin).
as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"
  elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then sudo -n "$@"
  else log "cannot run as root: $*"; return 1
  fi
}

# Installs only what is missing; `apt-get update` at most once. An installed qemu-utils (maybe
# from backports) is never replaced, see ../shared/PEERS.md.
apt_updated=0
install_debs() {
  local missing=() pkg
  for pkg in "$@"; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
  done
  [ "${#missing[@]}" -eq 0 ] && return 0
  log "installing Debian packages: ${missing[*]}"
  if [ "$apt_updated" -eq 0 ]; then as_root apt-get update -q; apt_updated=1; fi
  as_root apt-get install -y -q --no-install-recommends "${missing[@]}"
}

ensure_node() {
  if ! command -v node >/dev/null 2>&1; then install_debs nodejs npm; fi
  local major
  major="$(node -p 'process.versions.node.split(".")[0]')"
  if [ "$major" -lt 20 ]; then
    log "Node $(node --version) is too old: onestack needs Node 20.19 or newer (https://nodejs.org)"
    exit 1
  fi
}

ensure_pnpm() {
  command -v pnpm >/dev/null 2>&1 && return 0
  log "installing pnpm"
  if command -v npm >/dev/null 2>&1; then as_root npm i -g pnpm@9 >/dev/null
  else corepack enable && corepack prepare pnpm@9.15.9 --activate
  fi
}

step="installing Debian packages"
# Test-only peers (PEERS.md): NBD clients/servers, qemu, fio, FUSE, ext4 and loop tools, iSCSI.
install_debs ca-certificates nbdkit libnbd-bin python3-libnbd qemu-utils fio fuse3 e2fsprogs \
  util-linux mount tgt libiscsi-bin
step="installing node/pnpm"
ensure_node
ensure_pnpm

step="pnpm install --frozen-lockfile"
pnpm install --frozen-lockfile --config.confirmModulesPurge=false
# The native addon is optional: without a Rust toolchain the engine falls back to pure JS.
pnpm --filter @onestack/native run build:native || log "native addon not built: using the pure JS fallback"
step="pnpm run build"
pnpm run build
step="pnpm exec tsc -p bench"
pnpm exec tsc -p bench
step="vitest"

mkdir -p .tmp
report=.tmp/vitest.json
rm -f "$report"
vitest_rc=0
# Bounded: the suite must finish well inside CI's 30 minutes.
timeout --kill-after=30s 25m pnpm exec vitest run --reporter=default --reporter=json \
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
