#!/usr/bin/env bash
# Fresh machine → `onestack serve` in the foreground on the embedded default (./data, NBD on
# 127.0.0.1:10809, GUI/API on 127.0.0.1:9090). Extra arguments go to `onestack serve`.
# Ctrl-C stops it cleanly.
set -euo pipefail

cd "$(dirname "$0")/.."
log() { printf 'start.sh: %s\n' "$*" >&2; }
# shellcheck source=lib/setup.sh
. scripts/lib/setup.sh

ensure_node
ensure_pnpm
build_project

exec node packages/cli/dist/main.js serve "$@"
