#!/usr/bin/env bash
# A short cargo-fuzz run of every target (FUZZ_SECONDS each, default 20), starting from a
# copy of the committed seed corpus so the repository tree is not written to. Needs
# cargo-fuzz (installed when missing) and nightly features, enabled on the stable
# toolchain with RUSTC_BOOTSTRAP=1. A finding fails the run and is kept in
# fuzz/artifacts/<target>/ (replay: cargo fuzz run <target> <file>).
set -euo pipefail
cd "$(dirname "$0")/.."

secs="${FUZZ_SECONDS:-20}"
# The fuzzed code is safe Rust (#![forbid(unsafe_code)]); AddressSanitizer would mostly
# slow the build of the C dependencies. FUZZ_SANITIZER=address turns it on.
sanitizer="${FUZZ_SANITIZER:-none}"
command -v cargo-fuzz >/dev/null || cargo install --locked cargo-fuzz
export RUSTC_BOOTSTRAP=1

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
targets=(csr est_body ocsp_request identity_headers canonical_path)
cargo fuzz build -s "$sanitizer"
for t in "${targets[@]}"; do
  mkdir -p "$work/$t"
  echo "== fuzz $t for ${secs}s"
  cargo fuzz run -s "$sanitizer" "$t" "$work/$t" "fuzz/corpus/$t" -- \
    -max_total_time="$secs" -rss_limit_mb=2048 -print_final_stats=1
done
