"""The Istio ingress-gateway path and Ray Serve ports: every route lands on a Service and port
that exist, with the protocol the traffic needs, visible to the gateway's namespace."""

from __future__ import annotations

import copy
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from chart_support import REPO, Renderer, helm_run

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
    # one rule per guarded port, each denying requests without a JWT (no one is listed here)
    rules = deny["spec"]["rules"]
    assert sorted(p for r in rules for p in r["to"][0]["operation"]["ports"]) == guarded
    assert all(r["from"] == [{"source": {"notRequestPrincipals": ["*"]}}] for r in rules)
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


# ---- values never reach YAML unquoted (issue 19, part 1) ----------------------------------------

INJECTED = "ray\n---\napiVersion: v1\nkind: Secret\nmetadata:\n  name: injected\n"
GW_DASH = {"gateway": {"enabled": True, "acknowledgeUnauthenticated": True,
                       "http": {"enabled": False},
                       "https": {"enabled": True, "credentialName": "ray-gw-tls"},
                       "routes": {"dashboard": {"enabled": True, "host": "ray.example.com"}}}}




def nested(path: str, value: Any, base: dict[str, Any]) -> dict[str, Any]:
    """`base` with `value` at the dotted `path` (a trailing [0] makes a one-item list)."""
    out = copy.deepcopy(base)
    node = out
    *parents, leaf = path.split(".")
    for key in parents:
        node = node.setdefault(key, {})
    if leaf.endswith("[0]"):
        node[leaf[:-3]] = [value]
    else:
        node[leaf] = value
    return out


# Every string of the gateway and ingress blocks that a template writes, with values around it
# that render; (key, JSON pointer helm names).
GW_JWT = nested("gateway.auth", {"jwtIssuer": "https://auth.example.com",
                                 "jwksUri": "https://auth.example.com/jwks",
                                 "audiences": ["ray"]}, GW_DASH)
INGRESS = {"ingress": {"dashboard": {"enabled": True, "host": "ray.example.com",
                                     "tls": {"enabled": True, "secretName": "ray-tls"},
                                     "auth": {"type": "basic", "basicSecretName": "ray-auth"}}}}
INJECTABLE = [
    ("gateway.https.credentialName", GW_DASH, "/gateway/https/credentialName"),
    ("gateway.routes.dashboard.pathPrefix", GW_DASH, "/gateway/routes/dashboard/pathPrefix"),
    ("gateway.auth.jwtIssuer", GW_JWT, "/gateway/auth/jwtIssuer"),
    ("gateway.auth.jwksUri", GW_JWT, "/gateway/auth/jwksUri"),
    ("gateway.auth.audiences[0]", GW_JWT, "/gateway/auth/audiences/0"),
    ("gateway.selector.istio", GW_DASH, "/gateway/selector/istio"),
    ("ingress.dashboard.path", INGRESS, "/ingress/dashboard/path"),
    ("ingress.dashboard.tls.secretName", INGRESS, "/ingress/dashboard/tls/secretName"),
    ("ingress.dashboard.auth.basicSecretName", INGRESS, "/ingress/dashboard/auth/basicSecretName"),
]


@pytest.mark.parametrize(("key", "base", "pointer"), INJECTABLE, ids=[k for k, _, _ in INJECTABLE])
def test_a_yaml_document_in_a_value_is_refused_naming_the_key(
        key: str, base: dict[str, Any], pointer: str, tmp_path: Path) -> None:
    good = helm_run(base, tmp_path)  # control: the values around it render
    assert good.returncode == 0, good.stderr
    res = helm_run(nested(key, "/" + INJECTED if "path" in key.lower() else INJECTED, base),
                   tmp_path)
    assert res.returncode != 0 and res.stdout == "", res.stdout[-2000:]
    assert f"at '{pointer}'" in res.stderr, res.stderr


def test_an_injected_annotation_key_is_refused(tmp_path: Path) -> None:
    bad = nested("ingress.dashboard.annotations", {"a\n---\nkind: Secret": "x"}, INGRESS)
    res = helm_run(bad, tmp_path)
    assert res.returncode != 0 and res.stdout == ""
    # helm's pointer for a map key is unreliable (tests/render/test_bad_values.py); it
    # quotes the key
    assert "invalid propertyName 'a\\n---\\nkind: Secret'" in res.stderr, res.stderr
    # meshray validate names the key's path
    meshray = Path(os.environ.get("VIRTUAL_ENV", REPO / ".venv")) / "bin" / "meshray"
    out = subprocess.run([str(meshray), "validate", str(tmp_path / "values.yaml")],
                         capture_output=True, text=True, timeout=120, check=False).stdout
    assert "ingress.dashboard.annotations.a\n---\nkind: Secret: key must be" in out, out
    # control: a real annotation key renders, its value as given
    ok = helm_run(nested("ingress.dashboard.annotations",
                         {"nginx.ingress.kubernetes.io/proxy-body-size": "8m"}, INGRESS), tmp_path)
    assert ok.returncode == 0, ok.stderr
    (ing,) = [d for d in yaml.safe_load_all(ok.stdout) if d and d["kind"] == "Ingress"]
    assert ing["metadata"]["annotations"]["nginx.ingress.kubernetes.io/proxy-body-size"] == "8m"


