"""What the real istiod programs for each Ray Pod's sidecar, from the xDS it sends (meshray-xds).

For the defaults and every values example, installed on the local control plane with the real
KubeRay operator v1.6.2, every port the Pod's `ray start` will listen on (read from the Pod the
operator made, tests/cluster/podcmd.py) must have inbound filter chains (listener
virtualInbound) that accept only mutual TLS where the PeerAuthentication says STRICT and are L7:
HTTP connection manager, with HTTP/2 for gRPC (Ray-native TLS: TLS passthrough instead). Every
other declared port must speak what the Sidecar ingress (else the Services) declares, and istiod
must report no conflicting inbound listener.

Before the chart declared its ports in the Sidecars' ingress, KubeRay's own head Service
(`appProtocol: tcp` everywhere, kuberay#1946) left 6379, 8265 and 10001 plain TCP and made
8080, 8000 and 9000 protocol conflicts with the headless Service, whose winner depended on
creation order. Since the RayCluster's headService template (issue 10) declares the head's Ray
ports with their protocols, the Services alone leave only 8080 in conflict (the `metrics` port
KubeRay appends, tcp): test_without_sidecar_ingress shows that, as a control.

Negative controls: PERMISSIVE mTLS yields plaintext chains; a port dropped from both the
headless Service and the Sidecar loses its chain (no L7).
"""

from __future__ import annotations

import copy
import time
from typing import Any

import pytest
import yaml
from cases import CASES
from kube import HELMS, Helm, dyn, live_services, ray_pods, resolve_named_target, running, wait_for
from kubernetes import client
from podcmd import listening_ports, ray_start
from xds_support import Mesh


def dataplane(case: str) -> str:
    """The case's mesh.dataplane (its values, else the chart's default, sidecar)."""
    f = CASES[case]
    values = (yaml.safe_load(f.read_text()) if f else None) or {}
    return str((values.get("mesh") or {}).get("dataplane") or "sidecar")


# Sidecar examples only: ambient pods have no sidecar to ask for (tests/mesh/test_ambient.py).
EXAMPLES = ["defaults"] + [c for c in CASES if c.startswith("ex-") and dataplane(c) == "sidecar"]
HCM = "envoy.filters.network.http_connection_manager"
TCP = "envoy.filters.network.tcp_proxy"
# Measured with istiod (Istio module v0.0.0-20260423205519-b01690e6db7d) and KubeRay v1.6.2,
# mesh.sidecar.inbound=false: which head ports are plain TCP and which are declared with two
# protocols (KubeRay's head Service against the headless Service). Before issue 10's head
# Service template, 6379, 8265 and 10001 were plain TCP (KubeRay declared them tcp); now the
# template declares them grpc/http, and only KubeRay's appended `metrics` (tcp) conflicts.
WITHOUT_INGRESS_NOT_L7: set[tuple[str, int]] = set()
WITHOUT_INGRESS_CONFLICTS = {("head", 8080)}


def declared(port: dict[str, Any]) -> str:
    app = (port.get("appProtocol") or "").lower()
    if app:
        return app
    name = (port.get("name") or "").lower()
    for proto in ("grpc", "http2", "https", "http", "tcp", "tls"):
        if name == proto or name.startswith(proto + "-"):
            return proto
    return "unknown"


def inbound(dump: dict[str, Any]) -> dict[int, list[dict[str, Any]]]:
    vi = next(li for li in dump["listeners"] if li["name"] == "virtualInbound")
    out: dict[int, list[dict[str, Any]]] = {}
    for fc in vi["filterChains"]:
        port = fc.get("filterChainMatch", {}).get("destinationPort")
        if port:
            out.setdefault(int(port), []).append(fc)
    return out


def chain_kind(fc: dict[str, Any]) -> str:
    last = fc["filters"][-1]
    if last["name"] == TCP:
        return "tcp"
    if last["name"] == HCM:
        return "grpc" if "http2ProtocolOptions" in last["typedConfig"] else "http"
    return last["name"]


def mutual_tls_only(fcs: list[dict[str, Any]]) -> bool:
    return all(
        fc.get("filterChainMatch", {}).get("transportProtocol") == "tls"
        and fc.get("transportSocket", {}).get("typedConfig", {}).get("requireClientCertificate")
        is True
        for fc in fcs
    )


