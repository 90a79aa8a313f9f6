"""What the real istiod sends ztunnel and a waypoint for the chart's ambient profile
(mesh.dataplane=ambient, mesh.waypoint).

A second istiod, built from the same pinned Istio module, runs beside the suite's with
PILOT_ENABLE_AMBIENT=true. The local control plane has no istio-cni node agent and no
deployment controller, so the test plays both, with their own rules:
- istio-cni: whether it enrols a Pod is istio-cni's own decision (CompiledEnablementSelectors
  .Matches with the enablement selectors of the pinned istio-cni chart's values, asked through
  `meshray-xds -cni-selectors`); for an enrolled Pod the test writes what the agent writes once
  it has redirected the Pod, the annotation `ambient.istio.io/redirection: enabled`.
- istiod's deployment controller for the waypoint Gateway: the ServiceAccount, Service
  (status-port 15021, the HBONE listener's port 15008, appProtocol hbone) and Pod of the name
  istiod gives a Gateway of class istio-waypoint (the Gateway's own name). istiod itself then
  marks the Gateway Programmed with the Service's address (asserted: it is what makes it a
  waypoint).
Then `meshray-xds -type ztunnel` subscribes, as ztunnel does (delta ADS, wildcard), to every
istio.workload.Address and istio.security.Authorization, and `-type waypoint` asks for the
waypoint Pod's listeners and clusters.

The oracle: Pod names, IPs and service accounts from the live Pods; the ports each Ray node
listens on from the `ray start` the operator's Pod runs (tests/cluster/podcmd.py); the head
Service's appProtocols from the live Service KubeRay made; principals from the live Pods'
service accounts.

Negative controls: a Pod without the ambient label is not enrolled (no HBONE, no policies
from ztunnel's view); with `waypoint-for: service` the Ray pods have no waypoint (Ray's
Pod-FQDN traffic bypasses it); the head Service's `tcp` port (8080) gets no HTTP chain.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from cases import CASES
from chart_support import skip_unless_ci
from kube import wait_for
from kubernetes import client
from podcmd import listening_ports, ray_start
from test_sidecar_config import install
from xds_support import XDS, Mesh, string_match

REPO = Path(__file__).resolve().parents[2]
HCM = "envoy.filters.network.http_connection_manager"
TCP = "envoy.filters.network.tcp_proxy"
GW_GROUP = ("gateway.networking.k8s.io", "v1")


def ambient_cases() -> list[str]:
    """The values examples that ask for the ambient data plane (read from their values)."""
    out = []
    for case, f in CASES.items():
        values = (yaml.safe_load(f.read_text()) if f else None) or {}
        if (values.get("mesh") or {}).get("dataplane") == "ambient":
            out.append(case)
    return out


def waypoint_on(case: str) -> bool:
    f = CASES[case]
    values = (yaml.safe_load(f.read_text()) if f else None) or {}
    return bool(((values.get("mesh") or {}).get("waypoint") or {}).get("enabled"))


def cni_values() -> Path:
    return next((REPO / ".cache").glob("istio-src-*")) / "manifests/charts/istio-cni/values.yaml"


@pytest.fixture(scope="module")
def ambient(mesh: Mesh) -> Iterator[str]:
    """An ambient-enabled istiod beside the suite's (the other tests keep theirs)."""
    cp = mesh.cp
    saved = (cp.istiod_debug, cp.istiod_https)
    addr = cp.start_istiod(env={"PILOT_ENABLE_AMBIENT": "true"})
    cp.istiod_debug, cp.istiod_https = saved
    yield addr


def run_xds(args: list[str]) -> dict[str, Any]:
    res = subprocess.run([str(XDS), *args], capture_output=True, text=True, timeout=90,
                         check=False)
    assert res.returncode == 0, res.stderr
    return dict(json.loads(res.stdout))


