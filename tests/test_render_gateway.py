"""The Istio ingress-gateway path and Ray Serve ports: every route lands on a Service and port
that exist, with the protocol the traffic needs, visible to the gateway's namespace."""

from __future__ import annotations

from typing import Any

import pytest
from chart_support import REPO, Renderer

GATEWAY_EXAMPLE = REPO / "values-examples/istio-gateway.yaml"
SERVE_EXAMPLE = REPO / "values-examples/ray-serve.yaml"
PASSTHROUGH = (
    "clusterName=ray-pt", "rayTls.enabled=true", "gateway.enabled=true",
    "gateway.https.enabled=true", "gateway.routes.client.enabled=true",
    "gateway.routes.client.host=ray-client.example.com", "gateway.routes.client.mode=passthrough",
)


def kind(docs: list[dict[str, Any]], k: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == k]


def services_by_fqdn(docs: list[dict[str, Any]], namespace: str) -> dict[str, dict[str, Any]]:
    return {f"{s['metadata']['name']}.{namespace}.svc.cluster.local": s
            for s in kind(docs, "Service")}


def exported_to(svc: dict[str, Any], namespace: str, svc_namespace: str) -> bool:
    export = svc["metadata"].get("annotations", {}).get("networking.istio.io/exportTo", "*")
    targets = export.split(",")
    return "*" in targets or namespace in targets or (
        "." in targets and namespace == svc_namespace)


def route_destinations(vs: dict[str, Any]) -> list[dict[str, Any]]:
    routes = [*vs["spec"].get("http", []), *vs["spec"].get("tls", [])]
    return [r["destination"] for route in routes for r in route["route"]]


def head_ports(docs: list[dict[str, Any]]) -> dict[str, int]:
    """KubeRay's head Service: the headService template's ports and the head container's."""
    head = kind(docs, "RayCluster")[0]["spec"]["headGroupSpec"]
    container = head["template"]["spec"]["containers"][0]
    out = {p["name"]: p["port"] for p in head["headService"]["spec"]["ports"]}
    return out | {p["name"]: p["containerPort"] for p in container["ports"]}


def test_every_route_lands_on_a_visible_service_port(render_chart: Renderer) -> None:
    docs = render_chart(GATEWAY_EXAMPLE, namespace="ray")
    services = services_by_fqdn(docs, "ray")
    protocols = {"dashboard": "http", "serve": "http", "client": "grpc"}
    vss = kind(docs, "VirtualService")
    assert sorted(v["metadata"]["name"].rsplit("-", 1)[1] for v in vss) == sorted(protocols)
    ports = head_ports(docs)
    for vs in vss:
        route = vs["metadata"]["name"].rsplit("-", 1)[1]
        for dest in route_destinations(vs):
            svc = services[dest["host"]]
            assert exported_to(svc, "istio-system", "ray"), svc["metadata"]["annotations"]
            assert svc["spec"]["selector"]["ray.io/node-type"] == "head"
            by_port = {p["port"]: p for p in svc["spec"]["ports"]}
            port = by_port[dest["port"]["number"]]
            assert port["appProtocol"] == protocols[route], (route, port)
            assert port["port"] in ports.values()


def test_gateway_servers_cover_every_route(render_chart: Renderer) -> None:
    docs = render_chart(GATEWAY_EXAMPLE, namespace="ray")
    (gw,) = kind(docs, "Gateway")
    assert gw["spec"]["selector"] == {"istio": "ingressgateway"}
    servers = {s["port"]["name"]: s for s in gw["spec"]["servers"]}
    assert servers["http"]["port"]["number"] == 8080  # non-standard gateway ports
    assert servers["http"]["tls"] == {"httpsRedirect": True}
    assert servers["https"]["port"]["number"] == 8443
    assert servers["https"]["tls"] == {"mode": "SIMPLE", "credentialName": "ray-gw-tls"}
    for vs in kind(docs, "VirtualService"):
        assert vs["spec"]["gateways"] == [f"ray/{gw['metadata']['name']}"]
        for host in vs["spec"]["hosts"]:
            assert host in servers["https"]["hosts"], host


