"""Who the real istiod lets reach each Ray port: the RBAC filters of the Ray pods' inbound chains.

The chart's AuthorizationPolicy (mesh.authorizationPolicy) is installed on the local control
plane with the real KubeRay operator v1.6.2; istiod turns it into an RBAC filter on every
inbound filter chain of each Ray Pod's sidecar (envoy.filters.http.rbac inside the HTTP
connection manager of L7 chains, envoy.filters.network.rbac on TCP chains). For every port the
Pod's `ray start` listens on (read from the Pod the operator made, tests/cluster/podcmd.py), the
principals those filters admit must be exactly what the values say: the Pod's own service
account on every Ray port but the dashboard and Ray Client; the listed principals on the
dashboard, Ray Client, metrics and Serve ports; nobody else. The oracle classifies each port by
the `ray start` flag or env var that opens it, and takes the cluster's identity from the live
Pod's serviceAccountName, not from the chart.

Negative controls: with the policy disabled no RBAC filter is left; a principal removed from the
values by `helm upgrade` disappears from the filters of the running pods; a workload outside
the lists is admitted nowhere.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
import yaml
from authz_support import (
    FRONTEND,
    GATEWAY,
    LISTED_BY,
    LISTS,
    NOTEBOOK,
    PROMETHEUS,
    SUBMITTER,
    USER_FACING,
    expected,
)
from kube import HELMS, Helm
from kubernetes import client
from podcmd import listening_ports, ray_start
from test_sidecar_config import chart, inbound, install, settled_dump
from xds_support import Mesh, string_match

HTTP_RBAC = "envoy.filters.http.rbac"
NET_RBAC = "envoy.filters.network.rbac"
HCM = "envoy.filters.network.http_connection_manager"


def sets(*pairs: str) -> tuple[str, ...]:
    out: list[str] = []
    for s in pairs:
        out += ["--set", s]
    return tuple(out)


# --- reading Envoy's RBAC config (envoy.config.rbac.v3) --------------------------------------


def tree_admits(node: dict[str, Any], leaf: Callable[[dict[str, Any]], bool | None],
                kinds: tuple[str, str, str, str]) -> bool:
    """Envoy's RBAC matcher trees (permissions and principals have the same shape): `any`,
    or/and lists, a negation, and leaves `leaf` decides (None: not a leaf it knows)."""
    or_, and_, items, not_ = kinds
    if node.get("any"):
        return True
    if or_ in node:
        return any(tree_admits(n, leaf, kinds) for n in node[or_][items])
    if and_ in node:
        return all(tree_admits(n, leaf, kinds) for n in node[and_][items])
    if not_ in node:
        return not tree_admits(node[not_], leaf, kinds)
    decided = leaf(node)
    if decided is None:
        raise AssertionError(f"an RBAC matcher this test does not read: {node}")
    return decided


def permission_admits(perm: dict[str, Any], port: int) -> bool:
    def leaf(node: dict[str, Any]) -> bool | None:
        if "destinationPort" in node:
            return int(node["destinationPort"]) == port
        if "destinationPortRange" in node:
            r = node["destinationPortRange"]
            return int(r["start"]) <= port < int(r["end"])
        return None
    return tree_admits(perm, leaf, ("orRules", "andRules", "rules", "notRule"))


def principal_admits(pid: dict[str, Any], spiffe: str) -> bool:
    def leaf(node: dict[str, Any]) -> bool | None:
        if "authenticated" in node:
            return string_match(node["authenticated"]["principalName"], spiffe)
        return None
    return tree_admits(pid, leaf, ("orIds", "andIds", "ids", "notId"))


def exact_principals(pid: dict[str, Any]) -> set[str]:
    """The exact identities a principal tree names (wildcards would show up as other keys)."""
    out: set[str] = set()
    if "authenticated" in pid:
        m = pid["authenticated"]["principalName"]
        assert set(m) == {"exact"}, f"not an exact principal: {m}"
        out.add(m["exact"].removeprefix("spiffe://"))
    for key, inner in (("orIds", "ids"), ("andIds", "ids")):
        for p in pid.get(key, {}).get(inner, []):
            out |= exact_principals(p)
    assert not pid.get("any") and "notId" not in pid, f"a principal admitting anyone: {pid}"
    return out


def rbac_filters(fc: dict[str, Any]) -> list[dict[str, Any]]:
    """The RBAC filters of one filter chain: network ones, and HTTP ones inside its HCM."""
    out = [f["typedConfig"] for f in fc["filters"] if f["name"] == NET_RBAC]
    for f in fc["filters"]:
        if f["name"] == HCM:
            out += [h["typedConfig"] for h in f["typedConfig"].get("httpFilters", [])
                    if h["name"] == HTTP_RBAC]
    return out


def admitted(fcs: list[dict[str, Any]], port: int) -> set[str]:
    """The principals every chain of a port admits: the ALLOW policies whose permissions match
    the port, their exact identities. None of the chains may have a DENY policy."""
    per_chain = []
    for fc in fcs:
        filters = [f for f in rbac_filters(fc) if f.get("rules")]
        names: set[str] = set()
        for f in filters:
            assert f["rules"].get("action", "ALLOW") == "ALLOW", f["rules"]
            for pol in f["rules"].get("policies", {}).values():
                if any(permission_admits(p, port) for p in pol["permissions"]):
                    for pid in pol["principals"]:
                        names |= exact_principals(pid)
        per_chain.append(names if filters else None)
    assert all(c == per_chain[0] for c in per_chain), per_chain
    if per_chain[0] is None:
        raise AssertionError(f"port {port}: no RBAC filter")
    return per_chain[0]


def admits(fcs: list[dict[str, Any]], port: int, principal: str) -> bool:
    """Envoy's decision for a peer with this identity on this port, on every chain of it: no
    ALLOW filter, or one of its policies matching both (the filters of a chain are ANDed)."""
    spiffe = f"spiffe://{principal}"
    decisions = set()
    for fc in fcs:
        ok = True
        for f in rbac_filters(fc):
            if not f.get("rules"):
                continue
            ok = ok and any(
                any(permission_admits(p, port) for p in pol["permissions"])
                and any(principal_admits(i, spiffe) for i in pol["principals"])
                for pol in f["rules"].get("policies", {}).values())
        decisions.add(ok)
    assert len(decisions) == 1, f"port {port}: the chains disagree"
    return decisions.pop()


# --- the oracle ------------------------------------------------------------------------------


def own_principal(pod: Any) -> str:
    return f"cluster.local/ns/{pod.metadata.namespace}/sa/{pod.spec.service_account_name}"


def wait_dump(mesh: Mesh, pod: Any, ready: Callable[[dict[int, list[dict[str, Any]]]], bool]
              ) -> dict[int, list[dict[str, Any]]]:
    """istiod pushes policy changes asynchronously: ask until `ready`, or 30 s have passed."""
    deadline = time.monotonic() + 30
    while True:
        chains = inbound(mesh.sidecar_config(pod))
        if ready(chains) or time.monotonic() > deadline:
            return chains
        time.sleep(1)


def report(mesh: Mesh, core: client.CoreV1Api, pods: list[Any], listed: dict[str, str]
           ) -> dict[str, Any]:
    """Per pod role: ports by what opens them, the principals istiod admits, the expected."""
    out: dict[str, Any] = {}
    for pod in pods:
        role = pod.metadata.labels["ray.io/node-type"]
        ports = listening_ports(ray_start(core, pod))
        chains = inbound(settled_dump(mesh, pod, set(ports)))
        missing = sorted(set(ports) - set(chains))
        assert not missing, f"{role}: no inbound chain for {missing}"
        got = {p: admitted(chains[p], p) for p in ports}
        out[role] = {"pod": pod, "ports": ports, "chains": chains, "got": got,
                     "want": expected(ports, own_principal(pod), listed)}
    return out


def test_istiod_admits_each_port_exactly_the_principals_values_list(mesh: Mesh) -> None:
    ns = "authz-lists"
    core = client.CoreV1Api(mesh.api)
    pods = install(mesh, ns, "defaults", sets(*LISTS))
    roles = report(mesh, core, pods, LISTED_BY)
    assert set(roles) == {"head", "worker"}
    for role, r in roles.items():
        wrong = {p: (r["got"][p], r["want"][p]) for p in r["ports"]
                 if r["got"][p] != r["want"][p]}
        assert wrong == {}, role
        own = own_principal(r["pod"])
        assert own == f"cluster.local/ns/{ns}/sa/m-meshray-ray"
        for port, opener in r["ports"].items():
            # Envoy's decision, identity by identity, matches what the filters name.
            for who in (own, SUBMITTER, NOTEBOOK, PROMETHEUS, FRONTEND):
                assert admits(r["chains"][port], port, who) == (who in r["want"][port]), (
                    role, port, opener, who)
            # A workload of the mesh nobody listed, in this namespace or another: nowhere.
            for stranger in (f"cluster.local/ns/{ns}/sa/default", "cluster.local/ns/x/sa/y"):
                assert not admits(r["chains"][port], port, stranger), (role, port, stranger)
    head = roles["head"]
    by_opener = {o: p for p, o in head["ports"].items()}
    # the evidence, in words: the dashboard and client are closed to the cluster itself
    assert head["got"][by_opener["dashboard-port"]] == {SUBMITTER}
    assert head["got"][by_opener["ray-client-server-port"]] == {NOTEBOOK}
    assert head["got"][by_opener["port"]] == {own_principal(head["pod"])}
    assert head["got"][by_opener["metrics-export-port"]] == {own_principal(head["pod"]),
                                                              PROMETHEUS}


def test_a_principal_removed_from_values_leaves_the_filters(mesh: Mesh) -> None:
    """helm upgrade without the Prometheus principal: istiod drops it from the running pods'
    filters (the pods are not replaced: the RayCluster did not change)."""
    ns = "authz-upgrade"
    core = client.CoreV1Api(mesh.api)
    pods = install(mesh, ns, "defaults", sets(LISTS[3]))
    worker = next(p for p in pods if p.metadata.labels["ray.io/node-type"] == "worker")
    metrics = int(ray_start(core, worker).params["metrics-export-port"])
    chains = wait_dump(mesh, worker, lambda c: metrics in c)
    assert admitted(chains[metrics], metrics) == {own_principal(worker), PROMETHEUS}
    Helm(HELMS["helm4"], mesh.kubeconfig).run(
"upgrade", "m", chart(), "-n", ns, "--reset-values")
    chains = wait_dump(mesh, worker, lambda c: PROMETHEUS not in admitted(c[metrics], metrics))
    assert admitted(chains[metrics], metrics) == {own_principal(worker)}
    assert not admits(chains[metrics], metrics, PROMETHEUS)
    assert core.read_namespaced_pod(worker.metadata.name, ns).metadata.uid == worker.metadata.uid


def test_without_the_policy_no_port_has_an_rbac_filter(mesh: Mesh) -> None:
    ns = "authz-off"
    core = client.CoreV1Api(mesh.api)
    pods = install(mesh, ns, "defaults", sets("mesh.authorizationPolicy.enabled=false"))
    for pod in pods:
        ports = listening_ports(ray_start(core, pod))
        chains = inbound(settled_dump(mesh, pod, set(ports)))
        with_rbac = sorted(p for p in ports for fc in chains.get(p, [])
                           if any(f.get("rules") for f in rbac_filters(fc)))
        assert with_rbac == []
        assert all(admits(chains[p], p, "cluster.local/ns/x/sa/y") for p in ports)


@pytest.mark.parametrize("gateway_policy", [False, True])
def test_the_gateway_reaches_what_its_routes_reach(mesh: Mesh, gateway_policy: bool) -> None:
    """With gateway routes the gateway's principal is admitted to the routed ports only; the
    gateway's own AuthorizationPolicy (gateway.authorizationPolicy: the dashboard and the Ray
    Client) adds its rule without opening any other port (ALLOW policies are ORed)."""
    ns = f"authz-gw-{str(gateway_policy).lower()}"
    core = client.CoreV1Api(mesh.api)
    pods = install(mesh, ns, "defaults", sets(
        "gateway.enabled=true", "gateway.routes.dashboard.enabled=true",
        "gateway.routes.dashboard.host=ray.example.com", "gateway.acknowledgeUnauthenticated=true",
        f"gateway.authorizationPolicy.enabled={str(gateway_policy).lower()}"))
    roles = report(mesh, core, pods, {})
    for role, r in roles.items():
        for port, opener in r["ports"].items():
            want = set(r["want"][port])
            # the route's port; the gateway's own policy names the dashboard and the client
            gateway_ports = {"dashboard-port"} | (USER_FACING if gateway_policy else set())
            if role == "head" and opener in gateway_ports:
                want.add(GATEWAY)
            assert r["got"][port] == want, (role, port, opener)
            assert admits(r["chains"][port], port, GATEWAY) == (GATEWAY in want)


# --- the gateway's JWT (gateway.auth / gatewayAPI.auth) -------------------------------------

JWT_USER = "https://auth.example.com/alice"  # a request principal: a valid JWT's iss/sub
ISSUER = ("https://auth.example.com", "https://auth.example.com/jwks")
AUTHN_KEYS = {"request.auth.principal", "source.principal"}


def request_admits(pid: dict[str, Any], spiffe: str | None, jwt: str | None) -> bool:
    """Envoy's principal trees for one request: the peer's mTLS identity (None: plaintext) and
    the JWT's request principal Istio's authn filter writes into metadata (None: no JWT)."""
    def leaf(node: dict[str, Any]) -> bool | None:
        if "authenticated" in node:
            return spiffe is not None and string_match(node["authenticated"]["principalName"],
                                                       spiffe)
        meta = node.get("metadata") or (node.get("sourcedMetadata") or {}).get("metadataMatcher")
        if meta is None:
            return None
        keys = [p["key"] for p in meta["path"]]
        if meta["filter"] == "envoy.filters.http.jwt_authn":
            # the validated JWT's payload, which Envoy's JWT filter writes; a request
            # principal is Istio's "<iss>/<sub>" of that payload
            assert keys in (["payload", "iss"], ["payload", "sub"]), meta
            iss, _, sub = (jwt or "").rpartition("/")
            have = None if jwt is None else (iss if keys[1] == "iss" else sub)
        else:
            assert meta["filter"] == "istio_authn", meta
            (key,) = keys
            assert key in AUTHN_KEYS, f"a metadata key this test does not read: {meta}"
            have = jwt if key == "request.auth.principal" else (
                spiffe.removeprefix("spiffe://") if spiffe else None)
        value = meta["value"]
        if "presentMatch" in value:
            found = have is not None
        else:
            found = have is not None and string_match(value["stringMatch"], have)
        return found != bool(meta.get("invert"))
    return tree_admits(pid, leaf, ("orIds", "andIds", "ids", "notId"))


def decision(fcs: list[dict[str, Any]], port: int, principal: str | None,
             jwt: str | None) -> dict[str, bool]:
    """Envoy's RBAC decision on every chain of a port for one request: `deny` (a DENY filter's
    policy matches) and `allowed` (no DENY match, and every ALLOW filter has a matching policy)."""
    spiffe = f"spiffe://{principal}" if principal else None
    out = set()
    for fc in fcs:
        denied, allowed = False, True
        for f in rbac_filters(fc):
            rules = f.get("rules")
            if not rules:
                continue
            hit = any(any(permission_admits(p, port) for p in pol["permissions"])
                      and any(request_admits(i, spiffe, jwt) for i in pol["principals"])
                      for pol in rules.get("policies", {}).values())
            if rules.get("action", "ALLOW") == "DENY":
                denied = denied or hit
            else:
                allowed = allowed and hit
        out.add((denied, allowed and not denied))
    assert len(out) == 1, f"port {port}: the chains disagree"
    denied, allowed = out.pop()
    return {"deny": denied, "allowed": allowed}


def has_deny(chains: dict[int, list[dict[str, Any]]], port: int) -> bool:
    return any(f.get("rules", {}).get("action") == "DENY"
               for fc in chains.get(port, []) for f in rbac_filters(fc))


OPERATOR = "cluster.local/ns/ray-system/sa/kuberay-operator"
FRONTS = {
    "gateway": ("gateway.enabled=true", "gateway.http.enabled=false",
                "gateway.https.enabled=true", "gateway.https.credentialName=ray-tls"),
    "gatewayAPI": ("gatewayAPI.enabled=true", "gatewayAPI.https.certificateSecret=ray-tls"),
}


@pytest.mark.parametrize("front", sorted(FRONTS))
def test_require_jwt_spares_listed_mesh_callers_not_the_gateway(mesh: Mesh, front: str) -> None:
    """The require-JWT DENY policy as istiod programs it at the head: the in-mesh callers the
    values admit (dashboardPrincipals, clientPrincipals, <front>.authorizationPolicy.
    extraPrincipals) reach their port without a JWT; the gateway's principal needs one.
    Negative control: the DENY policy as the chart rendered it before (no notPrincipals),
    applied to the same pods, denies the listed submitter without a JWT."""
    ns = f"authz-jwt-{front.lower()}"
    core = client.CoreV1Api(mesh.api)
    pods = install(mesh, ns, "defaults", sets(*FRONTS[front],
        f"{front}.routes.dashboard.enabled=true", f"{front}.routes.dashboard.host=ray.example.com",
        f"{front}.routes.client.enabled=true", f"{front}.routes.client.host=client.example.com",
        f"{front}.auth.jwtIssuer={ISSUER[0]}", f"{front}.auth.jwksUri={ISSUER[1]}",
        f"{front}.auth.audiences={{ray}}", f"{front}.authorizationPolicy.enabled=true",
        f"{front}.authorizationPolicy.extraPrincipals={{{OPERATOR}}}",
        f"mesh.authorizationPolicy.dashboardPrincipals={{{SUBMITTER}}}",
        f"mesh.authorizationPolicy.clientPrincipals={{{NOTEBOOK}}}"))
    (head,) = [p for p in pods if p.metadata.labels["ray.io/node-type"] == "head"]
    by_opener = {o: p for p, o in listening_ports(ray_start(core, head)).items()}
    dash, cli = by_opener["dashboard-port"], by_opener["ray-client-server-port"]
    if front == "gateway":
        gateway = GATEWAY
    else:  # istiod runs Gateway <name> of class istio as <name>-istio, with that account
        manifest = Helm(HELMS["helm4"], mesh.kubeconfig).run("get", "manifest", "m", "-n", ns)
        (gw,) = [d for d in yaml.safe_load_all(manifest.stdout) if d and d["kind"] == "Gateway"]
        gateway = f"cluster.local/ns/{ns}/sa/{gw['metadata']['name']}-istio"
    chains = wait_dump(mesh, head, lambda c: has_deny(c, dash) and has_deny(c, cli))
    assert has_deny(chains, dash) and has_deny(chains, cli), "istiod sent no DENY filter"
    stranger = f"cluster.local/ns/{ns}/sa/default"
    spared = {dash: {SUBMITTER, OPERATOR}, cli: {NOTEBOOK, OPERATOR}}
    for port, listed in spared.items():
        for who in listed:  # listed in-mesh callers: no JWT needed
            assert decision(chains[port], port, who, None) == {"deny": False, "allowed": True}, (
                port, who)
        # the gateway: denied without a JWT, admitted with one
        assert decision(chains[port], port, gateway, None) == {"deny": True, "allowed": False}
        assert decision(chains[port], port, gateway, JWT_USER) == {"deny": False,
                                                                   "allowed": True}
        # nobody else, JWT or not; a plaintext peer without a JWT is denied by the DENY rule
        for who in ({SUBMITTER, NOTEBOOK} - listed) | {stranger}:
            assert not decision(chains[port], port, who, JWT_USER)["allowed"], (port, who)
        assert decision(chains[port], port, None, None)["deny"], port
    # Negative control: the chart's old DENY rule (no source scope) on the same pods.
    api = client.CustomObjectsApi(mesh.api)
    (deny,) = [p for p in api.list_namespaced_custom_object(
        "security.istio.io", "v1", ns, "authorizationpolicies")["items"]
        if p["spec"].get("action") == "DENY"]
    ports = [str(dash), str(cli)]
    api.patch_namespaced_custom_object(
        "security.istio.io", "v1", ns, "authorizationpolicies", deny["metadata"]["name"],
        {"spec": {"rules": [{"from": [{"source": {"notRequestPrincipals": ["*"]}}],
                             "to": [{"operation": {"ports": ports}}]}]}})
    chains = wait_dump(mesh, head, lambda c: decision(c[dash], dash, SUBMITTER, None)["deny"])
    assert decision(chains[dash], dash, SUBMITTER, None) == {"deny": True, "allowed": False}
    assert decision(chains[cli], cli, OPERATOR, None)["deny"]
