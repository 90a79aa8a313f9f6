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
sidecar must route an h2c connection to <peer IP>:<port> with the peer's FQDN as :authority to
a cluster that originates Istio mTLS, and speak the protocol the headless Service declares
(HTTP connection manager; HTTP/2 upstream for grpc), except the ports KubeRay's own head
Service declares `tcp` (kuberay#1946): its per-IP listeners win over the port's 0.0.0.0
listener, so those hops are mTLS but L4.

Negative controls: a second RayCluster in the same namespace whose Pods lack the injector's
labels gets no mTLS on any port; a bare pod IP as :authority falls through to the plaintext
PassthroughCluster.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from inject_support import inject, injector
from kube import CHART, HELMS, Helm, live_services, ray_pods, running, wait_for
from kubernetes import client
from podcmd import listening_ports, ray_start
from xds_support import Mesh, outbound

NS = "mesh-outbound"
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
    return [
        a
        for role, kv in labels.items()
        for k, v in kv.items()
        for a in ("--set-string", f"{role}.labels.{k.replace('.', chr(92) + '.')}={v}")
    ]


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


@pytest.fixture(scope="module")
def installed(mesh: Mesh, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    helm = Helm(HELMS["helm4"], mesh.kubeconfig)
    labels = injector_labels(helm, tmp_path_factory.mktemp("inj"))
    assert labels["workerDefaults"].get("security.istio.io/tlsMode") == "istio"
    ns = ("-n", NS, "--create-namespace")
    helm.run("install", "m", str(CHART), *ns, *REPLICAS, *label_args(labels))
    helm.run("install", "u", str(CHART), *ns)  # not injected: the control
    core = client.CoreV1Api(mesh.api)
    wait_for(
        "5 running pods",
        lambda: p if len(p := ray_pods(core, NS)) == 5 and running(p) else None,
        timeout=90,
    )
    head, workers = peers(core, "m-meshray")
    u_head, u_workers = peers(core, "u-meshray")
    src = workers[0]
    # istiod learns Pods and EndpointSlices from its informers: ask until every port of the
    # injected peers is routed with mTLS, or 30 s have passed.
    deadline = time.monotonic() + 30
    while True:
        dump = mesh.sidecar_config(src)
        ok = all(h["mtls"] for p in (head, workers[1]) for h in hops(core, dump, p).values())
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
    }


def declared(core: client.CoreV1Api, peer: Any) -> tuple[dict[int, str], set[int]]:
    """The headless Service's protocol per port, and the ports KubeRay's head Service
    declares (both selecting the peer)."""
    protos: dict[int, str] = {}
    head_svc: set[int] = set()
    for s in live_services(core, NS):
        if not s.selects(peer):
            continue
        if s.name.endswith("-head-svc"):
            head_svc |= set(s.ports)
        elif s.headless:
            protos.update({p: (i["appProtocol"] or "").lower() for p, i in s.ports.items()})
    return protos, head_svc


@pytest.mark.parametrize("role", ["head", "worker"])
def test_worker_to_peer_fqdn_is_mutual_tls_and_l7_per_port(
    installed: dict[str, Any], role: str
) -> None:
    core, peer = installed["core"], installed[role]
    protos, head_svc = declared(core, peer)
    got = hops(core, installed["dump"], peer)
    assert got, "the peer's ray start listens on no port"
    wrong = {}
    for port, h in got.items():
        want = "tcp" if port in head_svc else protos.get(port)
        if not h["mtls"] or h["kind"] != want:
            wrong[port] = (h, want)
    assert wrong == {}
    if role == "head":
        assert {p for p, h in got.items() if h["kind"] == "tcp"} == head_svc & set(got)
    else:
        assert all(h["kind"] in ("grpc", "http") for h in got.values())


@pytest.mark.parametrize("role", ["u_head", "u_worker"])
def test_an_uninjected_peer_gets_no_mutual_tls(installed: dict[str, Any], role: str) -> None:
    got = hops(installed["core"], installed["dump"], installed[role])
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
    got = {r: hops(core, dump, installed[r]) for r in ("head", "worker", "u_worker")}
    rows = [
        "| port | to head (FQDN) | to worker (FQDN) | to uninjected worker |",
        "|---|---|---|---|",
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
