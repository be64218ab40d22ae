#!/usr/bin/env bash
# Starts certgate on its embedded defaults in ./demo: a SoftHSM2 token it creates, SQLite,
# a server certificate for localhost and a sample banking app behind the gateway.
# Installs what a fresh Debian machine lacks first. Ctrl-C stops everything.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-debian.sh
cargo build --locked --bin certgate
exec target/debug/certgate demo --dir "${1:-demo}"
