#!/usr/bin/env bash
# `systemd-analyze verify` of certgate.service. The unit names /usr/local/bin/certgate,
# which a build machine does not have: a copy points at the built binary instead
# (CERTGATE_BIN, default target/debug/certgate). systemd-analyze returns 0 on warnings
# such as an unknown key or an unparsable value, so any output counts as a failure.
set -euo pipefail
cd "$(dirname "$0")/../.."
bin=$(realpath "${CERTGATE_BIN:-target/debug/certgate}")
[ -x "$bin" ] || { echo "verify: $bin is not built (cargo build)" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
sed "s#/usr/local/bin/certgate#$bin#g" deploy/systemd/certgate.service > "$tmp/certgate.service"
out=$(systemd-analyze verify "$tmp/certgate.service" 2>&1) || { echo "$out" >&2; exit 1; }
if [ -n "$out" ]; then
  echo "verify: systemd-analyze complains about certgate.service:" >&2
  echo "$out" >&2
  exit 1
fi
# The checker itself must see a broken unit.
sed -i 's#^Type=notify#Type=notfy#' "$tmp/certgate.service"
if [ -z "$(systemd-analyze verify "$tmp/certgate.service" 2>&1)" ]; then
  echo "verify: systemd-analyze did not notice a bad Type=; the check proves nothing" >&2
  exit 1
fi
echo "verify: certgate.service passes systemd-analyze verify"
