"""Ray-version-dependent flags: removed in 2.48, deprecated before, and an unknown version.

The version comes from ``spec.rayVersion``, else the Ray image tag (see ``raymodel``).
"""

from __future__ import annotations

from ..manifests import Manifest
from ..raymodel import DASHBOARD_GRPC_LAST_USED, FLAGS_REMOVED_IN_2_48, Cluster
from .context import Context
from .findings import ERROR, INFO, WARNING, Check
from .kinds import CLUSTERS

FLAG_REMOVED = Check(
    "flag-removed", ERROR, "a flag Ray >= 2.48 rejects (gcs-server-port, dashboard-grpc-port)")
FLAG_UNUSED = Check(
    "flag-unused", WARNING, "a deprecated flag the cluster's Ray version ignores")
RAY_VERSION_UNKNOWN = Check(
    "ray-version-unknown", INFO, "no spec.rayVersion: version-dependent checks skipped")

CHECKS = (FLAG_REMOVED, FLAG_UNUSED, RAY_VERSION_UNKNOWN)
READS = CLUSTERS  # each Ray cluster's version and flags

RAY_2_48 = (2, 48, 0)


def check(ctx: Context, c: Cluster, m: Manifest) -> None:
    v = c.version
    if v is None:
        ctx.add(RAY_VERSION_UNKNOWN, m, f"{c.spec_key}.rayVersion", None,
                "Ray version unknown; removed-flag and dashboard-grpc-port checks skipped",
                "set spec.rayVersion")
        return
    shown = ".".join(map(str, v))
    for g in c.groups:
        for flag in FLAGS_REMOVED_IN_2_48:
            if flag not in g.params:
                continue
            key = f"{g.path}.rayStartParams.{flag}"
            if v >= RAY_2_48:
                ctx.add(FLAG_REMOVED, m, key, g.params[flag],
                        f"Ray {shown} rejects --{flag} (removed in 2.48); ray start fails",
                        f"remove {flag}")
            elif flag == "gcs-server-port" or v[:2] > DASHBOARD_GRPC_LAST_USED:
                ctx.add(FLAG_UNUSED, m, key, g.params[flag],
                        f"--{flag} is deprecated and unused in Ray {shown}; 2.48 removes it",
                        f"remove {flag}" + ("" if flag != "gcs-server-port" else " (use port)"))
