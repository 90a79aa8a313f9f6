"""The input as a whole: objects defined more than once (only the last one is audited)."""

from __future__ import annotations

from collections.abc import Sequence

from ..manifests import Manifest
from .context import Context
from .findings import INFO, Check

DUPLICATE_OBJECT = Check(
    "duplicate-object", INFO, "the same object twice in the input; the last one is audited")

CHECKS = (DUPLICATE_OBJECT,)


def dedupe(manifests: Sequence[Manifest], ctx: Context) -> list[Manifest]:
    """The objects to audit, in input order: the last definition of each named object."""
    last: dict[tuple[str, str, str, str], Manifest] = {}
    for m in manifests:
        k = (m.api_group, m.kind, m.namespace(ctx.namespace), m.name)
        if k in last and m.name:
            ctx.add(DUPLICATE_OBJECT, m, "metadata.name", m.name,
                    f"also defined at {last[k].source}; only the last definition is audited",
                    "keep one definition of each object")
        last[k] = m
    kept = set(map(id, last.values()))
    return [m for m in manifests if id(m) in kept]
