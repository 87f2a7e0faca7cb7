#!/usr/bin/env bash
# Fresh machine → `onestack serve` in the foreground on the embedded default (./data, NBD on
# 127.0.0.1:10809, GUI/API on 127.0.0.1:9090). Extra arguments go to `onestack serve`.
# Ctrl-C stops it cleanly.
set -euo pipefail

cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive
export COREPACK_ENABLE_DOWNLOAD_PROMPT=0

log() { printf 'start.sh: %s\n' "$*" >&2; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"
  elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then sudo -n "$@"
  else log "cannot run as root: $*"; return 1
  fi
}

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

if ! command -v node >/dev/null 2>&1; then install_debs ca-certificates nodejs npm; fi
if [ "$(node -p 'process.versions.node.split(".")[0]')" -lt 20 ]; then
  log "Node $(node --version) is too old: onestack needs Node 20.19 or newer (https://nodejs.org)"
  exit 1
fi
if ! command -v pnpm >/dev/null 2>&1; then
  log "installing pnpm"
  if command -v npm >/dev/null 2>&1; then as_root npm i -g pnpm@9 >/dev/null
  else corepack enable && corepack prepare pnpm@9.15.9 --activate
  fi
fi

pnpm install --frozen-lockfile --config.confirmModulesPurge=false
pnpm --filter @onestack/native run build:native || log "native addon not built: using the pure JS fallback"
pnpm run build

exec node packages/cli/dist/main.js serve "$@"
