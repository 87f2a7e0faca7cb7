# Shared set-up for start.sh and test.sh (sourced, not run): installs only what is missing.
# The caller defines log() and sets `set -euo pipefail`.
export DEBIAN_FRONTEND=noninteractive
export COREPACK_ENABLE_DOWNLOAD_PROMPT=0

# Root runs apt directly; anyone else needs sudo that works without a prompt (CI has no stdin).
as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"
  elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then sudo -n "$@"
  else log "cannot run as root: $*"; return 1
  fi
}

# `apt-get update` at most once. An installed qemu-utils (maybe from backports) is never
# replaced, see shared/PEERS.md.
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

# qemu-system-x86 (qemu-system-x86_64, qemu-storage-daemon) from the same suite as the installed
# qemu-utils: machines of this kind may carry qemu-utils 10 from bookworm-backports, and a plain
# install of qemu-system-x86 (7.2) would remove it (seen here, shared/PEERS.md).
install_qemu_system() {
  local missing=() pkg version
  for pkg in qemu-system-x86 qemu-block-extra; do dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg"); done
  [ "${#missing[@]}" -eq 0 ] && return 0
  version=$(dpkg-query -W -f='${Version}' qemu-utils 2>/dev/null || true)
  case "$version" in
    *bpo12*)
      log "qemu-utils $version is from bookworm-backports: installing ${missing[*]} from there too"
      if [ ! -e /etc/apt/sources.list.d/bookworm-backports.sources ]; then
        printf 'Types: deb\nURIs: http://deb.debian.org/debian\nSuites: bookworm-backports\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
          | as_root tee /etc/apt/sources.list.d/bookworm-backports.sources >/dev/null
        apt_updated=0
      fi
      if [ "$apt_updated" -eq 0 ]; then as_root apt-get update -q; apt_updated=1; fi
      as_root apt-get install -y -q --no-install-recommends -t bookworm-backports qemu-utils "${missing[@]}" ;;
    *) install_debs "${missing[@]}" ;;
  esac
}

ensure_node() {
  if ! command -v node >/dev/null 2>&1; then install_debs ca-certificates nodejs npm; fi
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

# Packages, the optional native addon (without a Rust toolchain the engine uses pure JS), TS build.
build_project() {
  pnpm install --frozen-lockfile --config.confirmModulesPurge=false
  pnpm --filter @onestack/native run build:native || log "native addon not built: using the pure JS fallback"
  pnpm run build
}
