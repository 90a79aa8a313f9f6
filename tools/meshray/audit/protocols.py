"""One pod port, one protocol: what Istio's inbound listener for a Ray pod's port speaks.

istiod builds a pod's inbound filter chain for a port from the Services that select the pod,
unless an Istio ``Sidecar`` selecting the pod lists that port in its ``ingress`` (then the
Sidecar's protocol is used and the Services are not consulted for it). When two Services that
select the same pod declare one target port with different protocols (``appProtocol``, else
the port-name prefix), istiod keeps one of them: the older Service, alphabetical within the same
second (measured with the real istiod, docs/mesh-e2e.md). KubeRay's own ``<cluster>-head-svc``
declares every port ``tcp`` (kuberay#1946), so a headless Service declaring the head's metrics
port ``http`` is L7 in one install and plain TCP in the next.

Pods in Istio's ambient mode (labelled ``istio.io/dataplane-mode: ambient``) have no inbound
listener to decide: ztunnel is L4, and a waypoint builds a chain per Service VIP from that
Service's own protocol and sniffs traffic addressed to the pod (measured with the real istiod,
docs/ambient.md), so two Services' protocols for one port are no conflict there.
"""

from __future__ import annotations

from typing import Any

from ..manifests import Manifest
from ..protocol import declared_protocol
from ..raymodel import Cluster
from ..services import Service
from .context import Context
from .findings import ERROR, Check
from .kinds import CLUSTERS, RAY_POD, SERVICE, SIDECAR
from .raypods import DATAPLANE, as_dict, as_list, injection_off, strings

SERVICE_PROTOCOL_CONFLICT = Check(
    "service-protocol-conflict", ERROR,
    "Services selecting the same Ray pods declare one port with two protocols, no Sidecar "
    "ingress decides")

CHECKS = (SERVICE_PROTOCOL_CONFLICT,)
# the Services selecting each Ray pod, the Sidecars that decide instead, running Ray Pods' labels
READS = (*CLUSTERS, SERVICE, SIDECAR, RAY_POD)


def _sidecar_ports(ctx: Context, ns: str, labels: dict[str, str]) -> set[int]:
    """Ports a Sidecar selecting pods with these labels declares in its ingress."""
    out: set[int] = set()
    for sc in ctx.sidecars:
        if sc.namespace(ctx.namespace) != ns:
            continue
        raw = sc.obj.get("spec")
        spec: dict[str, Any] = raw if isinstance(raw, dict) else {}
        sel = as_dict(as_dict(spec.get("workloadSelector")).get("labels"))
        if not sel:
            continue
        if all(labels.get(str(k)) == str(v) for k, v in sel.items()):
            for ing in as_list(spec.get("ingress")):
                port = as_dict(as_dict(ing).get("port")).get("number")
                if isinstance(port, int) and not isinstance(port, bool):
                    out.add(port)
    return out


def _target(p: dict[str, Any], named: dict[str, int]) -> int | None:
    t = p.get("targetPort", p.get("port"))
    if isinstance(t, int):
        return t
    if isinstance(t, str):
        return int(t) if t.isdigit() else named.get(t)
    return None


def _label_sets(ctx: Context, c: Cluster, is_head: bool, group: str) -> list[dict[str, str]]:
    """The labels a group's pods carry: the model's, and those of its running Pods (audit
    --cluster), which also carry what the operator adds (e.g. app.kubernetes.io/created-by,
    which KubeRay's head Service selects on)."""
    out: list[dict[str, str]] = []
    for pod in ctx.pods:
        labels = strings(as_dict(pod.obj.get("metadata")).get("labels"))
        if (labels.get("ray.io/cluster") == c.name and pod.namespace(ctx.namespace) == c.namespace
                and (labels.get("ray.io/node-type") == "head") == is_head
                and (is_head or labels.get("ray.io/group") == group)):
            out.append(labels)
    return out


def check_cluster(ctx: Context, c: Cluster, m: Manifest) -> None:
    for g in c.groups:
        if injection_off(g.template):
            continue  # no sidecar, no inbound listener to decide (capture family reports it)
        named = {str(p.get("name")): int(p["containerPort"]) for p in g.container_ports()
                 if p.get("name") and isinstance(p.get("containerPort"), int)}
        reported: set[int] = set()
        for labels in [g.pod_labels(c.name), *_label_sets(ctx, c, g.is_head, g.name)]:
            _check_labels(ctx, c, m, g.name, g.path, labels, named, reported)


def _check_labels(ctx: Context, c: Cluster, m: Manifest, group: str, path: str,
                  labels: dict[str, str], named: dict[str, int], reported: set[int]) -> None:
    if labels.get(DATAPLANE) == "ambient":
        return
    decided = _sidecar_ports(ctx, c.namespace, labels)
    by_port: dict[int, dict[str, list[Service]]] = {}
    for svc in ctx.services:
        if svc.namespace != c.namespace or not svc.selects(labels):
            continue
        for _, p in svc.ports():
            port = _target(p, named)
            if port is None:
                continue
            proto = declared_protocol(p) or "tcp"  # Istio sniffs undeclared ports; tcp-ish
            by_port.setdefault(port, {}).setdefault(proto, []).append(svc)
    for port, protos in sorted(by_port.items()):
        if len(protos) < 2 or port in decided or port in reported:
            continue
        reported.add(port)
        detail = "; ".join(f"{proto} by {', '.join(s.name for s in svcs)}"
                           for proto, svcs in sorted(protos.items()))
        ctx.add(SERVICE_PROTOCOL_CONFLICT, m, f"{path} port {port}", port,
                f"group {group}'s pods get port {port} declared {detail}: istiod keeps one "
                "Service (the older), so the port is L7 in one install and not the next",
                "declare the port in the ingress of a Sidecar selecting these pods "
                "(meshray: mesh.sidecar.inbound=true), or give both Services one protocol")
