"""One audit run: sort the input by the kinds the registry's families read, run the registry's
checks, order the findings."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from ..manifests import Manifest
from ..raymodel import cluster_from
from ..services import Service
from . import registry
from .context import Context
from .findings import RANK, Finding
from .kinds import RAYCLUSTER, SERVICE, Kind


def audit(manifests: Sequence[Manifest], namespace: str = "default",
          root_namespace: str = "istio-system") -> list[Finding]:
    """All findings for the objects, most severe first, then in input order."""
    ctx = Context(namespace=namespace, root_namespace=root_namespace)
    for m in registry.DEDUPE(manifests, ctx):
        kind = next((k for k in registry.KINDS if k.test(m)), None)
        if kind is None:
            continue  # a kind no family reads
        if not m.name:
            registry.REPORT_UNNAMED(ctx, m)  # reported once, never judged under an empty name
            continue
        _sort(ctx, kind, m, m.namespace(namespace))
    for prepare in registry.PREPARE:
        prepare(ctx)
    for c, m in ctx.clusters:
        for check in registry.PER_CLUSTER:
            check(ctx, c, m)
    for across in registry.ACROSS_INPUT:
        across(ctx)
    return sorted(_unique(ctx.findings), key=lambda f: RANK[f.severity])


def _sort(ctx: Context, kind: Kind, m: Manifest, ns: str) -> None:
    """Put an object into its kind's list of ``ctx``: a RayCluster as its port model, a
    Service as Istio sees it, any other object as it is."""
    bucket: list[object] = getattr(ctx, kind.bucket)
    if kind is RAYCLUSTER:
        bucket.append((cluster_from(m.obj, ns), m))
    elif kind is SERVICE:
        bucket.append(Service(m, ns))
    else:
        bucket.append(m)


def _unique(findings: Iterable[Finding]) -> list[Finding]:
    seen: set[tuple[str, ...]] = set()
    out = []
    for f in findings:
        k = (f.check, f.kind, f.namespace, f.name, f.key, f.message)
        if k not in seen:
            seen.add(k)
            out.append(f)
    return out