def install(mesh: Mesh, ns: str, case: str, extra: tuple[str, ...] = ()) -> list[Any]:
    from cases import value_args

    Helm(HELMS["helm4"], mesh.kubeconfig).run(
        "install",
        "m",
        str(chart()),
        "-n",
        ns,
        "--create-namespace",
        *value_args(case, "v1.6.2"),
        *extra,
    )
    core = client.CoreV1Api(mesh.api)
    rc = client.CustomObjectsApi(mesh.api).list_namespaced_custom_object(
        "ray.io", "v1", ns, "rayclusters"
    )["items"][0]
    n = 1 + sum(int(g["replicas"]) for g in rc["spec"]["workerGroupSpecs"])
    return wait_for(
        f"{n} running pods in {ns}",
        lambda: p if len(p := ray_pods(core, ns)) == n and running(p) else None,
        timeout=90,
    )


def chart() -> str:
    from kube import CHART

    return str(CHART)


def settled_dump(mesh: Mesh, pod: Any, ports: set[int]) -> dict[str, Any]:
    """istiod learns Pods and EndpointSlices from its informers: ask until every declared
    port has an inbound chain, or 30 s have passed."""
    deadline = time.monotonic() + 30
    while True:
        dump = mesh.sidecar_config(pod)
        if ports <= set(inbound(dump)) or time.monotonic() > deadline:
            return dump
        time.sleep(1)


def plaintext_allowed(mesh: Mesh, ns: str, pod: Any) -> set[int]:
    """Ports a live PeerAuthentication selecting the pod sets PERMISSIVE or DISABLE."""
    pas = client.CustomObjectsApi(mesh.api).list_namespaced_custom_object(
        "security.istio.io", "v1", ns, "peerauthentications"
    )["items"]
    labels = pod.metadata.labels or {}
    out = set()
    for pa in pas:
        sel = (pa["spec"].get("selector") or {}).get("matchLabels") or {}
        if sel and all(labels.get(k) == v for k, v in sel.items()):
            for port, cfg in (pa["spec"].get("portLevelMtls") or {}).items():
                if cfg.get("mode") in ("PERMISSIVE", "DISABLE"):
                    out.add(int(port))
    return out


def sidecar_ingress(mesh: Mesh, ns: str, pod: Any) -> dict[int, str]:
    """port -> protocol the live Sidecar selecting the pod declares in its ingress."""
    scs = client.CustomObjectsApi(mesh.api).list_namespaced_custom_object(
        "networking.istio.io", "v1", ns, "sidecars"
    )["items"]
    labels = pod.metadata.labels or {}
    out: dict[int, str] = {}
    for sc in scs:
        sel = (sc["spec"].get("workloadSelector") or {}).get("labels") or {}
        if sel and all(labels.get(k) == v for k, v in sel.items()):
            for ing in sc["spec"].get("ingress") or []:
                out[int(ing["port"]["number"])] = ing["port"]["protocol"].lower()
    return out


def port_report(mesh: Mesh, ns: str, pods: list[Any]) -> dict[str, Any]:
    core = client.CoreV1Api(mesh.api)
    svcs = live_services(core, ns)
    report: dict[str, Any] = {"conflicts": set(), "not_l7": set(), "problems": []}
    for pod in pods:
        role = pod.metadata.labels["ray.io/node-type"]
        protos: dict[int, set[str]] = {}
        for s in svcs:
            if s.selects(pod):
                for port, info in resolve_named_target(pod, s).items():
                    protos.setdefault(port, set()).add(declared(info))
        ingress = sidecar_ingress(mesh, ns, pod)
        ray_ports = set(listening_ports(ray_start(core, pod)))
        dump = settled_dump(mesh, pod, set(protos) | set(ingress))
        chains = inbound(dump)
        exceptions = plaintext_allowed(mesh, ns, pod)
        # With a Sidecar ingress istiod builds inbound listeners for its ports only; without
        # one, for every port a selecting Service declares.
        expected = set(ingress) if ingress else set(protos)
        for port in sorted(expected | ray_ports):
            fcs = chains.get(port)
            if not fcs:
                report["problems"].append(f"{role} {port}: no inbound chain")
                continue
            if port in exceptions:
                if mutual_tls_only(fcs):
                    report["problems"].append(f"{role} {port}: PERMISSIVE exception not applied")
            elif not mutual_tls_only(fcs):
                report["problems"].append(f"{role} {port}: accepts more than mutual TLS")
            kinds = {chain_kind(fc) for fc in fcs}
            want = {ingress[port]} if port in ingress else protos.get(port, set())
            if len(want) > 1:
                report["conflicts"].add((role, port))
            elif want:
                expect = {"grpc": "grpc", "http": "http", "tcp": "tcp", "tls": "tcp"}.get(
                    next(iter(want)), "?"
                )
                if kinds != {expect}:
                    report["problems"].append(f"{role} {port}: declared {want}, chains {kinds}")
            if port in ray_ports and len(want) <= 1 and kinds not in ({"grpc"}, {"http"}):
                report["not_l7"].add((role, port))
    return report


