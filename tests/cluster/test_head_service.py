"""What the real KubeRay operators (v1.1.0, v1.6.2) make of the RayCluster's head Service
template, `spec.headGroupSpec.headService` (issue 10).

KubeRay creates `<cluster>-head-svc` itself. From the head container's ports it writes every
port `appProtocol: tcp` (kuberay#1946), which keeps Istio from speaking L7 on the GCS, dashboard
and Ray Client ports. The chart therefore declares those ports, with their protocols, in the
headService template, and the head container lists only `metrics` (KubeRay appends the
container's ports to the template's, and always a `metrics` one).

Each RayCluster below is the chart's own render, created straight in the API server; the
operator's Service is read back:

- as rendered: the template's ports keep their names and appProtocols, `metrics` is appended
  `tcp`, the selector is KubeRay's, and both operators make the Service ClusterIP (v1.6.2's
  headless default applies only without a template);
- the control, the chart as it was (no template, every head port on the container): every port
  `tcp`, headless in v1.6.2 and ClusterIP in v1.1.0;
- a template repeating a container port: the API server refuses the duplicate, so the operator
  never gets a head Service (why the container keeps only `metrics`).
"""

from __future__ import annotations

import copy
import time
from typing import Any

import pytest
from cases import OPERATOR_SETS
from kube import HELMS, Cluster, Helm, dyn
from kubernetes import client
from kubernetes.client.rest import ApiException


def _render(cluster: Cluster, ns: str) -> dict[str, Any]:
    sets = [a for s in OPERATOR_SETS.get(cluster.version, ()) for a in ("--set", s)]
    docs = Helm(HELMS["helm4"], cluster.kubeconfig).template("hs", ns, extra=sets)
    return next(d for d in docs if d["kind"] == "RayCluster")


def _head_service(cluster: Cluster, ns: str, rc: dict[str, Any], timeout: float) -> Any:
    """Create the RayCluster in a new namespace; the operator's head Service, or None."""
    core = client.CoreV1Api(cluster.api)
    core.create_namespace({"metadata": {"name": ns}})
    res = dyn(cluster.api).resources.get(api_version=rc["apiVersion"], kind=rc["kind"])
    res.create(body=rc, namespace=ns)
    name = f"{rc['metadata']['name']}-head-svc"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            return core.read_namespaced_service(name, ns)
        except ApiException as e:
            if e.status != 404:
                raise
        time.sleep(0.5)
    return None


def _ports(svc: Any) -> dict[int, tuple[str, str | None]]:
    return {p.port: (p.name, p.app_protocol) for p in svc.spec.ports}


@pytest.fixture(scope="module")
def services(cluster: Cluster) -> dict[str, Any]:
    v = cluster.version.replace(".", "-")
    rendered = _render(cluster, f"hs-chart-{v}")
    out: dict[str, Any] = {"rendered": rendered}
    out["chart"] = _head_service(cluster, f"hs-chart-{v}", rendered, 60)

    old = copy.deepcopy(_render(cluster, f"hs-old-{v}"))
    head = old["spec"]["headGroupSpec"]
    tmpl = head.pop("headService")["spec"]["ports"]
    head["template"]["spec"]["containers"][0]["ports"] = [
        {"name": p["name"], "containerPort": p["port"], "protocol": "TCP"} for p in tmpl
    ] + head["template"]["spec"]["containers"][0]["ports"]
    out["old"] = _head_service(cluster, f"hs-old-{v}", old, 60)

    dup = copy.deepcopy(_render(cluster, f"hs-dup-{v}"))
    metrics = dup["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]["ports"][0]
    dup["spec"]["headGroupSpec"]["headService"]["spec"]["ports"].append(
        {"name": "metrics-http", "port": metrics["containerPort"], "appProtocol": "http"}
    )
    out["dup"] = _head_service(cluster, f"hs-dup-{v}", dup, 20)
    return out


def test_template_ports_keep_their_app_protocols(
    cluster: Cluster, services: dict[str, Any]
) -> None:
    svc = services["chart"]
    assert svc is not None, "the operator made no head Service from the chart's RayCluster"
    head = services["rendered"]["spec"]["headGroupSpec"]
    want = {p["port"]: (p["name"], p["appProtocol"]) for p in head["headService"]["spec"]["ports"]}
    container = head["template"]["spec"]["containers"][0]["ports"]
    assert [p["name"] for p in container] == ["metrics"]
    want[container[0]["containerPort"]] = ("metrics", "tcp")  # appended by KubeRay (#1946)
    assert _ports(svc) == want
    assert {a for _, a in want.values()} >= {"grpc", "http"}


def test_template_service_is_cluster_ip_with_kuberays_selector(
    cluster: Cluster, services: dict[str, Any]
) -> None:
    svc = services["chart"]
    assert svc is not None
    assert svc.spec.cluster_ip not in (None, "", "None"), svc.spec.cluster_ip
    name = services["rendered"]["metadata"]["name"]
    assert svc.spec.selector.get("ray.io/cluster") == name
    assert svc.spec.selector.get("ray.io/node-type") == "head"
    rc_ann = services["rendered"]["spec"]["headServiceAnnotations"]
    assert all((svc.metadata.annotations or {}).get(k) == v for k, v in rc_ann.items())


def test_control_old_chart_every_port_tcp(cluster: Cluster, services: dict[str, Any]) -> None:
    svc = services["old"]
    assert svc is not None
    assert {a for _, a in _ports(svc).values()} == {"tcp"}, _ports(svc)
    headless = svc.spec.cluster_ip == "None"
    assert headless == (cluster.version != "v1.1.0")


def test_control_template_repeating_a_container_port_gets_no_service(
    services: dict[str, Any],
) -> None:
    assert services["dup"] is None
