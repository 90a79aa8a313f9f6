"""Istio AuthorizationPolicies and Kubernetes NetworkPolicies around Ray pods: does Ray still
reach its own ports, and does anyone else reach them who should not.

How Istio reads a policy, and which ports Ray needs, is modelled in ``policies``.

NetworkPolicies (networking.k8s.io/v1): a pod selected by any policy whose ``policyTypes``
include Ingress (the default) accepts only the ingress some policy's rule admits; rules are
unions. A rule with no ``from`` admits every source, with no ``ports`` every port; a ``from``
peer with a ``podSelector`` matches pods of the policy's namespace (or of the namespaces its
``namespaceSelector`` picks, assumed to include the cluster's own when it names labels we
cannot see); an ``ipBlock`` is assumed to hold the pod network (pod IPs are not in the input).
Named ports resolve through the Ray container's ``ports``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ..manifests import Manifest
from ..raymodel import Cluster, Group, as_int, compress
from .context import Context
from .findings import ERROR, WARNING, Check
from .kinds import AUTHORIZATION_POLICY, CLUSTERS, NETWORK_POLICY, SERVICE
from .policies import (
    Policy,
    admitting_ports,
    any_source,
    authorization_policies,
    http_fields,
    l4_ports,
    namespace_may_be,
    netpol_port_admits,
    ray_ports,
    rule_ports,
    user_ports,
)
from .raypods import as_dict, as_list, injection_off, str_list

AUTHZ_PORT_DENIED = Check(
    "authz-port-denied", ERROR,
    "an ALLOW AuthorizationPolicy selects Ray pods but admits no one to a Ray port (Ray hangs)")
AUTHZ_ANY_SOURCE = Check(
    "authz-any-source", WARNING, "an ALLOW rule admits any source to Ray's internal ports")
AUTHZ_DASHBOARD_OPEN = Check(
    "authz-dashboard-open", ERROR,
    "an ALLOW rule admits any source to the dashboard/Jobs API or the Ray Client")
AUTHZ_HTTP_ON_TCP = Check(
    "authz-http-on-tcp", ERROR,
    "HTTP-only fields in a rule for TCP ports: ALLOW never matches (DENY: denies all, warning)")
NETPOL_PORT_BLOCKED = Check(
    "netpol-port-blocked", ERROR,
    "a NetworkPolicy selecting Ray pods does not admit a Ray port from the cluster's pods")

CHECKS = (AUTHZ_PORT_DENIED, AUTHZ_ANY_SOURCE, AUTHZ_DASHBOARD_OPEN, AUTHZ_HTTP_ON_TCP,
          NETPOL_PORT_BLOCKED)
# the Ray clusters, the policies around them, and the Services that decide L7 or TCP
READS = (*CLUSTERS, SERVICE, AUTHORIZATION_POLICY, NETWORK_POLICY)

_METRICS = ("metrics-export-port", "autoscaler-metrics", "dashboard-metrics")


def _groups(ctx: Context) -> Iterator[tuple[Cluster, Manifest, Group]]:
    for c, m in ctx.clusters:
        for g in c.groups:
            yield c, m, g


def check(ctx: Context) -> None:
    policies = authorization_policies(ctx)
    for c, _, g in _groups(ctx):
        if injection_off(g.template):
            continue  # no sidecar enforces a policy there (the capture family reports it)
        applying = [p for p in policies if p.applies(ctx, c, g)]
        allow = [p for p in applying if p.action == "ALLOW"]
        tcp = l4_ports(ctx, c, g)
        _check_denied(ctx, c, g, allow, tcp)
        for p in allow:
            _check_open(ctx, g, p, tcp)
        for p in applying:
            if p.action in {"ALLOW", "DENY"}:
                _check_http_on_tcp(ctx, g, p, tcp)
    _check_netpols(ctx)


def _check_denied(ctx: Context, c: Cluster, g: Group, allow: list[Policy], tcp: set[int]
                  ) -> None:
    if not allow:
        return
    needed = ray_ports(g)
    admitted: set[int] = set()
    for p in allow:
        for _, rule in p.rules():
            admitted |= admitting_ports(rule, set(needed), tcp)
    missing = sorted(set(needed) - admitted)
    if not missing:
        return
    names = ", ".join(p.manifest.name for p in allow)
    blocking = [n for n in missing if needed[n] not in _METRICS]
    comps = sorted({needed[n] for n in missing})
    ctx.add(AUTHZ_PORT_DENIED, allow[0].manifest, "spec.rules", compress(missing),
            f"ALLOW policies ({names}) select group {g.name} of {c.ref} but no rule "
            f"admits these ports ({', '.join(comps)}): Istio denies them to every peer, so Ray "
            "hangs on them", "add a rule admitting the cluster's own principals to them (a "
            "rule with only `from`, no `to`, covers every port)",
            severity=None if blocking else WARNING)


def _check_open(ctx: Context, g: Group, p: Policy, tcp: set[int]) -> None:
    # Serve's proxies are the application's own endpoints: who reaches them is its choice
    internal = {n: c for n, c in ray_ports(g).items() if not c.startswith("serve-")}
    user = user_ports(g)
    for i, rule in p.rules():
        if not any_source(rule):
            continue
        key = f"spec.rules[{i}]"
        hit_user = sorted(admitting_ports(rule, set(user), tcp))
        if hit_user:
            comps = ", ".join(user[n] for n in hit_user)
            ctx.add(AUTHZ_DASHBOARD_OPEN, p.manifest, key, compress(hit_user),
                    f"admits any source to group {g.name}'s {comps}: anyone who reaches them "
                    "runs code on the cluster (CVE-2023-48022); rules are ORed, so another "
                    "rule's `from` does not restrict this one",
                    "give this rule a `from` with the gateway's or job submitters' principals")
        hit = sorted(admitting_ports(rule, set(internal), tcp))
        if hit:
            ctx.add(AUTHZ_ANY_SOURCE, p.manifest, key, compress(hit),
                    f"admits any source to group {g.name}'s Ray ports (a driver that reaches "
                    "GCS runs code on the cluster); rules are ORed, so another rule's `from` "
                    "does not restrict this one",
                    "add `from: [source: {principals: [<the cluster's service accounts>]}]` "
                    "to this rule")


def _check_http_on_tcp(ctx: Context, g: Group, p: Policy, tcp: set[int]) -> None:
    for i, rule in p.rules():
        fields = http_fields(rule)
        hit = sorted(rule_ports(rule, tcp))
        if not fields or not hit:
            continue
        if p.action == "ALLOW":
            effect = "this ALLOW rule never matches there"
            severity = None
        else:
            effect = ("Istio drops those fields there, so this DENY rule denies every "
                      "connection it otherwise matches")
            severity = WARNING
        ctx.add(AUTHZ_HTTP_ON_TCP, p.manifest, f"spec.rules[{i}]", fields,
                f"group {g.name}'s ports {compress(hit)} get a TCP filter chain (their Services "
                f"declare tcp), where HTTP-only fields cannot be evaluated: {effect}",
                "declare the ports http/grpc on the Services, or use only L4 fields (principals, "
                "namespaces, ipBlocks, ports)", severity=severity)


# --- NetworkPolicies -------------------------------------------------------------------------


def _selects(selector: Any, labels: dict[str, str]) -> bool:
    """A Kubernetes LabelSelector against labels (an empty selector selects everything)."""
    sel = as_dict(selector)
    for k, v in as_dict(sel.get("matchLabels")).items():
        if labels.get(str(k)) != str(v):
            return False
    for expr in as_list(sel.get("matchExpressions")):
        e = as_dict(expr)
        key, op, values = str(e.get("key")), str(e.get("operator")), str_list(e.get("values"))
        has = key in labels
        ok = {"In": has and labels.get(key) in values,
              "NotIn": not has or labels.get(key) not in values,
              "Exists": has, "DoesNotExist": not has}.get(op, True)
        if not ok:
            return False
    return True


def _ingress_policy(np: Manifest) -> bool:
    spec = as_dict(np.obj.get("spec"))
    types = str_list(spec.get("policyTypes"))
    return "Ingress" in types or not types


def _peer_admits(peer: dict[str, Any], np_ns: str, c: Cluster, labels: dict[str, str]) -> bool:
    if "ipBlock" in peer and "podSelector" not in peer and "namespaceSelector" not in peer:
        return True  # a CIDR may hold the pod network: pod IPs are not known here
    if "namespaceSelector" in peer:
        if not namespace_may_be(peer["namespaceSelector"], c.namespace):
            return False
    elif np_ns != c.namespace:
        return False
    return _selects(peer.get("podSelector"), labels)


def _check_netpols(ctx: Context) -> None:
    netpols = [(np, np.namespace(ctx.namespace)) for np in ctx.netpols if _ingress_policy(np)]
    for c, _, g in _groups(ctx):
        pod = g.pod_labels(c.name)
        selecting = [(np, ns) for np, ns in netpols if ns == c.namespace
                     and _selects(as_dict(np.obj.get("spec")).get("podSelector"), pod)]
        if not selecting:
            continue
        named = {str(p.get("name")): n for p in g.container_ports()
                 if p.get("name") and (n := as_int(p.get("containerPort"))) is not None}
        needed = ray_ports(g)
        for peer in c.groups:
            peer_labels = peer.pod_labels(c.name)
            missing = [n for n in sorted(needed) if not any(
                _rule_admits(as_dict(rule), ns, c, peer_labels, n, named)
                for np, ns in selecting
                for rule in as_list(as_dict(np.obj.get("spec")).get("ingress")))]
            if missing:
                ctx.add(NETPOL_PORT_BLOCKED, selecting[0][0], "spec.ingress", compress(missing),
                        f"NetworkPolicies ({', '.join(np.name for np, _ in selecting)}) select "
                        f"group {g.name} of {c.ref} but admit no ingress from group "
                        f"{peer.name}'s pods to these Ray ports: Ray hangs on them",
                        f"add an ingress rule from podSelector {c.selector_hint()} to every "
                        "Ray port (or to all ports)")


def _rule_admits(rule: dict[str, Any], ns: str, c: Cluster, peer: dict[str, str], port: int,
                 named: dict[str, int]) -> bool:
    peers = as_list(rule.get("from"))
    if peers and not any(_peer_admits(as_dict(p), ns, c, peer) for p in peers):
        return False
    ports = as_list(rule.get("ports"))
    return not ports or any(netpol_port_admits(e, port, named) for e in ports)
