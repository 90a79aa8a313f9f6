"""Helm and API-server helpers of the cluster suite, and the Service side of the port oracle.

Everything here reads live objects or runs the real helm; nothing calls meshray's code.
"""

from __future__ import annotations

import ipaddress
import os
import subprocess
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml
from kubernetes import client, dynamic
from kubernetes.client.rest import ApiException

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "meshray"
HELMS = {
    "helm4": os.environ.get("MESHRAY_HELM") or str(REPO / "bin" / "helm"),
    "helm3": os.environ.get("MESHRAY_HELM3") or str(REPO / "bin" / "helm3" / "helm"),
}
T = TypeVar("T")


def wait_for(
    what: str, fn: Callable[[], T | None], timeout: float = 60.0, interval: float = 0.25
) -> T:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            got = fn()
            if got:
                return got
        except (ApiException, AssertionError, ValueError) as e:
            last = e
        time.sleep(interval)
    raise AssertionError(
        f"timed out after {timeout:.0f}s waiting for {what}" + (f": {last}" if last else "")
    )


@dataclass
class Helm:
    binary: str
    kubeconfig: Path

    def run(
        self, *args: str, check: bool = True, timeout: float = 180
    ) -> subprocess.CompletedProcess[str]:
        env = {
            **os.environ,
            "KUBECONFIG": str(self.kubeconfig),
            "HELM_CACHE_HOME": "/tmp/helm-cache",
            "HELM_CONFIG_HOME": "/tmp/helm-config",
            "HELM_DATA_HOME": "/tmp/helm-data",
        }
        res = subprocess.run(
            [self.binary, *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=timeout,
            check=False,
        )
        if check and res.returncode != 0:
            raise AssertionError(
                f"{Path(self.binary).name} {' '.join(args)} failed "
                f"({res.returncode}):\n{res.stderr}{res.stdout[-2000:]}"
            )
        return res

    def install(
        self, release: str, ns: str, *values: str, check: bool = True, extra: Iterable[str] = ()
    ) -> subprocess.CompletedProcess[str]:
        args = ["install", release, str(CHART), "-n", ns, "--create-namespace"]
        for v in values:
            args += ["-f", v]
        return self.run(*args, *extra, check=check)

    def template(
        self, release: str, ns: str, *values: str, extra: Iterable[str] = ()
    ) -> list[dict[str, Any]]:
        args = ["template", release, str(CHART), "-n", ns]
        for v in values:
            args += ["-f", v]
        out = self.run(*args, *extra).stdout
        return [d for d in yaml.safe_load_all(out) if d]


# ---- live objects -----------------------------------------------------------------------------
def dyn(api: Any) -> dynamic.DynamicClient:
    return dynamic.DynamicClient(api)


def get_live(api: Any, obj: dict[str, Any], ns: str) -> dict[str, Any]:
    res = dyn(api).resources.get(api_version=obj["apiVersion"], kind=obj["kind"])
    got = res.get(name=obj["metadata"]["name"], namespace=obj["metadata"].get("namespace", ns))
    return dict(got.to_dict())


SERVER_METADATA = (
    "uid",
    "resourceVersion",
    "creationTimestamp",
    "managedFields",
    "generation",
    "selfLink",
)
HELM_METADATA = {"annotations": ("meta.helm.sh/release-name", "meta.helm.sh/release-namespace")}


def diff_paths(rendered: Any, live: Any, path: str = "") -> tuple[list[str], list[str]]:
    """(changed, added): paths where the live object differs from the render, and paths the
    live object has that the render does not (server defaults). List items are compared by
    position; added paths use [] for any index so they can be named generically."""
    changed: list[str] = []
    added: list[str] = []
    if isinstance(rendered, dict) and isinstance(live, dict):
        # YAML map keys may be integers (portLevelMtls: {8080: ...}); JSON keys are strings.
        rendered = {str(k): v for k, v in rendered.items()}
        for k, v in rendered.items():
            if k not in live:
                changed.append(f"{path}.{k} (missing live)")
            else:
                c, a = diff_paths(v, live[k], f"{path}.{k}")
                changed += c
                added += a
        added += [f"{path}.{k}" for k in live if k not in rendered]
    elif isinstance(rendered, list) and isinstance(live, list):
        if len(rendered) != len(live):
            changed.append(f"{path} (length {len(rendered)} rendered, {len(live)} live)")
        for i, (r, lv) in enumerate(zip(rendered, live, strict=False)):
            c, a = diff_paths(r, lv, f"{path}[{i}]")
            changed += c
            added += [p.replace(f"{path}[{i}]", f"{path}[]", 1) for p in a]
    elif rendered != live and not (_num(rendered) and str(rendered) == str(live)):
        changed.append(f"{path}: rendered {rendered!r}, live {live!r}")
    return changed, added


def _num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def strip_server_fields(live: dict[str, Any]) -> dict[str, Any]:
    live = dict(live)
    live.pop("status", None)
    md = dict(live.get("metadata", {}))
    for k in SERVER_METADATA:
        md.pop(k, None)
    ann = {
        k: v
        for k, v in (md.get("annotations") or {}).items()
        if k not in HELM_METADATA["annotations"]
    }
    if ann:
        md["annotations"] = ann
    else:
        md.pop("annotations", None)
    live["metadata"] = md
    return live


# ---- the Service side of the port oracle -----------------------------------------------------
@dataclass
class LiveService:
    name: str
    headless: bool
    selector: dict[str, str]
    ports: dict[int, dict[str, Any]] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)

    def selects(self, pod: Any) -> bool:
        labels = pod.metadata.labels or {}
        return bool(self.selector) and all(labels.get(k) == v for k, v in self.selector.items())