def istiod_conflicts(mesh: Mesh, ns: str) -> list[str]:
    """istiod's own report of inbound listener conflicts for pods of the namespace."""
    import json
    import urllib.request

    with urllib.request.urlopen(f"{mesh.cp.istiod_debug}/debug/push_status", timeout=10) as r:
        status = json.loads(r.read() or b"{}")
    hits = status.get("pilot_conflict_inbound_listener") or {}
    return [k for k in hits if f".{ns}" in k or ns in json.dumps(hits[k])]


def ray_tls(case: str) -> bool:
    """Whether the case's values turn on Ray-native TLS (its gRPC ports are then declared tls)."""
    f = CASES[case]
    values = (yaml.safe_load(f.read_text()) if f else None) or {}
    return bool((values.get("rayTls") or {}).get("enabled"))


@pytest.mark.parametrize("case", EXAMPLES)
def test_every_ray_port_is_l7_and_mutual_tls_only(mesh: Mesh, case: str) -> None:
    ns = f"mesh-{case}"[:63]
    pods = install(mesh, ns, case)
    report = port_report(mesh, ns, pods)
    assert report["problems"] == []
    assert report["conflicts"] == set()
    assert istiod_conflicts(mesh, ns) == []
    if ray_tls(case):  # Ray-native TLS: gRPC ports are TLS passthrough
        assert {p for _, p in report["not_l7"]} >= {6380, 6381, 6383, 10002}
        assert {p for _, p in report["not_l7"]} & {6382, 8265, 52365} == set()
    else:
        assert report["not_l7"] == set()


def test_without_sidecar_ingress(mesh: Mesh) -> None:
    """The control: mesh.sidecar.inbound=false gives what the Services alone give."""
    ns = "mesh-no-ingress"
    pods = install(mesh, ns, "defaults", ("--set", "mesh.sidecar.inbound=false"))
    report = port_report(mesh, ns, pods)
    assert report["problems"] == []
    assert report["conflicts"] == WITHOUT_INGRESS_CONFLICTS
    assert report["not_l7"] == WITHOUT_INGRESS_NOT_L7


def test_permissive_shows_plaintext_chains(mesh: Mesh) -> None:
    ns = "mesh-permissive"
    pods = install(mesh, ns, "defaults", ("--set", "mtls.mode=PERMISSIVE"))
    worker = next(p for p in pods if p.metadata.labels["ray.io/node-type"] == "worker")
    chains = inbound(settled_dump(mesh, worker, {6380}))
    assert not mutual_tls_only(chains[6380])
    assert any(
        fc.get("filterChainMatch", {}).get("transportProtocol") == "raw_buffer"
        for fc in chains[6380]
    )


def test_a_port_missing_from_the_service_and_sidecar_is_not_l7(mesh: Mesh) -> None:
    ns = "mesh-dropped"
    pods = install(mesh, ns, "defaults")
    d = dyn(mesh.api)
    svcs = d.resources.get(api_version="v1", kind="Service")
    body = copy.deepcopy(svcs.get(name="m-meshray-headless-svc", namespace=ns).to_dict())
    body["spec"]["ports"] = [p for p in body["spec"]["ports"] if p["port"] != 6381]
    svcs.replace(body=body, namespace=ns)
    scs = d.resources.get(api_version="networking.istio.io/v1", kind="Sidecar")
    body = copy.deepcopy(scs.get(name="m-meshray-worker", namespace=ns).to_dict())
    body["spec"]["ingress"] = [i for i in body["spec"]["ingress"] if i["port"]["number"] != 6381]
    scs.replace(body=body, namespace=ns)
    worker = next(p for p in pods if p.metadata.labels["ray.io/node-type"] == "worker")
    deadline = time.monotonic() + 30
    while 6381 in inbound(mesh.sidecar_config(worker)) and time.monotonic() < deadline:
        time.sleep(1)
    chains = inbound(mesh.sidecar_config(worker))
    assert 6381 not in chains
    assert 6380 in chains and chain_kind(chains[6380][0]) == "grpc"
