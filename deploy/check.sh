#!/usr/bin/env bash
# Offline checks of what deploy/ ships: the Kubernetes manifests (schemas of
# kubernetes-validate plus cross-checks, deploy/check.py), mutated copies that must fail
# (so the checks can fail), and the systemd unit (systemd-analyze verify).
# Outside CI a missing tool is a skip with a message; under CI=true it is a failure.
set -euo pipefail
cd "$(dirname "$0")/.."

missing() {
  if [ "${CI:-}" = "true" ]; then echo "deploy check: $1 (required under CI)" >&2; exit 1; fi
  echo "SKIP deploy check: $1"
}

if python3 -c 'import kubernetes_validate' 2>/dev/null; then
  python3 deploy/check.py deploy/kubernetes
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
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

if command -v systemd-analyze >/dev/null 2>&1; then
  bash deploy/systemd/verify.sh
else
  missing "systemd-analyze is not installed (Debian package systemd)"
fi