@pytest.mark.parametrize("name", ["null", "true", "0123"])
def test_names_yaml_would_retype_arrive_as_strings(name: str, tmp_path: Path) -> None:
    """DNS names YAML reads as null, a bool or a number: only quoting keeps them strings."""
    values = nested("gateway.https.credentialName", name, GW_DASH)
    values = nested("ingress.dashboard.tls.secretName", name, {**values, **INGRESS})
    res = helm_run(values, tmp_path)
    assert res.returncode == 0, res.stderr
    docs = [d for d in yaml.safe_load_all(res.stdout) if d]
    (gw,) = kind(docs, "Gateway")
    (https,) = [s for s in gw["spec"]["servers"] if s["port"]["name"] == "https"]
    assert https["tls"]["credentialName"] == name
    (ing,) = kind(docs, "Ingress")
    assert ing["spec"]["tls"][0]["secretName"] == name


@pytest.mark.parametrize(("value", "ok"), [
    ("kubernetes://ray-gw-tls", True), ("kubernetes://istio-system/ray-gw-tls", True),
    ("ray-gw-tls", True), ("Ray_TLS", False), ("kubernetes://a/b/c", False),
    ("ray-gw-tls ", False)])
def test_credential_name_grammar(value: str, ok: bool, tmp_path: Path) -> None:
    res = helm_run(nested("gateway.https.credentialName", value, GW_DASH), tmp_path)
    assert (res.returncode == 0) == ok, res.stderr
    if not ok:
        assert "at '/gateway/https/credentialName'" in res.stderr, res.stderr


@pytest.mark.parametrize(("value", "ok"), [
    ("/", True), ("/api/v1/", True), ("/.well-known/x", True), ("/a%20b", True),
    ("/a//b", False), ("/a/./b", False), ("/a/../b", False), ("/a/..", False),
    ("/a%2Fb", False), ("/a#b", False), ("/a b", False), ("api", False)])
def test_path_prefix_follows_gateway_apis_path_grammar(value: str, ok: bool,
                                                       tmp_path: Path) -> None:
    res = helm_run(nested("gateway.routes.dashboard.pathPrefix", value, GW_DASH), tmp_path)
    assert (res.returncode == 0) == ok, res.stderr
    if ok:
        docs = [d for d in yaml.safe_load_all(res.stdout) if d]
        (vs,) = kind(docs, "VirtualService")
        assert vs["spec"]["http"][0]["match"][0]["uri"]["prefix"] == value


# ---- gateway authentication that holds (issue 19, part 8) ---------------------------------------

def refusal(res: subprocess.CompletedProcess[str]) -> str:
    assert res.returncode != 0 and res.stdout == "", res.stdout[-1000:]
    assert "execution error at (meshray/templates/validate.yaml" in res.stderr, res.stderr
    return res.stderr


def example() -> dict[str, Any]:
    return dict(yaml.safe_load(GATEWAY_EXAMPLE.read_text()))


@pytest.mark.parametrize("sets", [
    ("gateway.http.httpsRedirect=false",),
    ("gateway.https.enabled=false", "gateway.http.httpsRedirect=false",
     "gateway.routes.serve.enabled=false", "gateway.routes.client.enabled=false"),
])
def test_a_jwt_route_on_plain_http_is_refused(sets: tuple[str, ...], tmp_path: Path) -> None:
    err = refusal(helm_run(example(), tmp_path, *sets))
    assert "gateway.http.enabled: true serves the JWT-protected dashboard" in err, err
    assert '"https://auth.example.com"' in err and "httpsRedirect=false" in err
    assert "set gateway.https.enabled=true with gateway.http.httpsRedirect=true" in err


@pytest.mark.parametrize("sets", [(), ("gateway.http.enabled=false",),
                                  ("gateway.http.httpsRedirect=false", "gateway.auth.jwtIssuer=",
                                   "gateway.acknowledgeUnauthenticated=true")])
def test_jwt_routes_render_behind_https_only(sets: tuple[str, ...], tmp_path: Path) -> None:
    res = helm_run(example(), tmp_path, *sets)
    assert res.returncode == 0, res.stderr
    (gw,) = kind([d for d in yaml.safe_load_all(res.stdout) if d], "Gateway")
    jwt = any(d["kind"] == "RequestAuthentication" for d in yaml.safe_load_all(res.stdout) if d)
    for server in gw["spec"]["servers"]:
        if server["port"]["protocol"] == "HTTP" and jwt:
            # the only plain-HTTP server a JWT route may share is one that redirects
            assert server.get("tls") == {"httpsRedirect": True}, server


