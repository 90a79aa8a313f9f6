"""The input as a whole: objects defined more than once (only the last one is audited), and
objects without a name (never audited under an empty one)."""

from __future__ import annotations

from collections.abc import Sequence

from ..manifests import Manifest
from .context import Context
from .findings import ERROR, INFO, WARNING, Check
from .kinds import Kind

DUPLICATE_OBJECT = Check(
    "duplicate-object", INFO, "the same object twice in the input; the last one is audited")

OBJECT_UNNAMED = Check(
    "object-unnamed", ERROR,
    "an object the audit reads has no metadata.name (generateName: warning); not audited")

CHECKS = (DUPLICATE_OBJECT, OBJECT_UNNAMED)
# no kind of its own: it judges every object of the input (duplicates) and, for names, the
# objects of the kinds the other families read
READS: tuple[Kind, ...] = ()


def report_unnamed(ctx: Context, m: Manifest) -> None:
    """object-unnamed: everything around a RayCluster finds it by name (the ray.io/cluster
    label of its Pods, ``<name>-head-svc``, selectors), so an object without one is named by
    where it is and left out, rather than judged under a name made of an empty string."""
    meta = m.obj.get("metadata")
    generate = meta.get("generateName") if isinstance(meta, dict) else None
    if isinstance(generate, str) and generate:
        ctx.add(OBJECT_UNNAMED, m, "metadata.generateName", generate,
                f"{m.kind} at {m.source} has generateName and no name: the API server "
                "generates the name, so no selector or Service in the input can name it; "
                "not audited", "give it a fixed metadata.name", severity=WARNING)
        return
    ctx.add(OBJECT_UNNAMED, m, "metadata.name", None,
            f"{m.kind} at {m.source} has no metadata.name: the API server refuses it, and "
            "the objects around it cannot refer to it; not audited",
            "set metadata.name")


def dedupe(manifests: Sequence[Manifest], ctx: Context) -> list[Manifest]:
    """The objects to audit, in input order: the last definition of each named object."""
    last: dict[tuple[str, str, str, str], Manifest] = {}
    for m in manifests:
        # objects without a name are never the same object (each is reported on its own)
        k = (m.api_group, m.kind, m.namespace(ctx.namespace), m.name or f"#{id(m)}")
        if k in last:
            ctx.add(DUPLICATE_OBJECT, m, "metadata.name", m.name,
                    f"also defined at {last[k].source}; only the last definition is audited",
                    "keep one definition of each object")
        last[k] = m
    kept = set(map(id, last.values()))
    return [m for m in manifests if id(m) in kept]
