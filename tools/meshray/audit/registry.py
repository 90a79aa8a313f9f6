"""Every check family in one place: which checks exist (in table order) and what runs when.

To add a check, declare it in its family module (id, severity, what it catches, next to the
code that reports it) and list it in that module's ``CHECKS``; a new family is added here.
Each family also lists the kinds of object it reads in its ``READS`` (``kinds``): the engine
sorts the input into the kinds some family reads.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from ..manifests import Manifest
from ..raymodel import Cluster
from . import (
    ambient,
    authz,
    capture,
    gatewayapi,
    identity,
    ingress,
    inputs,
    netpolicy,
    nodeip,
    peerauth,
    pods,
    portmap,
    protocols,
    rayjob,
    restricted,
    versions,
)
from .context import Context
from .findings import Check
from .kinds import ALL as ALL_KINDS
from .kinds import Kind

# table order of `meshray audit --list-checks` and the generated docs
FAMILIES = (portmap, protocols, nodeip, versions, peerauth, authz, netpolicy, identity, ingress,
            gatewayapi, ambient, capture, pods, restricted, rayjob, inputs)
ALL: tuple[Check, ...] = tuple(c for family in FAMILIES for c in family.CHECKS)
# check id -> (default severity, what it catches)
CHECKS: dict[str, tuple[str, str]] = {c.id: (c.severity, c.catches) for c in ALL}
assert len(CHECKS) == len(ALL), "two checks share an id"
# the kinds some family reads (its READS), in the order of kinds.ALL: what the engine sorts the
# input into; objects of other kinds are not audited
KINDS: tuple[Kind, ...] = tuple(k for k in ALL_KINDS if any(k in f.READS for f in FAMILIES))
assert all(k in ALL_KINDS for f in FAMILIES for k in f.READS), "a kind outside kinds.ALL"

ClusterCheck = Callable[[Context, Cluster, Manifest], None]
InputCheck = Callable[[Context], None]

# what the engine does with the input before any check: keep the last of each object (and
# report the others), report objects without a name, then add each RayJob's cluster to the
# RayClusters (audited by every family, reported on the RayJob)
DEDUPE: Callable[[Sequence[Manifest], Context], list[Manifest]] = inputs.dedupe
REPORT_UNNAMED: Callable[[Context, Manifest], None] = inputs.report_unnamed
PREPARE: tuple[InputCheck, ...] = (rayjob.add_clusters,)

# run order, which is also the order of findings of equal severity
PER_CLUSTER: tuple[ClusterCheck, ...] = (
    portmap.check_params,
    versions.check,
    portmap.check_pinning,
    portmap.check_conflicts,
    portmap.check_service,
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
