"""One audit run: sort the input by kind, run the registry's checks, order the findings."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

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
        bucket = _bucket(ctx, m)
        if bucket is None:
            continue  # a kind the audit does not read
        if not m.name:
            inputs.report_unnamed(ctx, m)  # reported once, never judged under an empty name
            continue
        ns = m.namespace(namespace)
        if bucket is ctx.clusters:
            ctx.clusters.append((cluster_from(m.obj, ns), m))
        elif bucket is ctx.services:
            ctx.services.append(Service(m, ns))
        else:
            bucket.append(m)
    rayjob.add_clusters(ctx)  # a RayJob's cluster is audited as a RayCluster, named the RayJob
    for c, m in ctx.clusters:
        for check in registry.PER_CLUSTER:
            check(ctx, c, m)
    for across in registry.ACROSS_INPUT:
        across(ctx)
    return sorted(_unique(ctx.findings), key=lambda f: RANK[f.severity])


def _bucket(ctx: Context, m: Manifest) -> list[Any] | None:
    """The list of ``ctx`` an object belongs in, None for kinds the audit does not read."""
    if is_raycluster(m):
        return ctx.clusters
    if is_rayjob(m):
        return ctx.rayjobs
    if is_service(m):
        return ctx.services
    if m.kind == "Namespace" and m.api_group == "":
        return ctx.namespaces
    if m.kind == "PeerAuthentication" and m.api_group == "security.istio.io":
        return ctx.peerauths
    if ingress.is_ingress(m):
        return ctx.ingresses
    if gatewayapi.is_gateway_api(m):
        return ctx.gateway_api
    if ambient.is_gateway(m):
        return ctx.gateways
    if pods.is_ray_pod(m):
        return ctx.pods
    if identity.is_workload(m):
        return ctx.workloads
    if protocols.is_sidecar(m):
        return ctx.sidecars
    if authz.is_authz(m):
        return ctx.authz
    if authz.is_netpol(m):
        return ctx.netpols
    return None


def _unique(findings: Iterable[Finding]) -> list[Finding]:
    seen: set[tuple[str, ...]] = set()
    out = []
    for f in findings:
        k = (f.check, f.kind, f.namespace, f.name, f.key, f.message)
        if k not in seen:
            seen.add(k)
            out.append(f)
    return out