def cni_enrol(mesh: Mesh, ns: str, pods: list[Any]) -> dict[str, bool]:
    """istio-cni's decision per Pod; the enrolled ones get the agent's annotation."""
    core = client.CoreV1Api(mesh.api)
    ns_labels = core.read_namespace(ns).metadata.labels or {}
    out = {}
    for p in pods:
        enrolled = run_xds(["-cni-selectors", str(cni_values()),
                            "-labels", json.dumps(p.metadata.labels or {}),
                            "-annotations", json.dumps(p.metadata.annotations or {}),
                            "-namespace-labels", json.dumps(ns_labels)])["enrolled"]
        if enrolled:
            core.patch_namespaced_pod(p.metadata.name, ns, {"metadata": {"annotations": {
                "ambient.istio.io/redirection": "enabled"}}})
        out[p.metadata.name] = enrolled
    return out


def ztunnel_config(addr: str) -> dict[str, Any]:
    return run_xds(["-addr", addr, "-type", "ztunnel", "-pod", "ztunnel-local",
                    "-namespace", "istio-system", "-ip", "10.255.0.1",
                    "-labels", json.dumps({"app": "ztunnel"}), "-service-account", "ztunnel"])


def settled(addr: str, ok: Callable[[dict[str, Any]], bool], timeout: float = 30) -> dict[str, Any]:
    """istiod learns Pods, Services and Gateways from its informers: ask until `ok`."""
    deadline = time.monotonic() + timeout
    while True:
        z = ztunnel_config(addr)
        if ok(z) or time.monotonic() > deadline:
            return z
        time.sleep(1)


def workloads(z: dict[str, Any], ns: str) -> dict[str, dict[str, Any]]:
    return {a["workload"]["name"]: a["workload"] for a in z["addresses"]
            if "workload" in a and a["workload"].get("namespace") == ns}


def services(z: dict[str, Any], ns: str) -> dict[str, dict[str, Any]]:
    return {a["service"]["name"]: a["service"] for a in z["addresses"]
            if "service" in a and a["service"].get("namespace") == ns}


def ips(w: dict[str, Any]) -> list[str]:
    return [str(ipaddress.ip_address(base64.b64decode(a))) for a in w.get("addresses") or []]


def admits(policy: dict[str, Any], port: int, principal: str) -> bool:
    """Whether an ALLOW Authorization (ztunnel's form) admits a peer with this identity on this
    port: one of its groups whose rules all hold; a rule holds when one of its matches does; a
    match's fields are ANDed and an absent field matches anything. Fields this oracle does not
    read fail the test rather than pass unread."""
    def match(m: dict[str, Any]) -> bool:
        known = {"destinationPorts", "notDestinationPorts", "principals", "notPrincipals"}
        assert set(m) <= known, f"a match field this test does not read: {m}"
        ports = [int(x) for x in m.get("destinationPorts") or []]
        if ports and port not in ports:
            return False
        if port in [int(x) for x in m.get("notDestinationPorts") or []]:
            return False
        if m.get("principals") and not any(string_match(x, principal) for x in m["principals"]):
            return False
        return not any(string_match(x, principal) for x in m.get("notPrincipals") or [])

    return any(all(any(match(m) for m in r["matches"]) for r in g["rules"])
               for g in policy["groups"])


def plain_pod(mesh: Mesh, ns: str, name: str) -> Any:
    core = client.CoreV1Api(mesh.api)
    core.create_namespaced_pod(ns, {"metadata": {"name": name, "labels": {"app": name}},
                                    "spec": {"containers": [{"name": "c", "image": "busybox"}]}})
    return wait_for(f"{name} ip", lambda: (
        p if (p := core.read_namespaced_pod(name, ns)).status.pod_ip else None), timeout=60)


