#!/usr/bin/env python3
"""Checks the Kubernetes manifests in deploy/kubernetes (or the folder given) offline.

1. Every document is validated against the Kubernetes OpenAPI schemas that the
   `kubernetes-validate` package ships (strict: unknown fields fail), for the oldest and the
   newest Kubernetes version certgate supports.
2. The manifests are checked against each other and against the certgate.toml of the
   ConfigMap: what a schema cannot see but what makes a deployment fail at run time.

Exits 1 with one line per problem. Needs python3 >= 3.11 (tomllib) and kubernetes-validate.
"""

import sys
import tomllib
from pathlib import Path

import kubernetes_validate
import yaml

# 1.30: the preStop `sleep` action is on by default from this version.
VERSIONS = ["1.30.0", "1.37.0"]
APP = "certgate"


def load(folder):
    docs = []
    for path in sorted(folder.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                docs.append((path.name, doc))
    return docs


def validate(docs, problems):
    for name, doc in docs:
        for version in VERSIONS:
            try:
                kubernetes_validate.validate(doc, version, True)
            except kubernetes_validate.ValidationError as e:
                problems.append(f"{name}: {doc.get('kind')} invalid for {version}: {e.message}")
            except kubernetes_validate.SchemaNotFoundError as e:
                problems.append(f"{name}: no schema for {version}: {e}")


def one(docs, kind):
    found = [d for _, d in docs if d.get("kind") == kind]
    return found[0] if len(found) == 1 else None


def selects_app(doc):
    sel = doc.get("spec", {}).get("selector", {})
    labels = sel.get("matchLabels", sel) if isinstance(sel, dict) else {}
    pod_sel = doc.get("spec", {}).get("podSelector", {}).get("matchLabels", {})
    return labels.get("app.kubernetes.io/name") == APP or pod_sel.get("app.kubernetes.io/name") == APP


def mount_of(container, path):
    """The volumeMount whose mountPath holds `path` (the longest match)."""
    best = None
    for m in container.get("volumeMounts", []):
        mp = m["mountPath"].rstrip("/")
        if (path == mp or path.startswith(mp + "/")) and (best is None or len(mp) > len(best["mountPath"])):
            best = m
    return best


def consistency(docs, problems):
    dep = one(docs, "Deployment")
    cm = one(docs, "ConfigMap")
    if dep is None or cm is None:
        problems.append("expected exactly one Deployment and one ConfigMap")
        return
    cfg = tomllib.loads(cm["data"]["certgate.toml"])
    spec = dep["spec"]
    pod = spec["template"]["spec"]
    main = next(c for c in pod["containers"] if c["name"] == APP)
    volumes = {v["name"]: v for v in pod.get("volumes", [])}

    if spec.get("replicas", 1) < 2:
        problems.append("deployment: fewer than two replicas")
    if not cfg.get("database", {}).get("url", "").startswith("postgres"):
        problems.append("configmap: several replicas need the PostgreSQL store")

    # Grace period: the preStop pause and the whole drain must fit before SIGKILL.
    drain = cfg.get("gateway", {}).get("drain_secs", 30)
    pause = main.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds", 0)
    grace = pod.get("terminationGracePeriodSeconds", 30)
    if grace <= pause + drain:
        problems.append(
            f"deployment: terminationGracePeriodSeconds {grace} must exceed preStop {pause} s + drain_secs {drain}"
        )

    # Probes on the admin listener, readiness on /readyz.
    admin_port = int(cfg.get("admin", {}).get("addr", ":0").rsplit(":", 1)[1])
    ports = {p["name"]: p["containerPort"] for p in main.get("ports", [])}
    if ports.get("admin") != admin_port:
        problems.append(f"deployment: port 'admin' is not [admin] addr's port {admin_port}")
    ready = main.get("readinessProbe", {}).get("httpGet", {})
    if ready.get("path") != "/readyz" or ready.get("port") not in ("admin", admin_port):
        problems.append("deployment: the readiness probe must GET /readyz on the admin port")
    if not main.get("livenessProbe"):
        problems.append("deployment: no liveness probe")

    # The admin port is published by no Service.
    for _, d in docs:
        if d.get("kind") == "Service":
            for p in d["spec"].get("ports", []):
                if p.get("targetPort") in ("admin", admin_port) or p.get("port") == admin_port:
                    problems.append(f"service {d['metadata']['name']}: publishes the admin port")

    # pgpass: sqlx ignores it when group or others may read it. A Secret volume in a pod
    # with fsGroup is always group-readable (0440 at least).
    env = {e["name"]: e.get("value") for e in main.get("env", [])}
    pgpass = env.get("PGPASSFILE")
    if pgpass:
        m = mount_of(main, pgpass)
        vol = volumes.get(m["name"]) if m else None
        if vol is None:
            problems.append(f"deployment: PGPASSFILE {pgpass} is on no volume")
        elif "secret" in vol:
            mode = vol["secret"].get("defaultMode", 0o644)
            for item in vol["secret"].get("items", []):
                mode = item.get("mode", mode)
            if pod.get("securityContext", {}).get("fsGroup") is not None or mode & 0o077:
                problems.append(
                    "deployment: PGPASSFILE is a Secret file the kubelet makes group-readable; sqlx ignores it"
                )
        elif "emptyDir" in vol:
            writers = [
                c for c in pod.get("initContainers", []) if any(v["name"] == m["name"] for v in c.get("volumeMounts", []))
            ]
            if not any("-m 0600" in " ".join(c.get("command", [])) for c in writers):
                problems.append("deployment: no init container writes PGPASSFILE with mode 0600")

    # The HSM module is either in the image (SoftHSM2 build) or on a volume an init
    # container fills.
    module = cfg.get("hsm", {}).get("module", "/usr/lib/softhsm/libsofthsm2.so")
    m = mount_of(main, module)
    if m is None and not module.startswith("/usr/lib/softhsm/"):
        problems.append(f"configmap: [hsm] module {module} is neither in the image nor on a volume")
    if m is not None and not any(
        any(v["name"] == m["name"] for v in c.get("volumeMounts", [])) for c in pod.get("initContainers", [])
    ):
        problems.append(f"deployment: nothing puts the HSM client into volume {m['name']}")

    for kind in ("PodDisruptionBudget", "NetworkPolicy"):
        d = one(docs, kind)
        if d is None or not selects_app(d):
            problems.append(f"no {kind} selecting app.kubernetes.io/name={APP}")


def main():
    folder = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).parent / "kubernetes")
    docs = load(folder)
    problems = []
    validate(docs, problems)
    consistency(docs, problems)
    for p in problems:
        print(f"deploy check: {p}", file=sys.stderr)
    if problems:
        return 1
    print(f"deploy check: {len(docs)} manifests in {folder} valid for Kubernetes {', '.join(VERSIONS)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
