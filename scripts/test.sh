#!/usr/bin/env bash
# Runs certgate's whole test suite: installs what is missing, checks formatting and lints,
# then runs every test (SoftHSM2 token, SQLite and PostgreSQL, real TLS, browser) once.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup-debian.sh

echo "== format and lint"
cargo fmt --all -- --check
cargo clippy --all-targets --locked -- -D warnings
# The bench's load generator is a crate of its own (not in the workspace), built only by
# bench/run.sh: checked here so that a change to the library's API cannot break it unseen.
CARGO_TARGET_DIR=target cargo check --locked --manifest-path bench/loadgen/Cargo.toml

echo "== deployment files (Kubernetes schemas and cross-checks, systemd-analyze verify)"
cargo build --locked --bin certgate
bash deploy/check.sh

echo "== page tests (headless Chromium: both languages, CSP, PKCS#12 contents)"
node --test tests/browser/

if [ "${CI:-}" = "true" ]; then
  # The fuzz targets' seed corpus also runs as a plain test below; this is a short
  # libFuzzer run of each target. It comes before the tests so their summary ends the log.
  echo "== fuzz"
  bash fuzz/run.sh
fi

echo "== tests"
# CI=true makes tests that need PostgreSQL, SoftHSM2 or Chromium fail instead of skipping.
# One retry: timing tests on a loaded 2-core machine have failed once in a few hundred runs
# (a slow reader's next request, 2026-12-04, not reproduced since). A test that passes only
# on its retry is printed with its first failure and listed as FLAKY in the summary.
cargo nextest run --locked --no-fail-fast --retries 1 "$@"

echo "== HSM tests on openCryptoki's soft token"
# The same key, signing, recovery and refusal tests against a second PKCS#11 implementation,
# and its slot daemon (pkcsslotd) killed and started again under a running signer.
# Its one token and daemon are shared, so the profile runs them one at a time.
# One retry: a single run of this pass once saw curl get no answer from a freshly started
# gateway (lifecycle::est_sqlite, status 0); a retry that passes is reported as FLAKY.
CERTGATE_TEST_TOKEN=opencryptoki cargo nextest run --locked --no-fail-fast --retries 1 \
  --profile opencryptoki -E 'binary(softhsm) & (test(/^hsm::/) | test(/^keystore::/) | test(=lifecycle::est_sqlite) | test(=lifecycle::reissue_sqlite) | test(/^audit_anchor::/) | test(/^pss::/) | test(/^slot_daemon::/))'