@pytest.mark.parametrize("case", ambient_cases())
def test_ray_pods_are_enrolled_with_hbone_and_their_policies(mesh: Mesh, ambient: str,
                                                             case: str) -> None:
    ns = f"amb-{case}"[:63]
    pods = install(mesh, ns, case)
    control = plain_pod(mesh, ns, "not-ambient")
    decisions = cni_enrol(mesh, ns, [*pods, control])
    assert decisions == {**{p.metadata.name: True for p in pods}, "not-ambient": False}
    names = {p.metadata.name for p in pods}
    z = settled(ambient, lambda z: names | {"not-ambient"} <= set(workloads(z, ns)) and all(
        workloads(z, ns)[n].get("tunnelProtocol") == "HBONE" for n in names))
    ws = workloads(z, ns)
    auth = {f"{a['namespace']}/{a['name']}": a for a in z["authorizations"] or []}
    core = client.CoreV1Api(mesh.api)
    for p in pods:
        w = ws[p.metadata.name]
        assert w["tunnelProtocol"] == "HBONE", w
        assert ips(w) == [p.status.pod_ip]
        assert w["serviceAccount"] == p.spec.service_account_name
        policies = set(w.get("authorizationPolicies") or [])
        ray = auth[f"{ns}/{p.metadata.labels['ray.io/cluster']}-ray"]
        assert f"{ns}/{ray['name']}" in policies
        principal = f"cluster.local/ns/{ns}/sa/{p.spec.service_account_name}"
        # Every port this node's Ray listens on is admitted to the cluster's own principal
        # (an ALLOW group: its rules ANDed, the matches of a rule ORed), but the dashboard and
        # the Ray Client, which run code for their callers (dashboard/clientPrincipals only).
        listening = listening_ports(ray_start(core, p))
        admitted = {port for port in listening if admits(ray, port, principal)}
        assert not any(admits(ray, port, f"cluster.local/ns/{ns}/sa/someone-else")
                       for port in listening)
        guarded = {port for port, flag in listening.items()
                   if flag in ("dashboard-port", "ray-client-server-port")}
        assert set(listening) - guarded <= admitted
        assert guarded & admitted == set()
        # STRICT: a policy that denies peers without an mTLS identity applies to the pod.
        strict = [auth[n] for n in policies if n in auth and auth[n].get("action") == "DENY"]
        assert any({"presence": {}} in m.get("notPrincipals", [])
                   for a in strict for g in a["groups"] for r in g["rules"] for m in r["matches"])
    # Negative control: the Pod without the label is known to ztunnel but not enrolled.
    c = ws["not-ambient"]
    assert c.get("tunnelProtocol", "NONE") == "NONE" and not c.get("authorizationPolicies")


def play_waypoint(mesh: Mesh, ns: str, gw: str) -> Any:
    """What istiod's deployment controller runs for a Gateway of class istio-waypoint
    (istio-discovery's waypoint template): ServiceAccount, Service and Pod named after it."""
    core = client.CoreV1Api(mesh.api)
    sel = {"gateway.networking.k8s.io/gateway-name": gw}
    core.create_namespaced_service_account(ns, {"metadata": {"name": gw}})
    core.create_namespaced_service(ns, {
        "metadata": {"name": gw, "labels": sel},
        "spec": {"selector": sel,
                 "ports": [{"name": "status-port", "port": 15021, "appProtocol": "tcp"},
                           {"name": "mesh", "port": 15008, "appProtocol": "hbone"}]}})
    core.create_namespaced_pod(ns, {
        "metadata": {"name": f"{gw}-0", "labels": {
            **sel, "gateway.networking.k8s.io/gateway-class-name": "istio-waypoint",
            "istio.io/dataplane-mode": "none", "sidecar.istio.io/inject": "false"}},
        "spec": {"serviceAccountName": gw,
                 "containers": [{"name": "istio-proxy", "image": "istio/proxyv2"}]}})
    return wait_for("waypoint pod", lambda: (
        p if (p := core.read_namespaced_pod(f"{gw}-0", ns)).status.pod_ip else None), timeout=60)


