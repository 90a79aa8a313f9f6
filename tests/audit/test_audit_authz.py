"""meshray/audit/authz.py: Istio AuthorizationPolicies and NetworkPolicies around the Ray pods.

The base (clean.yaml) has neither; each case adds a policy written by hand from Istio's and
Kubernetes' documented semantics (rules ORed, from/to/when ANDed, ALLOW denies what no rule
matches, HTTP-only fields never match on a TCP chain) and the port map of clean.yaml: head and
worker listen on 6380-6383, 52365, 8080 and workers 10002-10005; the head also on 6379 (GCS),
8265 (dashboard) and 10001 (Ray Client), which KubeRay's head Service declares tcp.
"""

from __future__ import annotations

from typing import Any

from audit_support import (
    Case,
    Docs,
    Mutation,
    head,
    svc,
)

CLUSTER_SA = "cluster.local/ns/ray/sa/demo"
GATEWAY_SA = "cluster.local/ns/istio-system/sa/istio-ingressgateway-service-account"
RAY_PORTS = ["6379", "6380", "6381", "6382", "6383", "8080", "52365",
             "10002", "10003", "10004", "10005"]


def policy(rules: list[dict[str, Any]] | None, action: str = "ALLOW", name: str = "ray",
           selector: dict[str, str] | None = None, namespace: str = "ray",
           **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"action": action, **spec}
    if selector is not None:
        body["selector"] = {"matchLabels": selector}
    if rules is not None:
        body["rules"] = rules
    return {"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
            "metadata": {"name": name, "namespace": namespace}, "spec": body}


def add(*objs: dict[str, Any]) -> Mutation:
    return lambda d: d.extend(objs)


CLUSTER = {"ray.io/cluster": "demo"}
HEAD = {"ray.io/cluster": "demo", "ray.io/node-type": "head"}
FROM_CLUSTER = {"from": [{"source": {"principals": [CLUSTER_SA]}}]}
FROM_GATEWAY = {"from": [{"source": {"principals": [GATEWAY_SA]}}],
                "to": [{"operation": {"ports": ["8265", "10001"]}}]}
# what a least-privilege policy looks like: the cluster to itself on every port, the gateway
# to the dashboard and client
GOOD = policy([FROM_CLUSTER, FROM_GATEWAY], selector=CLUSTER)


def to_ports(*ports: str) -> dict[str, Any]:
    return {"to": [{"operation": {"ports": list(ports)}}]}


def netpol(ingress: list[dict[str, Any]], selector: dict[str, str] | None = None,
           name: str = "ray", **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": name, "namespace": "ray"},
            "spec": {"podSelector": {"matchLabels": selector or CLUSTER},
                     "policyTypes": ["Ingress"], "ingress": ingress, **spec}}


FROM_RAY_PODS = {"from": [{"podSelector": {"matchLabels": CLUSTER}}]}


def declare_tcp(port: int) -> Mutation:
    def edit(d: Docs) -> None:
        for p in svc(d)["spec"]["ports"]:
            if p["port"] == port:
                p["appProtocol"] = "tcp"
    return edit