def live_services(core: client.CoreV1Api, ns: str) -> list[LiveService]:
    out = []
    for s in core.list_namespaced_service(ns).items:
        ports: dict[int, dict[str, Any]] = {}
        for p in s.spec.ports or []:
            # A Service port is what other pods dial; the pod listens on the targetPort.
            target = p.target_port
            number = target if isinstance(target, int) else p.port
            ports[int(number)] = {
                "name": p.name,
                "appProtocol": p.app_protocol,
                "port": p.port,
                "targetPort": target,
            }
        out.append(
            LiveService(
                s.metadata.name,
                s.spec.cluster_ip == "None",
                dict(s.spec.selector or {}),
                ports,
                dict(s.metadata.labels or {}),
            )
        )
    return out


def resolve_named_target(pod: Any, svc: LiveService) -> dict[int, dict[str, Any]]:
    """Service ports whose targetPort is a name resolve to the pod's containerPort of that name."""
    named = {
        p.name: p.container_port for c in pod.spec.containers for p in (c.ports or []) if p.name
    }
    out: dict[int, dict[str, Any]] = {}
    for num, info in svc.ports.items():
        t = info["targetPort"]
        if isinstance(t, str) and not t.isdigit():
            if t in named:
                out[int(named[t])] = info
        else:
            out[int(t) if t is not None else num] = info
    return out


def pod_fqdn(pod: Any, svc: LiveService, ns: str, domain: str = "cluster.local") -> str:
    ip = ipaddress.ip_address(pod.status.pod_ip)
    dashed = str(ip).replace(".", "-").replace(":", "-")
    return f"{dashed}.{svc.name}.{ns}.svc.{domain}"


def ray_pods(core: client.CoreV1Api, ns: str, cluster: str | None = None) -> list[Any]:
    sel = "ray.io/is-ray-node=yes" + (f",ray.io/cluster={cluster}" if cluster else "")
    return list(core.list_namespaced_pod(ns, label_selector=sel).items)


def pod_security_refusals(core: client.CoreV1Api, ns: str) -> list[str]:
    """The Events of a namespace that carry a PodSecurity admission refusal (the operator
    records each failed Pod creation with the API server's message)."""
    return [
        str(e.message)
        for e in core.list_namespaced_event(ns).items
        if "violates PodSecurity" in str(e.message or "")
    ]


def running(pods: list[Any]) -> bool:
    return bool(pods) and all(
        p.status.phase == "Running" and p.status.pod_ip and not p.metadata.deletion_timestamp
        for p in pods
    )


class Cluster:
    """One running control plane of the cluster suite (the `cluster` fixture)."""

    def __init__(self, cp: Any, kubelet: Any, version: str) -> None:
        self.cp = cp
        self.kubelet = kubelet
        self.version = version
        self.api = cp.api_client()
        self.kubeconfig = cp.kubeconfig