def programmed(mesh: Mesh, ns: str, gw: str) -> dict[str, Any]:
    """The Gateway once istiod has marked it Programmed (its status carries the address
    ztunnel is told to send through)."""
    co = client.CustomObjectsApi(mesh.api)

    def check() -> dict[str, Any] | None:
        g = co.get_namespaced_custom_object(*GW_GROUP, ns, "gateways", gw)
        conds = {c["type"]: c["status"] for c in (g.get("status") or {}).get("conditions") or []}
        return g if conds.get("Programmed") == "True" else None
    return wait_for(f"{gw} programmed", check, timeout=60)


def waypoint_config(addr: str, wp: Any, gw: str) -> dict[str, Any]:
    return run_xds(["-addr", addr, "-type", "waypoint", "-pod", wp.metadata.name,
                    "-namespace", wp.metadata.namespace, "-ip", wp.status.pod_ip,
                    "-labels", json.dumps(wp.metadata.labels), "-service-account", gw])


def main_internal(dump: dict[str, Any]) -> dict[str, Any]:
    """The waypoint's inbound (HBONE-terminated) listener, as {pods: {ip: {app protocol:
    filter}, default filter}, vips: {ip: {port: filter}}}: where istiod's filter chain matcher
    sends a connection by destination IP, then by port (a Service VIP) or by the protocol the
    listener's http_inspector detects (a pod IP)."""
    li = next(x for x in dump["listeners"] if x["name"] == "main_internal")
    chains = {fc["name"]: fc["filters"][-1]["name"] for fc in li["filterChains"]}

    def action(a: dict[str, Any]) -> str:
        return chains[a["action"]["typedConfig"]["value"]]
    out: dict[str, Any] = {"pods": {}, "vips": {}}
    tree = li["filterChainMatcher"]["matcherTree"]["customMatch"]["typedConfig"]
    for rm in tree.get("rangeMatchers") or []:
        sub = rm["onMatch"]["matcher"]
        inp = sub["matcherTree"]["input"]["name"]
        table = sub["matcherTree"]["exactMatchMap"]["map"]
        for r in rm["ranges"]:
            ip = r["addressPrefix"]
            if inp == "port":
                out["vips"][ip] = {int(k): action(v) for k, v in table.items()}
            else:
                assert inp == "application-protocol", inp
                out["pods"][ip] = {k.strip("'"): action(v) for k, v in table.items()}
                out["pods"][ip]["other"] = action(sub["onNoMatch"])
    return out