CASES: list[Case] = [
    # an ALLOW policy for the gateway alone: every Ray port between the pods is now denied
    ("authz-port-denied", "error", add(policy([FROM_GATEWAY], selector=CLUSTER))),
    # ports listed one by one, the object manager forgotten
    ("authz-port-denied", "error", add(policy(
        [{**FROM_CLUSTER, **to_ports(*[p for p in RAY_PORTS if p != "6381"])}],
        selector=CLUSTER))),
    # a namespace-wide ALLOW policy with no rules: allow nothing
    ("authz-port-denied", "error", add(policy(None))),
    # a root-namespace ALLOW policy selects the Ray pods in every namespace
    ("authz-port-denied", "error", add(policy([FROM_GATEWAY], selector=CLUSTER,
                                              namespace="istio-system"))),
    # only the metrics port is missing: scrapes fail, Ray does not hang
    ("authz-port-denied", "warning", add(policy(
        [{**FROM_CLUSTER, **to_ports(*[p for p in RAY_PORTS if p != "8080"])}],
        selector=CLUSTER))),
    # the real-world pattern: two rules ORed, the second admits anyone to the ports
    ("authz-any-source", "warning", add(policy(
        [FROM_CLUSTER, to_ports(*RAY_PORTS)], selector=CLUSTER))),
    # principals "*" is any authenticated peer: the whole mesh
    ("authz-any-source", "warning", add(policy(
        [{"from": [{"source": {"principals": ["*"]}}]}], selector=CLUSTER))),
    # notPrincipals alone admits everyone else
    ("authz-any-source", "warning", add(policy(
        [{"from": [{"source": {"notPrincipals": ["cluster.local/ns/x/sa/y"]}}]}],
        selector=CLUSTER))),
    # the chart's gateway-only pattern: "every other port stays open to the mesh"
    ("authz-any-source", "warning", add(policy(
        [FROM_GATEWAY, {"to": [{"operation": {"notPorts": ["8265", "10001"]}}]}],
        selector=HEAD))),
    # allow-all: an empty rule matches every request
    ("authz-dashboard-open", "error", add(policy([{}], selector=HEAD))),
    # the dashboard open next to a restricted rule (ORed)
    ("authz-dashboard-open", "error", add(policy([FROM_CLUSTER, to_ports("8265")],
                                                 selector=CLUSTER))),
    # the dashboard on another port: the check follows the head's dashboard-port flag
    ("authz-dashboard-open", "error", lambda d: (
        head(d)["rayStartParams"].update({"dashboard-port": "8266"}),
        d.append(policy([FROM_CLUSTER, to_ports("8266")], selector=CLUSTER)))),
    # the Ray Client open to any namespace's workloads
    ("authz-dashboard-open", "error", add(policy(
        [FROM_CLUSTER, {"from": [{"source": {"namespaces": ["*"]}}], **to_ports("10001")}],
        selector=HEAD))),
    # ALLOW with paths for the GCS port (tcp on KubeRay's head Service): never matches
    ("authz-http-on-tcp", "error", add(policy(
        [FROM_CLUSTER, {"from": [{"source": {"principals": [GATEWAY_SA]}}],
                        "to": [{"operation": {"ports": ["6379"], "paths": ["/api/*"]}}]}],
        selector=HEAD))),
    # requestPrincipals (JWT) for a worker port the Service declares tcp
    ("authz-http-on-tcp", "error", lambda d: (declare_tcp(10002)(d), d.append(policy(
        [FROM_CLUSTER, {"from": [{"source": {"requestPrincipals": ["issuer/sub"]}}],
                        **to_ports("10002")}], selector=CLUSTER)))),
    # a DENY rule with a JWT condition on the dashboard (tcp): denies every connection
    ("authz-http-on-tcp", "warning", add(policy(
        [{"from": [{"source": {"notRequestPrincipals": ["*"]}}], **to_ports("8265")}],
        action="DENY", selector=HEAD))),
    # a NetworkPolicy admitting only the dashboard and client
    ("netpol-port-blocked", "error", add(netpol(
        [{"ports": [{"port": 8265}, {"port": 10001}]}]))),
    # ports from the Ray pods, the worker range forgotten
    ("netpol-port-blocked", "error", add(netpol(
        [{**FROM_RAY_PODS, "ports": [{"port": 6379, "endPort": 6383}, {"port": 8080},
                                      {"port": 52365}]}]))),
    # every port, but only from the head: workers cannot reach each other
    ("netpol-port-blocked", "error", add(netpol(
        [{"from": [{"podSelector": {"matchLabels": HEAD}}]}]))),
    # a deny-all ingress policy for the namespace
    ("netpol-port-blocked", "error", add(netpol([], selector={}))),
]


