"""One audit run: sort the input by kind, run the registry's checks, order the findings."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from ..manifests import Manifest
from ..raymodel import cluster_from, is_raycluster, is_rayjob
from ..services import Service, is_service
from . import (
    ambient,
    authz,
    gatewayapi,
    identity,
    ingress,
    inputs,
    pods,
    protocols,
    rayjob,
    registry,
)
from .context import Context
from .findings import RANK, Finding


def audit(manifests: Sequence[Manifest], namespace: str = "default",
          root_namespace: str = "istio-system") -> list[Finding]:
    """All findings for the objects, most severe first, then in input order."""
    ctx = Context(namespace=namespace, root_namespace=root_namespace)
    for m in inputs.dedupe(manifests, ctx):
        ns = m.namespace(namespace)
        if is_raycluster(m):
            ctx.clusters.append((cluster_from(m.obj, ns), m))
        elif is_rayjob(m):
            ctx.rayjobs.append(m)
        elif is_service(m):
            ctx.services.append(Service(m, ns))
        elif m.kind == "Namespace" and m.api_group == "":
            ctx.namespaces.append(m)
        elif m.kind == "PeerAuthentication" and m.api_group == "security.istio.io":
            ctx.peerauths.append(m)
        elif ingress.is_ingress(m):
            ctx.ingresses.append(m)
        elif gatewayapi.is_gateway_api(m):
            ctx.gateway_api.append(m)
        elif ambient.is_gateway(m):
            ctx.gateways.append(m)
        elif pods.is_ray_pod(m):
            ctx.pods.append(m)
        elif identity.is_workload(m):
            ctx.workloads.append(m)
        elif protocols.is_sidecar(m):
            ctx.sidecars.append(m)
        elif authz.is_authz(m):
            ctx.authz.append(m)
        elif authz.is_netpol(m):
            ctx.netpols.append(m)
    rayjob.add_clusters(ctx)  # a RayJob's cluster is audited as a RayCluster, named the RayJob
    for c, m in ctx.clusters:
        for check in registry.PER_CLUSTER:
            check(ctx, c, m)
    for across in registry.ACROSS_INPUT:
        across(ctx)
    return sorted(_unique(ctx.findings), key=lambda f: RANK[f.severity])


def _unique(findings: Iterable[Finding]) -> list[Finding]:
    seen: set[tuple[str, ...]] = set()
    out = []
    for f in findings:
        k = (f.check, f.kind, f.namespace, f.name, f.key, f.message)
        if k not in seen:
            seen.add(k)
            out.append(f)
    return out