@pytest.mark.parametrize("mode", ["all", "workload", "service"])
def test_which_traffic_the_waypoint_takes_and_what_it_speaks(mesh: Mesh, ambient: str,
                                                             mode: str) -> None:
    """Which Ray addresses ztunnel sends through the waypoint, per istio.io/waypoint-for (and
    the chart's istio.io/use-waypoint placement), and what the waypoint does per port."""
    case = "ex-ambient-waypoint"
    ns = f"amb-wp-{mode}"
    pods = install(mesh, ns, case, ("--set", f"mesh.waypoint.for={mode}"))
    cni_enrol(mesh, ns, pods)
    cluster = pods[0].metadata.labels["ray.io/cluster"]
    gw = f"{cluster}-waypoint"
    wp = play_waypoint(mesh, ns, gw)
    g = programmed(mesh, ns, gw)
    assert g["metadata"]["labels"]["istio.io/waypoint-for"] == mode
    host = f"{gw}.{ns}.svc.cluster.local"
    assert {"type": "Hostname", "value": host} in g["status"]["addresses"]
    head_svc = f"{cluster}-head-svc"
    pod_ips = {p.status.pod_ip for p in pods}
    names = {p.metadata.name for p in pods}

    def via(x: dict[str, Any]) -> str | None:
        return ((x.get("waypoint") or {}).get("hostname") or {}).get("hostname")
    want_pods = mode in ("all", "workload")
    want_svc = mode in ("all", "service")

    def done(z: dict[str, Any]) -> bool:
        ws, ss = workloads(z, ns), services(z, ns)
        return names <= set(ws) and all((via(ws[n]) == host) == want_pods for n in names) and \
            head_svc in ss and (via(ss[head_svc]) == host) == want_svc
    z = settled(ambient, done)
    ws, ss = workloads(z, ns), services(z, ns)
    assert {n: via(ws[n]) for n in names} == {n: host if want_pods else None for n in names}
    assert via(ss[head_svc]) == (host if want_svc else None)
    assert via(ss[f"{cluster}-headless-svc"]) is None  # no VIP: nothing to send through

    wpc = waypoint_config(ambient, wp, gw)
    mi = main_internal(wpc)
    # Pod-addressed traffic (Ray's Pod FQDNs): the waypoint sniffs each connection; HTTP/1.1
    # and h2c (Ray's gRPC) get the HTTP connection manager, anything else TCP, on every port.
    if want_pods:
        assert set(mi["pods"]) == pod_ips
        for ip in pod_ips:
            assert mi["pods"][ip] == {"h2c": HCM, "http/1.1": HCM, "other": TCP}
    else:
        assert set(mi["pods"]) & pod_ips == set()
    # Service-addressed traffic (the head Service's VIP): a chain per Service port, HTTP for
    # the ports KubeRay's head Service declares grpc/http, TCP for tcp (metrics, 8080).
    svc = client.CoreV1Api(mesh.api).read_namespaced_service(head_svc, ns)
    if want_svc:
        chains = mi["vips"][svc.spec.cluster_ip]
        declared = {p.port: (p.app_protocol or "").lower() for p in svc.spec.ports}
        assert set(chains) == set(declared)
        for port, proto in declared.items():
            assert chains[port] == (HCM if proto in ("grpc", "http", "http2") else TCP), port
        assert chains[8080] == TCP  # negative control: declared tcp, so no L7
    else:
        assert svc.spec.cluster_ip not in mi["vips"]


def test_the_waypoint_is_admitted_and_checks_the_callers(mesh: Mesh, ambient: str) -> None:
    """Through the waypoint, a Ray pod's ztunnel sees the waypoint's identity: the chart's
    `<cluster>-ray` policy must admit it (else every waypointed connection is denied), and the
    `<cluster>-waypoint` policy (targetRefs to the Gateway) must reach the waypoint with the
    callers' principals. Reuses the `all` namespace of the test above."""
    ns = "amb-wp-all"
    core = client.CoreV1Api(mesh.api)
    pods = [p for p in core.list_namespaced_pod(ns, label_selector="ray.io/is-ray-node=yes").items]
    if not pods:
        skip_unless_ci("needs test_which_traffic_the_waypoint_takes_and_what_it_speaks[all]")
    cluster = pods[0].metadata.labels["ray.io/cluster"]
    gw = f"{cluster}-waypoint"
    z = ztunnel_config(ambient)
    auth = {f"{a['namespace']}/{a['name']}": a for a in z["authorizations"] or []}
    ray = auth[f"{ns}/{cluster}-ray"]
    listening: set[int] = set()
    for p in pods:
        listening |= set(listening_ports(ray_start(core, p)))
    assert all(admits(ray, port, f"cluster.local/ns/{ns}/sa/{gw}") for port in listening)
    # The targetRefs policy is the waypoint's (an Envoy RBAC filter), not ztunnel's.
    assert f"{ns}/{gw}" not in auth
    wp = core.read_namespaced_pod(f"{gw}-0", ns)
    dump = json.dumps(waypoint_config(ambient, wp, gw))
    assert f"ns[{ns}]-policy[{gw}]" in dump
    assert f"spiffe://cluster.local/ns/{ns}/sa/{pods[0].spec.service_account_name}" in dump