def test_an_issuer_without_audiences_is_refused_unless_acknowledged(tmp_path: Path) -> None:
    values = example()
    del values["gateway"]["auth"]["audiences"]
    err = refusal(helm_run(values, tmp_path))
    assert 'gateway.auth.audiences: []: gateway.auth.jwtIssuer="https://auth.example.com"' in err
    assert "gateway.auth.acknowledgeAnyAudience=true" in err
    res = helm_run(values, tmp_path, "gateway.auth.acknowledgeAnyAudience=true")
    assert res.returncode == 0, res.stderr
    (ra,) = kind([d for d in yaml.safe_load_all(res.stdout) if d], "RequestAuthentication")
    assert "audiences" not in ra["spec"]["jwtRules"][0]
    # with audiences, they are what the head accepts
    res = helm_run(example(), tmp_path)
    (ra,) = kind([d for d in yaml.safe_load_all(res.stdout) if d], "RequestAuthentication")
    assert ra["spec"]["jwtRules"][0]["audiences"] == example()["gateway"]["auth"]["audiences"]


SUBMITTER = "cluster.local/ns/jobs/sa/submitter"
NOTEBOOK = "cluster.local/ns/users/sa/notebook"
OPERATOR = "cluster.local/ns/ray-system/sa/kuberay-operator"
GATEWAY_SA = "cluster.local/ns/istio-system/sa/istio-ingressgateway-service-account"
LISTED = (f"mesh.authorizationPolicy.dashboardPrincipals={{{SUBMITTER}}}",
          f"mesh.authorizationPolicy.clientPrincipals={{{NOTEBOOK}}}",
          f"gateway.authorizationPolicy.extraPrincipals={{{OPERATOR}}}")


def deny_rules(stdout: str) -> dict[str, dict[str, Any]]:
    """The require-JWT DENY policy's rules, by the one port each names."""
    docs = [d for d in yaml.safe_load_all(stdout) if d]
    (deny,) = [p for p in kind(docs, "AuthorizationPolicy") if p["spec"]["action"] == "DENY"]
    out = {}
    for rule in deny["spec"]["rules"]:
        (port,) = rule["to"][0]["operation"]["ports"]
        out[port] = rule["from"][0]["source"]
    return out


@pytest.mark.parametrize("mesh_policy", [True, False])
def test_require_jwt_spares_the_listed_mesh_callers_not_the_gateway(
        mesh_policy: bool, tmp_path: Path) -> None:
    res = helm_run(example(), tmp_path, *LISTED,
                   f"mesh.authorizationPolicy.enabled={str(mesh_policy).lower()}")
    assert res.returncode == 0, res.stderr
    ports = head_ports([d for d in yaml.safe_load_all(res.stdout) if d])
    rules = deny_rules(res.stdout)
    assert set(rules) == {str(ports["dashboard"]), str(ports["client"])}
    # who the values admit to each port besides the gateway: mesh lists only with their policy
    want = {"dashboard": {OPERATOR} | ({SUBMITTER} if mesh_policy else set()),
            "client": {OPERATOR} | ({NOTEBOOK} if mesh_policy else set())}
    for name, want_spared in want.items():
        source = rules[str(ports[name])]
        assert source["notRequestPrincipals"] == ["*"]
        assert set(source["notPrincipals"]) == want_spared, (name, source)
        assert GATEWAY_SA not in source["notPrincipals"]
    # Control: with no one listed the rule spares no one (no notPrincipals at all).
    res = helm_run(example(), tmp_path)
    assert all("notPrincipals" not in s for s in deny_rules(res.stdout).values())


@pytest.mark.parametrize(("key", "value"), [
    ("mesh.authorizationPolicy.dashboardPrincipals", "*"),
    ("mesh.authorizationPolicy.clientPrincipals", "cluster.local/ns/istio-system/*"),
    ("gateway.authorizationPolicy.extraPrincipals", "*/sa/istio-ingressgateway-service-account"),
    ("mesh.authorizationPolicy.dashboardPrincipals", GATEWAY_SA)])
def test_a_spared_principal_matching_the_gateway_is_refused(key: str, value: str,
                                                            tmp_path: Path) -> None:
    err = refusal(helm_run(nested(key + "[0]", value, example()), tmp_path))
    assert f'{key}[0]: "{value}" matches the gateway\'s own principal "{GATEWAY_SA}"' in err, err
    # control: the same list with a caller of its own renders
    ok = helm_run(nested(key + "[0]", SUBMITTER, example()), tmp_path)
    assert ok.returncode == 0, ok.stderr
