"""Risks a RayCluster's owners took on purpose: the ``meshray.io/acknowledged`` annotation.

The chart refuses values that switch the mesh off around Ray (``mesh-capture``), share the
identity its AuthorizationPolicy admits to the GCS and raylets (``shared-identity``) or run
unrestricted Pods (``unrestricted-pods``) unless the values acknowledge the risk; it then
writes the acknowledged ids, comma-separated, into this annotation of the RayCluster. The
families that report these risks lower their findings from error to warning for a RayCluster
that carries the matching id, and say so in the message.
"""

from __future__ import annotations

from typing import Any

from ..manifests import Manifest
from .context import Context
from .findings import ERROR, WARNING

ANNOTATION = "meshray.io/acknowledged"
MESH_CAPTURE = "mesh-capture"
SHARED_IDENTITY = "shared-identity"
UNRESTRICTED_PODS = "unrestricted-pods"
RISKS = (MESH_CAPTURE, SHARED_IDENTITY, UNRESTRICTED_PODS)


def acknowledged(obj: dict[str, Any]) -> set[str]:
    """The risk ids an object's ``meshray.io/acknowledged`` annotation lists."""
    meta = obj.get("metadata")
    annotations = meta.get("annotations") if isinstance(meta, dict) else None
    raw = annotations.get(ANNOTATION) if isinstance(annotations, dict) else None
    return {p.strip() for p in str(raw or "").split(",") if p.strip()}


def owner(ctx: Context, m: Manifest) -> Manifest | None:
    """The RayCluster whose acknowledgements apply to ``m``: itself, or for a Ray Pod the
    RayCluster its ``ray.io/cluster`` label names, when it is in the input."""
    if m.kind == "RayCluster" or any(m is cm for _, cm in ctx.clusters):
        return m  # a RayCluster, or a RayJob declaring one (the chart annotates the RayJob)
    meta = m.obj.get("metadata")
    labels = meta.get("labels") if isinstance(meta, dict) else None
    name = labels.get("ray.io/cluster") if isinstance(labels, dict) else None
    ns = m.namespace(ctx.namespace)
    return next((rc for c, rc in ctx.clusters if c.name == name and c.namespace == ns), None)


def severity(ctx: Context, m: Manifest, risk: str) -> tuple[str, str]:
    """(severity, message suffix) of a ``risk`` finding on ``m``: an error, or a warning that
    says so when its RayCluster acknowledges the risk."""
    rc = owner(ctx, m)
    if rc is not None and risk in acknowledged(rc.obj):
        return WARNING, (f" (acknowledged: {rc.kind}/{rc.name} has {ANNOTATION}: "
                         f"{risk})")
    return ERROR, ""
