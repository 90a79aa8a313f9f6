"""The ambient profile's render (mesh.dataplane=ambient): what the pods carry instead of the
sidecar's, and what the NetworkPolicy admits.

Oracle: the labels are Istio's (istio-cni's default enablement selector `istio.io/dataplane-mode:
ambient`, ztunnel's HBONE port 15008, the waypoint Gateway's name as `istio.io/use-waypoint`,
what istiod does with them is tests/mesh/test_ambient.py); the ports from the RayCluster's own
rayStartParams; the gateway pods' label from the rendered Gateway's name (istiod labels the
pods it runs for a Gateway `gateway.networking.k8s.io/gateway-name: <name>`).
"""

from __future__ import annotations

from typing import Any

import pytest
from chart_support import REPO, Renderer

AMBIENT = REPO / "values-examples/ambient.yaml"
WAYPOINT = REPO / "values-examples/ambient-waypoint.yaml"
NS = "ray"


def of(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def pod_templates(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    (rc,) = of(docs, "RayCluster")
    spec = rc["spec"]
    return [spec["headGroupSpec"]["template"], *(g["template"] for g in spec["workerGroupSpecs"])]


@pytest.mark.parametrize("values", [AMBIENT, WAYPOINT], ids=["ambient", "waypoint"])
def test_ambient_pods_carry_enrolment_not_injection(render_chart: Renderer,
                                                    values: Any) -> None:
    docs = render_chart(values, namespace=NS)
    gateways = [g["metadata"]["name"] for g in of(docs, "Gateway")
                if g["spec"].get("gatewayClassName") == "istio-waypoint"]
    for tpl in pod_templates(docs):
        meta = tpl["metadata"]
        assert meta["labels"]["istio.io/dataplane-mode"] == "ambient"
        assert meta["labels"].get("istio.io/use-waypoint") == (gateways[0] if gateways else None)
        keys = [*meta["labels"], *meta.get("annotations", {})]
        assert not [k for k in keys if k.startswith(("sidecar.istio.io/", "proxy.istio.io/"))]
    assert of(docs, "Sidecar") == []
    assert [p["spec"]["mtls"]["mode"] for p in of(docs, "PeerAuthentication")] == ["STRICT"]


def test_the_sidecar_profile_is_unchanged(render_chart: Renderer) -> None:
    """The control: the defaults still inject (label, native sidecar) and render Sidecars."""
    docs = render_chart(namespace=NS)
    for tpl in pod_templates(docs):
        assert tpl["metadata"]["labels"]["sidecar.istio.io/inject"] == "true"
        assert "istio.io/dataplane-mode" not in tpl["metadata"]["labels"]
        assert tpl["metadata"]["annotations"]["sidecar.istio.io/nativeSidecar"] == "true"
    # one Sidecar per node type, each selecting this cluster's pods of that type
    cluster = of(docs, "RayCluster")[0]["metadata"]["name"]
    assert sorted(tuple(sorted(s["spec"]["workloadSelector"]["labels"].items()))
                  for s in of(docs, "Sidecar")) == [
        (("ray.io/cluster", cluster), ("ray.io/node-type", role)) for role in ("head", "worker")]
    assert [g for g in of(docs, "Gateway")] == []


def admits(np: dict[str, Any], peer: dict[str, Any]) -> set[int]:
    """Ports a NetworkPolicy admits from peers matching `peer` (one of its `from` entries,
    compared as written)."""
    out: set[int] = set()
    for rule in np["spec"]["ingress"]:
        if peer in rule["from"]:
            for p in rule["ports"]:
                out |= set(range(p["port"], p.get("endPort", p["port"]) + 1))
    return out


def test_network_policy_admits_hbone_between_ambient_pods(render_chart: Renderer) -> None:
    docs = render_chart(WAYPOINT, namespace=NS, set_values=("networkPolicy.enabled=true",))
    (np,) = of(docs, "NetworkPolicy")
    (rc,) = of(docs, "RayCluster")
    own = {"podSelector": {"matchLabels": np["spec"]["podSelector"]["matchLabels"]}}
    params = rc["spec"]["workerGroupSpecs"][0]["rayStartParams"]
    got = admits(np, own)
    assert 15008 in got  # ztunnel delivers every peer's connection on HBONE
    assert {int(params["node-manager-port"]), int(params["min-worker-port"])} <= got
    (wp,) = [g["metadata"]["name"] for g in of(docs, "Gateway")]
    waypoint = {"podSelector": {"matchLabels": {"gateway.networking.k8s.io/gateway-name": wp}}}
    assert admits(np, waypoint) == {15008}
    # the sidecar profile: no HBONE port
    docs = render_chart(namespace=NS, set_values=("networkPolicy.enabled=true",))
    (np,) = of(docs, "NetworkPolicy")
    assert 15008 not in admits(np, {"podSelector": {"matchLabels":
                                                    np["spec"]["podSelector"]["matchLabels"]}})


@pytest.mark.parametrize("dataplane", ["sidecar", "ambient"])
def test_network_policy_admits_the_gateway_api_gateways_pods(render_chart: Renderer,
                                                             dataplane: str) -> None:
    """The pods istiod runs for the rendered Gateway reach what its routes reach on the head,
    through the gateway Service's targetPorts (before: no NetworkPolicy admitted them)."""
    docs = render_chart(REPO / "values-examples/gatewayapi-http.yaml", namespace=NS,
                        set_values=("networkPolicy.enabled=true",
                                    f"mesh.dataplane={dataplane}",
                                    "gatewayAPI.auth.jwtIssuer=",
                                    "gatewayAPI.acknowledgeUnauthenticated=true"))
    (gw,) = [g for g in of(docs, "Gateway") if g["spec"]["gatewayClassName"] == "istio"]
    peer = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": NS}},
            "podSelector": {"matchLabels": {
                "gateway.networking.k8s.io/gateway-name": gw["metadata"]["name"]}}}
    svc = {p["port"]: p["targetPort"] for s in of(docs, "Service")
           if s["metadata"]["name"].endswith("-gateway-svc") for p in s["spec"]["ports"]}
    routed = {svc[b["port"]] for r in of(docs, "HTTPRoute") for rule in r["spec"]["rules"]
              for b in rule["backendRefs"]}
    (np,) = [n for n in of(docs, "NetworkPolicy") if admits(n, peer)]
    assert np["spec"]["podSelector"]["matchLabels"]["ray.io/node-type"] == "head"
    assert admits(np, peer) == routed | ({15008} if dataplane == "ambient" else set())
