"""Every check family in one place: which checks exist (in table order) and what runs when.

To add a check, declare it in its family module (id, severity, what it catches, next to the
code that reports it) and list it in that module's ``CHECKS``; a new family is added here.
"""

from __future__ import annotations

from collections.abc import Callable

from ..manifests import Manifest
from ..raymodel import Cluster
from . import (
    ambient,
    authz,
    capture,
    cluster,
    gatewayapi,
    identity,
    ingress,
    inputs,
    netpolicy,
    nodeip,
    peerauth,
    pods,
    protocols,
    rayjob,
    restricted,
    versions,
)
from .context import Context
from .findings import Check

# table order of `meshray audit --list-checks` and the generated docs
FAMILIES = (cluster, protocols, nodeip, versions, peerauth, authz, netpolicy, identity, ingress,
            gatewayapi, ambient, capture, pods, restricted, rayjob, inputs)
ALL: tuple[Check, ...] = tuple(c for family in FAMILIES for c in family.CHECKS)
# check id -> (default severity, what it catches)
CHECKS: dict[str, tuple[str, str]] = {c.id: (c.severity, c.catches) for c in ALL}
assert len(CHECKS) == len(ALL), "two checks share an id"

ClusterCheck = Callable[[Context, Cluster, Manifest], None]
InputCheck = Callable[[Context], None]

# run order, which is also the order of findings of equal severity
PER_CLUSTER: tuple[ClusterCheck, ...] = (
    cluster.check_params,
    versions.check,
    cluster.check_pinning,
    cluster.check_conflicts,
    cluster.check_service,
    protocols.check_cluster,
    nodeip.check,
    peerauth.check_cluster,
    ambient.check_cluster,
    netpolicy.check,
)
ACROSS_INPUT: tuple[InputCheck, ...] = (
    peerauth.check,
    authz.check,
    identity.check,
    ingress.check,
    gatewayapi.check,
    ambient.check,
    capture.check,
    pods.check,
    restricted.check,
    rayjob.check,
)
