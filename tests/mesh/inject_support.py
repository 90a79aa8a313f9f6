"""Istio's real sidecar injector, offline: `istioctl kube-inject` with the injection template,
values and mesh config the pinned Istio renders itself (`istioctl manifest generate`: the
`istio-sidecar-injector` and `istio` ConfigMaps), and istiod's own environment from the same
render standing in for the webhook's (the injector reads ENABLE_NATIVE_SIDECARS from its
process environment). No cluster and no network: the revision is given (`-r default`), or
kube-inject would wait for a cluster to tell it the default revision.

Offline, istiod's default ENABLE_NATIVE_SIDECARS=auto means "not native": auto decides from the
Nodes' kubelet versions, which only the webhook in a cluster sees (pkg/kube/inject/webhook.go,
DetectNativeSidecar: native when every Node's kubelet is 1.33 or later).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
ISTIOCTL = REPO / "bin" / "istioctl"
PROXY = "istio-proxy"


@dataclass(frozen=True)
class Injector:
    """What one `istioctl manifest generate --set ...` renders for the sidecar injector."""

    sets: tuple[str, ...]
    config: Path
    values: Path
    mesh: Path
    istiod_env: dict[str, str]


def _istioctl(*args: str, env: dict[str, str] | None = None, stdin: str | None = None) -> str:
    res = subprocess.run(
        [str(ISTIOCTL), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
    )
    assert res.returncode == 0, f"istioctl {' '.join(args)}: {res.stderr}"
    return res.stdout


def injector(workdir: Path, *sets: str) -> Injector:
    """Render the pinned Istio with `sets` and keep its injector ConfigMaps and istiod's env."""
    args = [a for s in sets for a in ("--set", s)]
    docs = [d for d in yaml.safe_load_all(_istioctl("manifest", "generate", *args)) if d]
    cms = {d["metadata"]["name"]: d["data"] for d in docs if d["kind"] == "ConfigMap"}
    istiod = next(
        d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "istiod"
    )
    container = istiod["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e["value"] for e in container.get("env") or [] if "value" in e}
    env.pop("KUBECONFIG", None)  # istiod's in-cluster path; kube-inject stays offline
    d = workdir / hashlib.sha256(json.dumps(sets).encode()).hexdigest()[:12]
    d.mkdir(parents=True, exist_ok=True)
    config, values, mesh = d / "config.yaml", d / "values.json", d / "mesh.yaml"
    config.write_text(cms["istio-sidecar-injector"]["config"])
    values.write_text(cms["istio-sidecar-injector"]["values"])
    mesh.write_text(cms["istio"]["mesh"])
    return Injector(tuple(sets), config, values, mesh, env)


def inject(inj: Injector, pod: dict[str, Any]) -> dict[str, Any]:
    """The Pod as Istio's injector returns it (unchanged when it skips the Pod)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ENABLE_", "PILOT_"))}
    env.update(inj.istiod_env)
    env["KUBECONFIG"] = str(inj.config.parent / "no-cluster")
    out = _istioctl(
        "kube-inject",
        "-r",
        "default",
        "-f",
        "-",
        f"--injectConfigFile={inj.config}",
        f"--valuesFile={inj.values}",
        f"--meshConfigFile={inj.mesh}",
        env=env,
        stdin=yaml.safe_dump(pod),
    )
    return dict(next(d for d in yaml.safe_load_all(out) if d))


def pod_manifest(api: Any, pod: Any) -> dict[str, Any]:
    """A live Pod as the manifest the webhook would be handed."""
    d = dict(api.sanitize_for_serialization(pod))
    d["apiVersion"], d["kind"] = "v1", "Pod"
    d.pop("status", None)
    d["metadata"].pop("managedFields", None)
    return d


# ---- what the injected Pod says ----------------------------------------------------------------
def containers(pod: dict[str, Any], section: str) -> list[dict[str, Any]]:
    return list(pod["spec"].get(section) or [])


def names(pod: dict[str, Any], section: str) -> list[str]:
    return [c["name"] for c in containers(pod, section)]


def proxy(pod: dict[str, Any]) -> tuple[str, int, dict[str, Any]] | None:
    """(section, index, container) of istio-proxy, or None."""
    for section in ("initContainers", "containers"):
        for i, c in enumerate(containers(pod, section)):
            if c["name"] == PROXY:
                return section, i, c
    return None


def native(pod: dict[str, Any]) -> bool:
    """istio-proxy is a Kubernetes native sidecar: an init container that keeps running."""
    p = proxy(pod)
    return p is not None and p[0] == "initContainers" and p[2].get("restartPolicy") == "Always"


def runs_before_proxy(pod: dict[str, Any], init: str) -> bool:
    """The init container `init` starts before istio-proxy is up, so its traffic leaves the pod
    without the sidecar (plaintext, or into iptables rules with nobody listening). Kubernetes
    runs init containers in order, each after the previous one finished or (native sidecar)
    started; every init container finishes before any regular container starts."""
    inits = names(pod, "initContainers")
    assert init in inits, f"{init} is not an init container: {inits}"
    p = proxy(pod)
    return p is None or not native(pod) or inits.index(init) < p[1]


def hold(pod: dict[str, Any]) -> bool:
    """istio-proxy holds the app: first regular container with a postStart `pilot-agent wait`."""
    p = proxy(pod)
    if p is None or p[0] != "containers":
        return False
    cmd = (((p[2].get("lifecycle") or {}).get("postStart") or {}).get("exec") or {}).get("command")
    return p[1] == 0 and cmd == ["pilot-agent", "wait"]


def describe(pod: dict[str, Any]) -> str:
    """`init: a, b (Always) | containers: c, d (held)` for the docs' tables."""

    def fmt(c: dict[str, Any]) -> str:
        return str(c["name"]) + (f" ({c['restartPolicy']})" if c.get("restartPolicy") else "")

    init = ", ".join(fmt(c) for c in containers(pod, "initContainers")) or "-"
    main = ", ".join(fmt(c) for c in containers(pod, "containers"))
    return f"init: {init} | containers: {main}" + (" (held)" if hold(pod) else "")


# ---- istiod's own injection webhook (ControlPlane.start_istiod(injection=...)) ------------------
def injection_dir(inj: Injector, d: Path) -> Path:
    """The files istiod reads its injector from (./var/lib/istio/inject/{config,values})."""
    d.mkdir(parents=True, exist_ok=True)
    (d / "config").write_text(inj.config.read_text())
    (d / "values").write_text(inj.values.read_text())
    return d


def _pointer(doc: Any, path: str) -> tuple[Any, str]:
    parts = [p.replace("~1", "/").replace("~0", "~") for p in path.split("/")[1:]]
    for p in parts[:-1]:
        doc = doc[int(p)] if isinstance(doc, list) else doc[p]
    return doc, parts[-1]


def apply_patch(doc: dict[str, Any], ops: list[dict[str, Any]]) -> dict[str, Any]:
    """RFC 6902 add/replace/remove, the operations Istio's webhook answers with."""
    out: dict[str, Any] = json.loads(json.dumps(doc))
    for op in ops:
        parent, key = _pointer(out, op["path"])
        if isinstance(parent, list):
            i = len(parent) if key == "-" else int(key)
            if op["op"] == "add":
                parent.insert(i, op["value"])
            elif op["op"] == "replace":
                parent[i] = op["value"]
            else:
                del parent[i]
        elif op["op"] == "remove":
            del parent[key]
        else:
            parent[key] = op["value"]
    return out


def webhook_inject(https: str, ca: Path, pod: dict[str, Any]) -> dict[str, Any]:
    """The Pod as istiod's injection webhook patches it (AdmissionReview v1, CREATE); `ca`
    signed istiod's serving certificate."""
    import base64
    import ssl
    import urllib.request

    review = {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "meshray",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": pod["metadata"].get("namespace", "default"),
            "operation": "CREATE",
            "object": pod,
        },
    }
    ctx = ssl.create_default_context(cafile=str(ca))
    req = urllib.request.Request(
        f"{https}/inject",
        data=json.dumps(review).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, context=ctx, timeout=10) as r:
        resp = json.loads(r.read())["response"]
    assert resp.get("allowed"), resp
    patch = json.loads(base64.b64decode(resp["patch"])) if resp.get("patch") else []
    return apply_patch(pod, patch)


