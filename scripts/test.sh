#!/usr/bin/env bash
# Runs certgate's whole test suite: installs what is missing, checks formatting and lints,
# then runs every test (SoftHSM2 token, SQLite and PostgreSQL, real TLS, browser) once.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup-debian.sh

echo "== format and lint"
cargo fmt --all -- --check
cargo clippy --all-targets --locked -- -D warnings

echo "== page tests (headless Chromium: both languages, CSP, PKCS#12 contents)"
node --test tests/browser/

echo "== tests"
# CI=true makes tests that need PostgreSQL, SoftHSM2 or Chromium fail instead of skipping.
cargo nextest run --locked --no-fail-fast "$@"

if [ "${CI:-}" = "true" ]; then
  # The fuzz targets' seed corpus also runs as a plain test above; this is a short fuzzing
  # run of each target (20 s each) with libFuzzer and AddressSanitizer.
  echo "== fuzz"
  bash fuzz/run.sh
fi
