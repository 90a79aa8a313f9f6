"""meshray/audit/protocols.py: one pod port, one protocol, unless a Sidecar ingress decides.

The case is the one measured with the real istiod (docs/mesh-e2e.md): KubeRay's head Service
declares every port tcp while the headless Service declares the metrics port http, both
selecting the head pod.
"""

from __future__ import annotations

from typing import Any

from audit_support import Docs, base
from meshray.audit import audit
from meshray.audit import protocols as family
from meshray.manifests import Manifest

KUBERAY_HEAD_SVC: dict[str, Any] = {
    "apiVersion": "v1", "kind": "Service",
    "metadata": {"name": "demo-head-svc", "namespace": "ray"},
    "spec": {"clusterIP": "None",
             "selector": {"ray.io/cluster": "demo", "ray.io/node-type": "head"},
             "ports": [{"name": "metrics", "port": 8080, "appProtocol": "tcp"},
                       {"name": "gcs-server", "port": 6379, "appProtocol": "tcp"}]},
}


# (check, severity, mutation of the clean base that must trigger it)
CASES: list[tuple[str, str, Any]] = [
    ("service-protocol-conflict", "error", lambda d: d.append(KUBERAY_HEAD_SVC)),
]


def sidecar(ports: list[int]) -> dict[str, Any]:
    return {"apiVersion": "networking.istio.io/v1", "kind": "Sidecar",
            "metadata": {"name": "demo-head", "namespace": "ray"},
            "spec": {"workloadSelector": {"labels": {"ray.io/cluster": "demo",
                                                     "ray.io/node-type": "head"}},
                     "ingress": [{"port": {"number": p, "protocol": "HTTP", "name": f"p{p}"},
                                  "defaultEndpoint": f"0.0.0.0:{p}"} for p in ports]}}


def hits(docs: Docs) -> list[Any]:
    findings = audit([Manifest(d, f"test#{i}") for i, d in enumerate(docs)])
    return [f for f in findings if f.check == family.SERVICE_PROTOCOL_CONFLICT.id]


def test_conflict_is_an_error_naming_both_services() -> None:
    docs = [*base(), KUBERAY_HEAD_SVC]
    [f] = hits(docs)
    assert f.severity == "error" and f.value == 8080
    assert "http by demo-headless-svc" in f.message and "tcp by demo-head-svc" in f.message


def test_a_sidecar_ingress_for_the_port_decides() -> None:
    assert hits([*base(), KUBERAY_HEAD_SVC, sidecar([8080])]) == []


def test_a_sidecar_for_other_ports_does_not() -> None:
    assert [f.value for f in hits([*base(), KUBERAY_HEAD_SVC, sidecar([6379])])] == [8080]


def test_ambient_pods_have_no_inbound_listener_to_conflict() -> None:
    """The same two Services around pods enrolled in ambient mode (the chart's
    mesh.dataplane: ambient labels the pod templates): no sidecar builds their inbound
    listeners, so the check stays silent; it speaks again without the label."""
    docs = [*base(), KUBERAY_HEAD_SVC]
    rc = next(d for d in docs if d["kind"] == "RayCluster")
    template = rc["spec"]["headGroupSpec"]["template"]
    template.setdefault("metadata", {}).setdefault("labels", {})[
        "istio.io/dataplane-mode"] = "ambient"
    assert hits(docs) == []
    del template["metadata"]["labels"]["istio.io/dataplane-mode"]
    assert [f.value for f in hits(docs)] == [8080]


def test_agreeing_services_are_clean() -> None:
    svc = dict(KUBERAY_HEAD_SVC, spec=dict(KUBERAY_HEAD_SVC["spec"], ports=[
        {"name": "metrics", "port": 8080, "appProtocol": "http"}]))
    assert hits([*base(), svc]) == []


def test_the_family_declares_its_checks() -> None:
    assert {c.id for c in family.CHECKS} == {"service-protocol-conflict"}