CLEAN_VARIANTS: list[tuple[str, Mutation]] = [
    ("least privilege: cluster to itself, gateway to dashboard and client", add(GOOD)),
    # every Ray port listed explicitly, from the cluster's principal
    ("ports listed one by one", add(policy(
        [{**FROM_CLUSTER, **to_ports(*RAY_PORTS)}, FROM_GATEWAY], selector=CLUSTER))),
    # a source restricted through `when` instead of `from`
    ("source in when", add(policy(
        [{"when": [{"key": "source.namespace", "values": ["ray"]}]}], selector=CLUSTER))),
    # an ALLOW policy for another workload does not touch the Ray pods
    ("unrelated allow", add(policy([{}], selector={"app": "spark"}))),
    # another namespace's policy
    ("other namespace", add(policy([{}], namespace="other"))),
    # targetRefs attach to a Gateway, never to the Ray sidecars
    ("targetRefs", add(policy([{}], targetRefs=[
        {"kind": "Gateway", "group": "gateway.networking.k8s.io", "name": "gw"}]))),
    # a DENY policy with L4 fields only
    ("deny L4", add(GOOD, policy([{"from": [{"source": {"namespaces": ["untrusted"]}}]}],
                                 action="DENY", name="deny", selector=CLUSTER))),
    # HTTP fields on a port the Service declares http (L7 chain): they match
    ("http fields on http port", add(policy(
        [FROM_CLUSTER, {"from": [{"source": {"principals": [GATEWAY_SA]}}],
                        "to": [{"operation": {"ports": ["52365"], "paths": ["/api/*"]}}]}],
        selector=CLUSTER))),
    # AUDIT decides nothing
    ("audit", add(policy([{}], action="AUDIT", selector=CLUSTER))),
    # a NetworkPolicy admitting the Ray pods on every port and the gateway to the dashboard
    ("netpol all ports from cluster", add(netpol([
        FROM_RAY_PODS,
        {"from": [{"namespaceSelector": {"matchLabels": {
            "kubernetes.io/metadata.name": "istio-system"}}}],
         "ports": [{"port": 8265}, {"port": 10001}]}]))),
    # Ray's ports as ranges and named ports, from pods of the cluster
    ("netpol ranges", add(netpol([{**FROM_RAY_PODS, "ports": [
        {"port": "gcs-server"}, {"port": 6380, "endPort": 6383}, {"port": 8080},
        {"port": 52365}, {"port": 10002, "endPort": 10005}]}]))),
    # an ipBlock may hold the pod network: not reported without the pod IPs
    ("netpol ipBlock", add(netpol([{"from": [{"ipBlock": {"cidr": "10.0.0.0/8"}}]}]))),
    # an egress-only policy does not restrict ingress
    ("netpol egress only", add(netpol([], policyTypes=["Egress"], egress=[{}]))),
    # a NetworkPolicy for other pods
    ("netpol unrelated", add(netpol([], selector={"app": "spark"}))),
]


def test_any_source_names_the_open_ports() -> None:
    """The finding names exactly the ports the open rule reaches, written out by hand."""
    from audit_support import base, run

    docs = base()
    docs.append(policy([FROM_CLUSTER, to_ports("6379", "10003")], selector=CLUSTER))
    hits = {(f.name, f.value) for f in run(docs) if f.check == "authz-any-source"}
    # 6379 is the head's only; 10003 is in both groups' worker range
    assert hits == {("ray", "6379, 10003"), ("ray", "10003")}


def test_port_denied_names_the_missing_ports() -> None:
    from audit_support import base, run

    docs = base()
    docs.append(policy([{**FROM_CLUSTER, **to_ports(*[p for p in RAY_PORTS
                                                       if p not in {"6381", "10004"}])}],
                       selector=CLUSTER))
    values = sorted(f.value for f in run(docs) if f.check == "authz-port-denied")
    assert values == ["6381, 10004", "6381, 10004"]  # head and worker group
