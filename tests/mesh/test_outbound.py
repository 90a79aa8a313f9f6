"""Outbound from a Ray worker's sidecar, from the xDS the real istiod sends it (issue 10).

Ray's processes dial each peer at its `node-ip-address`, the Pod FQDN under the headless
Service. istiod originates mutual TLS to a headless Service's endpoints (ORIGINAL_DST clusters)
only when every endpoint is an injected workload (label `security.istio.io/tlsMode: istio`,
model.PushContext.BestEffortInferServiceMTLSMode). The local cluster runs no injection webhook,
so the Pods are made as injected Pods are born: with the labels Istio's real injector adds
(inject_support.py, on the chart's own pod templates) set in the chart's pod labels. A label
patched onto a running Pod was not enough when this suite was built: istiod's endpoints carried
it, its clusters still had no TLS 20 s later (the service's mTLS mode is computed when istiod
rebuilds its push context, not on an endpoint update).

For every port each peer's `ray start` listens on (head and another worker), the worker's
sidecar must route an h2c connection to a cluster that originates Istio mTLS and speak the
protocol the Services declare (HTTP connection manager; HTTP/2 upstream for grpc), with the
:authority real Ray sends there (measured by `make e2e`'s capture, docs/e2e.md): the peer's
Pod FQDN on every port the headless Service declares, and the head Service's name
(`<cluster>-head-svc.<ns>.svc.cluster.local`, KubeRay's `--address`) on the GCS, dashboard
and Ray Client ports, dialled at the address that name resolves to (the head Service's
ClusterIP; the head Pod's IP when the Service is headless).

Negative controls: a second RayCluster in the same namespace whose Pods lack the injector's
labels gets no mTLS on any port; a bare pod IP as :authority falls through to the plaintext
PassthroughCluster; a third, injected RayCluster shaped as the chart was before issue 10 (no
`headService` template, every head port on the head container) gets KubeRay's headless, all-tcp
head Service, whose per-IP listeners make 6379, 8265, 10001 and 8080 mTLS but L4.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from inject_support import inject, injector
from kube import CHART, HELMS, Helm, dyn, live_services, ray_pods, running, wait_for
from kubernetes import client
from podcmd import listening_ports, ray_start
from xds_support import Mesh, istio_mtls, outbound

NS = "mesh-outbound"
SOCKET_MATCH = "envoy.transport_socket_match"  # where Envoy matches transportSocketMatches
REPLICAS = ("--set", "workerDefaults.replicas=2", "--set", "workerDefaults.maxReplicas=2")


def injector_labels(helm: Helm, tmp: Path) -> dict[str, dict[str, str]]:
    """Per role, the labels Istio's injector adds to a Pod made from the chart's template."""
    docs = helm.template("m", NS, extra=REPLICAS)
    rc = next(d for d in docs if d["kind"] == "RayCluster")
    templates = {
        "head": rc["spec"]["headGroupSpec"]["template"],
        "workerDefaults": rc["spec"]["workerGroupSpecs"][0]["template"],
    }
    inj = injector(tmp)
    out = {}
    for role, t in templates.items():
        meta = {"name": f"m-{role.lower()}", "namespace": NS, **t.get("metadata", {})}
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": t["spec"]}
        before = meta.get("labels") or {}
        after = inject(inj, pod)["metadata"]["labels"]
        out[role] = {k: v for k, v in after.items() if before.get(k) != v}
    return out


def label_args(labels: dict[str, dict[str, str]]) -> list[str]:
    """--set flags putting the injector's pod labels into the chart's values. They are Istio
    keys, which the chart refuses on Ray pods unless acknowledged: here they stand in for the
    injection webhook the local cluster lacks, so the harness acknowledges them."""
    return [
        a
        for role, kv in labels.items()
        for k, v in kv.items()
        for a in ("--set-string", f"{role}.labels.{k.replace('.', chr(92) + '.')}={v}")
    ] + ["--set", "mesh.acknowledgeCaptureOverrides=true"]


def peers(core: client.CoreV1Api, cluster: str) -> tuple[Any, list[Any]]:
    pods = ray_pods(core, NS, cluster)
    head = next(p for p in pods if p.metadata.labels["ray.io/node-type"] == "head")
    return head, [p for p in pods if p is not head]


def hops(
    core: client.CoreV1Api, dump: dict[str, Any], peer: Any, host: str | None = None
) -> dict[int, dict[str, Any]]:
    rs = ray_start(core, peer)
    fqdn = host or rs.params["node-ip-address"]
    return {p: outbound(dump, peer.status.pod_ip, p, fqdn) for p in listening_ports(rs)}


def install_old_shape(helm: Helm, api: Any, labels: dict[str, dict[str, str]]) -> None:
    """Release `o` as the chart rendered it before issue 10: the head's Ray ports on the head
    container (KubeRay copies them into its head Service, appProtocol tcp), no headService
    template. Created object by object: helm cannot install a changed render."""
    docs = helm.template("o", NS, extra=label_args(labels))
    d = dyn(api)
    for doc in docs:
        if doc["kind"] == "RayCluster":
            head = doc["spec"]["headGroupSpec"]
            ports = head.pop("headService")["spec"]["ports"]
            container = head["template"]["spec"]["containers"][0]
            container["ports"] = [
                {"name": p["name"], "containerPort": p["port"], "protocol": "TCP"} for p in ports
            ] + container["ports"]
        res = d.resources.get(api_version=doc["apiVersion"], kind=doc["kind"])
        res.create(body=doc, namespace=NS)


@pytest.fixture(scope="module")
def installed(mesh: Mesh, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    helm = Helm(HELMS["helm4"], mesh.kubeconfig)
    labels = injector_labels(helm, tmp_path_factory.mktemp("inj"))
    assert labels["workerDefaults"].get("security.istio.io/tlsMode") == "istio"
    ns = ("-n", NS, "--create-namespace")
    helm.run("install", "m", str(CHART), *ns, *REPLICAS, *label_args(labels))
    helm.run("install", "u", str(CHART), *ns)  # not injected: the control
    install_old_shape(helm, mesh.api, labels)  # the chart before issue 10: the control
    core = client.CoreV1Api(mesh.api)
    wait_for(
        "7 running pods",
        lambda: p if len(p := ray_pods(core, NS)) == 7 and running(p) else None,
        timeout=90,
    )
    head, workers = peers(core, "m-meshray")
    u_head, u_workers = peers(core, "u-meshray")
    o_head, _ = peers(core, "o-meshray")
    src = workers[0]
    # istiod learns Pods and EndpointSlices from its informers: ask until every port of the
    # injected peers is routed with mTLS, or 30 s have passed.
    deadline = time.monotonic() + 30
    while True:
        dump = mesh.sidecar_config(src)
        ok = all(
            h["mtls"] for p in (head, workers[1], o_head) for h in ray_hops(core, dump, p).values()
        )
        if ok or time.monotonic() > deadline:
            break
        time.sleep(1)
    return {
        "core": core,
        "dump": dump,
        "head": head,
        "worker": workers[1],
        "u_head": u_head,
        "u_worker": u_workers[0],
        "o_head": o_head,
    }


def eds_mtls(dump: dict[str, Any], cname: str, ip: str) -> bool:
    """An EDS cluster (a ClusterIP Service's) originates Istio mTLS per endpoint: its
    `transportSocketMatches` entry matching `tlsMode: istio` is an Istio mTLS socket, and the
    endpoint at `ip` carries that metadata (the Pod's injector label)."""
    c = next((c for c in dump["clusters"] if c["name"] == cname), {})
    tls = [
        m for m in c.get("transportSocketMatches") or []
        if (m.get("match") or {}).get("tlsMode") == "istio"
        and istio_mtls({"transportSocket": m.get("transportSocket")})
    ]
    if not tls:
        return False
    cla = next((e for e in dump["endpoints"] if e.get("clusterName") == cname), {})
    for group in cla.get("endpoints") or []:
        for ep in group.get("lbEndpoints") or []:
            addr = (((ep.get("endpoint") or {}).get("address") or {}).get("socketAddress") or {})
            meta = (ep.get("metadata") or {}).get("filterMetadata") or {}
            modes = {(meta.get(k) or {}).get("tlsMode") for k in (SOCKET_MATCH, "istio")}
            if addr.get("address") == ip and "istio" in modes:
                return True
    return False


def head_service(core: client.CoreV1Api, peer: Any) -> Any:
    cluster = peer.metadata.labels["ray.io/cluster"]
    return core.read_namespaced_service(f"{cluster}-head-svc", NS)


def ray_hops(core: client.CoreV1Api, dump: dict[str, Any], peer: Any) -> dict[int, dict[str, Any]]:
    """Each port the peer listens on, dialled as real Ray does (measured, docs/e2e.md): the
    Pod FQDN at the pod IP where the headless Service declares the port; else (the head's
    GCS, dashboard, Ray Client) the head Service's name at the address it resolves to."""
    rs = ray_start(core, peer)
    fqdn = rs.params["node-ip-address"]
    protos, _ = declared(core, peer)
    out = {}
    for p in listening_ports(rs):
        if p in protos:
            out[p] = outbound(dump, peer.status.pod_ip, p, fqdn)
            continue
        svc = head_service(core, peer)
        ip = peer.status.pod_ip if svc.spec.cluster_ip == "None" else svc.spec.cluster_ip
        name = f"{svc.metadata.name}.{NS}.svc.cluster.local"
        h = {**outbound(dump, ip, p, name), "authority": name}
        if not h["mtls"] and h["cluster"]:
            h["mtls"] = eds_mtls(dump, h["cluster"], peer.status.pod_ip)
        out[p] = h
    return out


def declared(core: client.CoreV1Api, peer: Any) -> tuple[dict[int, str], dict[int, str]]:
    """The headless Service's protocol per port, and KubeRay's head Service's (both selecting
    the peer), as the live Services declare them."""
    protos: dict[int, str] = {}
    head_svc: dict[int, str] = {}
    for s in live_services(core, NS):
        if not s.selects(peer):
            continue
        ps = {p: (i["appProtocol"] or "").lower() for p, i in s.ports.items()}
        if s.name.endswith("-head-svc"):
            head_svc.update(ps)
        elif s.headless:
            protos.update(ps)
    return protos, head_svc


@pytest.mark.parametrize("role", ["head", "worker"])
def test_worker_to_peer_is_mutual_tls_and_l7_per_port(installed: dict[str, Any], role: str) -> None:
    core, peer = installed["core"], installed[role]
    protos, head_svc = declared(core, peer)
    got = ray_hops(core, installed["dump"], peer)
    assert got, "the peer's ray start listens on no port"
    wrong = {}
    for port, h in got.items():
        want = protos.get(port) or head_svc.get(port)
        if not h["mtls"] or h["kind"] != want or want not in ("grpc", "http"):
            wrong[port] = (h, want)
    assert wrong == {}
    if role == "head":  # the GCS, dashboard and client are among them, reached by name
        assert {p for p, h in got.items() if "authority" in h} >= {6379, 8265, 10001}


def test_control_old_head_service_makes_four_ports_l4(installed: dict[str, Any]) -> None:
    """The chart before issue 10: KubeRay's head Service (headless in v1.6.2) declares the
    head container's ports tcp; its per-IP listeners carry them, mTLS but L4."""
    core, peer = installed["core"], installed["o_head"]
    _, head_svc = declared(core, peer)
    assert set(head_svc.values()) == {"tcp"} and head_service(core, peer).spec.cluster_ip == "None"
    got = ray_hops(core, installed["dump"], peer)
    l4 = {p for p, h in got.items() if h["kind"] == "tcp"}
    assert l4 == set(head_svc) & set(got) and {6379, 8265, 10001, 8080} <= l4, got
    assert all(h["mtls"] for h in got.values()), got
    assert all(got[p]["listener"] == f"{peer.status.pod_ip}_{p}" for p in l4), got


def test_pod_fqdn_on_a_head_service_only_port_is_passthrough(installed: dict[str, Any]) -> None:
    """The GCS, dashboard and client ports are declared by the head Service only: an
    :authority naming the head Pod (FQDN under the headless Service) matches none of its
    virtual hosts, so it falls through to the plaintext passthrough. Ray does not send it
    there (it dials the GCS by the head Service's name, measured)."""
    core, peer = installed["core"], installed["head"]
    protos, head_svc = declared(core, peer)
    only = sorted(set(head_svc) - set(protos))
    assert only, head_svc
    got = hops(core, installed["dump"], peer)
    assert {p: got[p]["cluster"] for p in only if p in got} == {
        p: "PassthroughCluster" for p in only if p in got
    }, got


@pytest.mark.parametrize("role", ["u_head", "u_worker"])
def test_an_uninjected_peer_gets_no_mutual_tls(installed: dict[str, Any], role: str) -> None:
    got = ray_hops(installed["core"], installed["dump"], installed[role])
    assert got and not any(h["mtls"] for h in got.values()), got


def test_a_bare_pod_ip_authority_falls_through_to_plaintext(installed: dict[str, Any]) -> None:
    core, peer = installed["core"], installed["worker"]
    got = hops(core, installed["dump"], peer, host=peer.status.pod_ip)
    assert got and all(
        h["cluster"] == "PassthroughCluster" and not h["mtls"] for h in got.values()
    ), got


def test_outbound_table(installed: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    """The measured table of docs/mesh-e2e.md (printed)."""
    core, dump = installed["core"], installed["dump"]
    got = {r: ray_hops(core, dump, installed[r]) for r in ("head", "o_head", "worker", "u_worker")}
    rows = [
        "| port | to head | to head, chart before issue 10 | to worker (FQDN) "
        "| to uninjected worker |",
        "|---|---|---|---|---|",
    ]

    def cell(h: dict[str, Any] | None) -> str:
        if h is None:
            return "-"
        return f"{h['kind']}, {'mTLS' if h['mtls'] else 'plaintext'} ({h['listener']})"

    for port in sorted(set().union(*got.values())):
        rows.append(f"| {port} | " + " | ".join(cell(got[r].get(port)) for r in got) + " |")
    with capsys.disabled():
        print("\n" + "\n".join(rows))
    assert len(rows) > 2