# ---- istiod's webhook registered at the API server: Pods injected as they are created ----------
def register_webhook(api: Any, https: str, ca: Path, namespaces: list[str], name: str) -> None:
    """A MutatingWebhookConfiguration sending every Pod created in `namespaces` to istiod's
    injection webhook (`https`/inject, serving certificate signed by `ca`), as Istio's own
    istio-sidecar-injector does in a cluster; the API server stores what it answers. Failing
    closed, so a Pod the webhook cannot inject is refused rather than created bare."""
    import base64

    from kubernetes import client

    body = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": name},
        "webhooks": [
            {
                "name": "rev.namespace.sidecar-injector.istio.io",
                "clientConfig": {
                    "url": f"{https}/inject",
                    "caBundle": base64.b64encode(ca.read_bytes()).decode(),
                },
                "rules": [
                    {
                        "operations": ["CREATE"],
                        "apiGroups": [""],
                        "apiVersions": ["v1"],
                        "resources": ["pods"],
                    }
                ],
                # Only these namespaces: the rest of the suite keeps its uninjected Pods.
                "namespaceSelector": {
                    "matchExpressions": [
                        {
                            "key": "kubernetes.io/metadata.name",
                            "operator": "In",
                            "values": list(namespaces),
                        }
                    ]
                },
                "sideEffects": "None",
                "admissionReviewVersions": ["v1"],
                "failurePolicy": "Fail",
                "reinvocationPolicy": "Never",
                "timeoutSeconds": 10,
            }
        ],
    }
    client.AdmissionregistrationV1Api(api).create_mutating_webhook_configuration(body)


def unregister_webhook(api: Any, name: str) -> None:
    from kubernetes import client

    client.AdmissionregistrationV1Api(api).delete_mutating_webhook_configuration(name)


def injected_on_create(api: Any, namespace: str) -> bool:
    """A Pod labelled for injection, created with dryRun=All in `namespace` (admission runs, the
    webhook included; nothing is stored), comes back with istio-proxy."""
    from kubernetes import client

    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "probe", "labels": {"sidecar.istio.io/inject": "true"}},
        "spec": {"containers": [{"name": "app", "image": "busybox"}]},
    }
    got = client.CoreV1Api(api).create_namespaced_pod(namespace, pod, dry_run="All")
    return proxy(dict(api.sanitize_for_serialization(got))) is not None