@pytest.mark.parametrize("ray_policy", [True, False])
def test_gateway_admits_only_the_gateway_principal_and_requires_jwt(
        render_chart: Renderer, ray_policy: bool) -> None:
    docs = render_chart(GATEWAY_EXAMPLE, namespace="ray", set_values=(
        f"mesh.authorizationPolicy.enabled={str(ray_policy).lower()}",))
    ports = head_ports(docs)
    guarded = sorted([str(ports["dashboard"]), str(ports["client"])])
    policies = {p["metadata"]["name"]: p for p in kind(docs, "AuthorizationPolicy")}
    allow, deny = policies["ray-gw-gateway-only"], policies["ray-gw-require-jwt"]
    assert (allow["spec"]["action"], deny["spec"]["action"]) == ("ALLOW", "DENY")
    for p in (allow, deny):
        assert p["spec"]["selector"]["matchLabels"] == {"ray.io/cluster": "ray-gw",
                                                        "ray.io/node-type": "head"}
    first, *rest = allow["spec"]["rules"]
    assert first["from"][0]["source"]["principals"] == [
        "cluster.local/ns/istio-system/sa/istio-ingressgateway-service-account"]
    # with the Ray pods' own policy it also holds the gateway's Serve route (no one else's)
    routed = [str(ports["serve"])] if ray_policy else []
    assert sorted(first["to"][0]["operation"]["ports"]) == sorted(guarded + routed)
    if ray_policy:
        # The Ray pods' own policy decides every other port; ALLOW policies are ORed, so a
        # rule here admitting any source to them would undo it.
        assert rest == [] and "ray-gw-ray" in policies
    else:
        # Everything else on the head (GCS, node and worker ports) stays reachable in the mesh.
        (other,) = rest
        assert sorted(other["to"][0]["operation"]["notPorts"]) == guarded and "from" not in other
    assert deny["spec"]["rules"][0]["from"][0]["source"]["notRequestPrincipals"] == ["*"]
    assert sorted(deny["spec"]["rules"][0]["to"][0]["operation"]["ports"]) == guarded
    (ra,) = kind(docs, "RequestAuthentication")
    assert ra["spec"]["jwtRules"][0]["issuer"] == "https://auth.example.com"


def test_client_passthrough_routes_by_sni_to_a_tls_port(render_chart: Renderer) -> None:
    docs = render_chart(set_values=PASSTHROUGH)
    (gw,) = kind(docs, "Gateway")
    (server,) = [s for s in gw["spec"]["servers"] if s["port"]["protocol"] == "TLS"]
    assert server["tls"] == {"mode": "PASSTHROUGH"}
    assert server["hosts"] == ["ray-client.example.com"]
    (vs,) = kind(docs, "VirtualService")
    assert "http" not in vs["spec"]
    assert vs["spec"]["tls"][0]["match"][0]["sniHosts"] == ["ray-client.example.com"]
    svc = services_by_fqdn(docs, "default")[route_destinations(vs)[0]["host"]]
    (port,) = svc["spec"]["ports"]
    assert port["appProtocol"] == "tls"  # Ray-native TLS: Istio must not parse it as gRPC
    # gateway.authorizationPolicy is off, so the gateway-only policy holds only what the
    # Ray pods' own policy (mesh.authorizationPolicy) leaves to it: the routed client port
    policies = {p["metadata"]["name"]: p for p in kind(docs, "AuthorizationPolicy")}
    assert sorted(policies) == ["ray-pt-gateway-only", "ray-pt-ray"]
    (rule,) = policies["ray-pt-gateway-only"]["spec"]["rules"]
    assert rule["to"][0]["operation"]["ports"] == [str(port["targetPort"])]
    assert rule["from"][0]["source"]["principals"] == [
        "cluster.local/ns/istio-system/sa/istio-ingressgateway-service-account"]


def test_existing_gateway_is_reused_and_the_service_exported_to_it(render_chart: Renderer) -> None:
    docs = render_chart(set_values=(
        "serve.enabled=true", "gateway.enabled=true", "gateway.existingGateway=kubeflow/kf-gw",
        "gateway.routes.serve.enabled=true", "gateway.routes.serve.host=serve.example.com"))
    assert not kind(docs, "Gateway")
    (vs,) = kind(docs, "VirtualService")
    assert vs["spec"]["gateways"] == ["kubeflow/kf-gw"]
    svc = services_by_fqdn(docs, "default")[route_destinations(vs)[0]["host"]]
    assert exported_to(svc, "kubeflow", "default")
    assert not exported_to(svc, "istio-system", "default")


def test_export_to_everywhere_is_left_alone(render_chart: Renderer) -> None:
    docs = render_chart(GATEWAY_EXAMPLE, set_values=("service.exportTo={*}",))
    gw_svc = next(s for s in kind(docs, "Service") if s["spec"].get("type") == "ClusterIP")
    assert gw_svc["metadata"]["annotations"]["networking.istio.io/exportTo"] == "*"


def test_serve_ports_are_pinned_and_declared_on_every_node(render_chart: Renderer) -> None:
    docs = render_chart(SERVE_EXAMPLE)
    (svc,) = kind(docs, "Service")
    declared = {p["port"]: p["appProtocol"] for p in svc["spec"]["ports"]}
    assert declared[8000] == "http" and declared[9000] == "grpc"
    rc = kind(docs, "RayCluster")[0]
    pods = [rc["spec"]["headGroupSpec"], *rc["spec"]["workerGroupSpecs"]]
    for pod in pods:
        env = {e["name"]: e.get("value") for e in pod["template"]["spec"]["containers"][0]["env"]}
        assert env["RAY_SERVE_DEFAULT_HTTP_PORT"] == "8000"
        assert env["RAY_SERVE_DEFAULT_GRPC_PORT"] == "9000"
        assert env["RAY_SERVE_DEFAULT_HTTP_HOST"] == "0.0.0.0"
    assert head_ports(docs)["serve"] == 8000


def test_serve_off_declares_no_serve_port(render_chart: Renderer) -> None:
    docs = render_chart()
    (svc,) = kind(docs, "Service")
    assert {8000, 9000}.isdisjoint({p["port"] for p in svc["spec"]["ports"]})
