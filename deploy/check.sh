#!/usr/bin/env bash
# Offline checks of what deploy/ ships: the Kubernetes manifests (schemas of
# kubernetes-validate plus cross-checks, deploy/check.py), the Prometheus rules and the
# Grafana dashboard (promtool, deploy/check_monitoring.py), mutated copies that must fail
# (so the checks can fail), and the systemd unit (systemd-analyze verify).
# Outside CI a missing tool is a skip with a message; under CI=true it is a failure.
set -euo pipefail
cd "$(dirname "$0")/.."

missing() {
  if [ "${CI:-}" = "true" ]; then echo "deploy check: $1 (required under CI)" >&2; exit 1; fi
  echo "SKIP deploy check: $1"
}

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

if python3 -c 'import kubernetes_validate' 2>/dev/null; then
  python3 deploy/check.py deploy/kubernetes
  # Each mutation brings back one of the faults deploy/check.py exists to catch.
  mutate() {
    rm -rf "$tmp/k" && cp -r deploy/kubernetes "$tmp/k"
    sed -i "$2" "$tmp/k/$1"
    if python3 deploy/check.py "$tmp/k" 2>"$tmp/err"; then
      echo "deploy check: the mutation '$2' of $1 was not caught" >&2; exit 1
    fi
    grep -q "$3" "$tmp/err" || { echo "deploy check: '$2' failed for another reason:" >&2; cat "$tmp/err" >&2; exit 1; }
  }
  # PGPASSFILE on the Secret volume itself (the mount of issue 20).
  mutate deployment.yaml '/^      volumes:/,$ { s#name: db-secret$#name: TMP#; s#name: db$#name: db-secret#; s#name: TMP$#name: db# }' 'group-readable'
  mutate deployment.yaml 's#terminationGracePeriodSeconds: 45#terminationGracePeriodSeconds: 30#' 'terminationGracePeriodSeconds'
  mutate deployment.yaml 's#  replicas: 2#  replicas: 1#' 'two replicas'
  mutate deployment.yaml 's#path: /readyz#path: /readyzz#' 'readiness probe'
  mutate deployment.yaml 's#periodSeconds: 5#periodSecond: 5#' 'invalid for'
  mutate service.yaml 's#targetPort: https#targetPort: admin#' 'publishes the admin port'
  mutate configmap.yaml 's#/opt/hsm/lib/libpkcs11.so#/opt/cloudhsm/lib/libcloudhsm_pkcs11.so#' 'neither in the image'
  echo "deploy check: 7 faulty variants refused"
else
  missing "kubernetes-validate is not installed (python3 -m pip install kubernetes-validate)"
fi

# Monitoring: every metric the rules and the dashboard name must be one certgate exposes
# (read from src/), and the dashboard's expressions must parse (promtool, below).
if python3 -c 'import yaml' 2>/dev/null; then
  python3 deploy/check_monitoring.py --exprs-out "$tmp/dashboard-exprs.yaml"
  # Each mutation must be refused with the given message: $1 the file or folder to copy,
  # $2 the checker's option for it, $3 the sed, $4 the message, $5 (a folder) the file
  # in it that the sed changes.
  refuse() {
    rm -rf "$tmp/m" && mkdir "$tmp/m" && cp -r "$1" "$tmp/m/"
    local copy
    copy="$tmp/m/$(basename "$1")"
    if [ -d "$copy" ]; then sed -i "$3" "$copy/$5"; else sed -i "$3" "$copy"; fi
    if python3 deploy/check_monitoring.py "$2" "$copy" 2>"$tmp/err" >/dev/null; then
      echo "deploy check: the mutation '$3' of $1 was not caught" >&2; exit 1
    fi
    grep -q "$4" "$tmp/err" || { echo "deploy check: '$3' failed for another reason:" >&2; cat "$tmp/err" >&2; exit 1; }
  }
  refuse deploy/prometheus/certgate-rules.yaml --rules \
    's/certgate_hsm_sign_failures_total{/certgate_hsm_sign_failure_total{/' \
    'certgate_hsm_sign_failure_total is not a metric certgate exposes'
  refuse deploy/prometheus/certgate-rules.yaml --rules \
    's/{job="certgate", kind="server"}/{kind="server"}/' 'without job="certgate"'
  refuse deploy/grafana/certgate-dashboard.json --dashboard 's/"id": 2,/"id": 1,/' 'duplicate panel id'
  # A metric renamed in the source, the rules and dashboard left as they were.
  refuse src --src 's/"hsm_sign_failures"/"hsm_signing_failures"/' \
    'certgate_hsm_sign_failures_total is not a metric certgate exposes' telemetry/signing.rs
  echo "deploy check: 4 faulty monitoring variants refused"
else
  missing "PyYAML is not installed (Debian package python3-yaml)"
fi

promtool=$(command -v promtool || true)
if [ -z "$promtool" ] && [ -x /usr/bin/promtool ]; then promtool=/usr/bin/promtool; fi
if [ -n "$promtool" ]; then
  "$promtool" check rules deploy/prometheus/certgate-rules.yaml
  "$promtool" test rules deploy/prometheus/certgate-rules.test.yaml
  if [ -e "$tmp/dashboard-exprs.yaml" ]; then
    "$promtool" check rules "$tmp/dashboard-exprs.yaml" >/dev/null
    echo "deploy check: the dashboard's expressions parse"
  fi
  # The unit tests must be able to fail: a raised threshold stops CertgateCodeGuessing.
  rm -rf "$tmp/p" && cp -r deploy/prometheus "$tmp/p"
  sed -i 's/^          > 20$/          > 200/' "$tmp/p/certgate-rules.yaml"
  if "$promtool" test rules "$tmp/p/certgate-rules.test.yaml" >"$tmp/err" 2>&1; then
    echo "deploy check: promtool test rules did not notice a raised threshold" >&2; exit 1
  fi
  grep -q 'CertgateCodeGuessing' "$tmp/err" || { echo "deploy check: the raised threshold failed for another reason:" >&2; cat "$tmp/err" >&2; exit 1; }
  echo "deploy check: promtool test rules notices a raised threshold"
else
  missing "promtool is not installed (Debian package prometheus)"
fi

if command -v systemd-analyze >/dev/null 2>&1; then
  bash deploy/systemd/verify.sh
else
  missing "systemd-analyze is not installed (Debian package systemd)"
fi
