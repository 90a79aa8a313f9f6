"""Kubernetes Services as Istio and Ray see them: selection, ports, declared protocol.

Model side, like ``raymodel``: plain facts about parsed objects, no judgement. The audit
judges them; ``render --ports`` tabulates them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .manifests import Manifest

# how Istio reads a port's protocol lives in ``protocol``, which raymodel reads too; the name
# stays importable from here (``ports`` takes it from here)
from .raymodel import Cluster

# KubeRay uses the Service with this label (value: cluster name) as the workers' headless one
HEADLESS_LABEL = "ray.io/headless-worker-svc"


@dataclass
class Service:
    """A ``v1/Service`` object and the namespace it lives in."""

    manifest: Manifest
    namespace: str

    @property
    def obj(self) -> dict[str, Any]:
        return self.manifest.obj

    @property
    def name(self) -> str:
        return self.manifest.name

    @property
    def spec(self) -> dict[str, Any]:
        spec = self.obj.get("spec")
        return spec if isinstance(spec, dict) else {}

    @property
    def headless(self) -> bool:
        return self.spec.get("clusterIP") == "None"

    @property
    def selector(self) -> dict[str, str]:
        sel = self.spec.get("selector")
        return {str(k): str(v) for k, v in sel.items()} if isinstance(sel, dict) else {}

    def meta(self, field_: str) -> dict[str, str]:
        meta = self.obj.get("metadata")
        val = meta.get(field_) if isinstance(meta, dict) else None
        return {str(k): str(v) for k, v in val.items()} if isinstance(val, dict) else {}

    def ports(self) -> list[tuple[int, dict[str, Any]]]:
        """(index in spec.ports, port entry) of every well-formed entry."""
        ports = self.spec.get("ports")
        if not isinstance(ports, list):
            return []
        return [(i, p) for i, p in enumerate(ports) if isinstance(p, dict)]

    def selects(self, labels: dict[str, str]) -> bool:
        sel = self.selector
        return bool(sel) and all(labels.get(k) == v for k, v in sel.items())


def services_in(objs: Sequence[Manifest], namespace: str) -> list[Service]:
    """The core Services among the objects; ``namespace`` for those that set none."""
    return [Service(m, m.namespace(namespace)) for m in objs if is_service(m)]


def is_service(m: Manifest) -> bool:
    return m.kind == "Service" and m.api_group == ""


def selecting(services: Sequence[Service], c: Cluster) -> list[Service]:
    """Services in the cluster's namespace that select the pods of at least one of its groups."""
    return [s for s in services if s.namespace == c.namespace
            and any(s.selects(g.pod_labels(c.name)) for g in c.groups)]


def fqdn_parts(value: str) -> tuple[str, str, str, str]:
    """(service, namespace, cluster domain, pod part) of ``<pod>.<svc>.<ns>.svc.<domain>``."""
    v = value.strip().rstrip(".")
    idx = v.rfind(".svc.")
    if idx < 0:
        return "", "", "", v
    domain = v[idx + 5:]
    head = v[:idx].rsplit(".", 2)
    if len(head) != 3:
        return "", "", domain, v[:idx]
    pod, svc, ns = head
    return svc, ns, domain, pod


def headless_service(services: Sequence[Service], c: Cluster) -> Service | None:
    """The headless Service the cluster's Pod FQDNs live under, when several select it: the one
    its ``node-ip-address`` names, then the one labelled for KubeRay, then the conventional
    ``<cluster>-headless-svc``, then by name. None when no headless Service selects it."""
    headless = [s for s in selecting(services, c) if s.headless]
    if not headless:
        return None
    fqdn_svcs = {fqdn_parts(str(g.params.get("node-ip-address", "")))[0] for g in c.groups}

    def rank(s: Service) -> tuple[bool, bool, bool, str]:
        # a RayJob's cluster: its objects are named after the RayJob (base_name)
        return (s.name not in fqdn_svcs,
                s.meta("labels").get(HEADLESS_LABEL) not in {c.name, c.base_name},
                s.name != f"{c.base_name}-headless-svc", s.name)

    return sorted(headless, key=rank)[0]
