"""A RayCluster's own ``spec.networkPolicy`` (KubeRay 1.7, feature gate RayClusterNetworkPolicy)
against the istio-proxy sidecars of its pods.

What the operator makes of the field, read from its source (v1.7.0,
controllers/ray/networkpolicy_controller.go): one NetworkPolicy for the head and one per worker
group. ``mode`` (default ``DenyAll``; ``DenyAllIngress``, ``DenyAllEgress``) decides the policy
types; under ``DenyAll`` and ``DenyAllEgress`` each policy's egress admits the cluster's own
pods (``ray.io/cluster: <name>``) plus the ``egressRules`` of ``head`` (the head's policy),
or of the ``workerGroups`` entry with the group's ``groupName`` (which replaces ``worker``),
else of ``worker``. Nothing else: no DNS and no Istio control plane.

A sidecar fetches its configuration and its mesh certificate from istiod on port 15012 (in
Istio's root namespace, ``istio-system`` by default); a pod whose egress cannot reach it never
gets either, and with a native sidecar (or holdApplicationUntilProxyStarts) never starts Ray.
A rule reaches istiod when its ``ports`` admit TCP 15012 (no ports: every port; a named port
may be istiod's) and its ``to`` can hold an istiod pod (no ``to``: anywhere; an ipBlock may
hold the pod network; a namespaceSelector naming the root namespace, or labels that cannot be
seen here; a bare podSelector only in the policy's own namespace). Ambient pods and groups kept
out of the mesh run no sidecar and are not judged here.
"""

from __future__ import annotations

from typing import Any

from ..manifests import Manifest
from ..raymodel import Cluster, Group
from .context import Context
from .findings import ERROR, Check, yaml_text
from .kinds import CLUSTERS
from .policies import NS_NAME, namespace_may_be, netpol_port_admits
from .raypods import DATAPLANE, as_dict, as_list, injection_off, strings

NETPOL_BLOCKS_ISTIOD = Check(
    "kuberay-netpol-blocks-istiod", ERROR,
    "a RayCluster's spec.networkPolicy egress cuts its sidecars off from istiod (port 15012)")

CHECKS = (NETPOL_BLOCKS_ISTIOD,)
READS = CLUSTERS  # each Ray cluster's own spec.networkPolicy

ISTIOD_PORT = 15012  # xDS and the certificate authority, over mTLS
EGRESS_MODES = ("DenyAll", "DenyAllEgress")  # the modes that give the policies an egress part


def _rules(policy: dict[str, Any], g: Group) -> tuple[str, list[Any]]:
    """(key under networkPolicy, egress rules) the operator appends for the group."""
    if g.is_head:
        return "head.egressRules", as_list(as_dict(policy.get("head")).get("egressRules"))
    for i, entry in enumerate(as_list(policy.get("workerGroups"))):
        if str(as_dict(entry).get("groupName") or "") == g.name:
            return (f"workerGroups[{i}].egressRules",
                    as_list(as_dict(entry).get("egressRules")))
    return "worker.egressRules", as_list(as_dict(policy.get("worker")).get("egressRules"))


def _peer_may_be_istiod(peer: Any, own_ns: str, root_ns: str) -> bool:
    p = as_dict(peer)
    if "ipBlock" in p and "podSelector" not in p and "namespaceSelector" not in p:
        return True  # a CIDR may hold istiod's pod IP: pod IPs are not in the input
    if "namespaceSelector" in p:
        return namespace_may_be(p["namespaceSelector"], root_ns)
    return own_ns == root_ns  # a bare podSelector picks pods of the policy's namespace


def reaches_istiod(rule: Any, own_ns: str, root_ns: str) -> bool:
    """An egress rule admits a connection to istiod's port 15012."""
    r = as_dict(rule)
    ports = as_list(r.get("ports"))
    if ports and not any(netpol_port_admits(e, ISTIOD_PORT) for e in ports):
        return False
    peers = as_list(r.get("to"))
    return not peers or any(_peer_may_be_istiod(p, own_ns, root_ns) for p in peers)


def _admitted(rules: list[Any]) -> str:
    """What the group's egress rules admit, for the message (``53/UDP, 53/TCP``)."""
    ports = [f"{yaml_text(as_dict(e).get('port', 'any'))}/"
             f"{yaml_text(as_dict(e).get('protocol') or 'TCP')}"
             for r in rules for e in as_list(as_dict(r).get("ports"))]
    return ", ".join(dict.fromkeys(ports)) or "no port"


def check(ctx: Context, c: Cluster, m: Manifest) -> None:
    """kuberay-netpol-blocks-istiod, per sidecar group of a cluster with an egress policy."""
    policy = c.spec.get("networkPolicy")
    if not isinstance(policy, dict):
        return
    mode = str(policy.get("mode") or "DenyAll")
    if mode not in EGRESS_MODES:
        return
    for g in c.groups:
        labels = strings(as_dict(g.template.get("metadata")).get("labels"))
        if labels.get(DATAPLANE) == "ambient" or injection_off(g.template):
            continue  # no sidecar in these pods
        where, rules = _rules(policy, g)
        if any(reaches_istiod(r, c.namespace, ctx.root_namespace) for r in rules):
            continue
        group = "the head group" if g.is_head else f"worker group {g.name}"
        extra = f" and what its egressRules admit ({_admitted(rules)})" if rules else ""
        ctx.add(NETPOL_BLOCKS_ISTIOD, m, f"{c.spec_key}.networkPolicy.{where}",
                mode, f"spec.networkPolicy (mode {mode}) lets the pods of {group} connect only to "
                f"the cluster's own pods{extra}: their istio-proxy sidecar cannot reach istiod "
                f"on port {ISTIOD_PORT} in {ctx.root_namespace} for its configuration and "
                "certificate, so the pods never become ready (once the operator runs with the "
                "RayClusterNetworkPolicy feature gate)",
                f"add to {where} a rule to namespaceSelector {{matchLabels: {{{NS_NAME}: "
                f"{ctx.root_namespace}}}}} with podSelector {{matchLabels: {{app: istiod}}}} "
                f"on port {ISTIOD_PORT} (TCP); or mode DenyAllIngress")
