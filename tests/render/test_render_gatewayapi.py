"""The Kubernetes Gateway API path (gatewayAPI.*): every route reaches the Ray port it is for,
on a Service that selects the head and declares the protocol the route kind sends, through a
listener of the same host; the gateway's principal is admitted on exactly the routed ports.

The oracle reads what Ray will listen on from the RayCluster the chart renders (the head's
rayStartParams and env, as KubeRay passes them to `ray start`) and the hosts from the values
files, never from the chart's helpers; kubeconform with the Gateway API v1.5.0 schemas and
`meshray audit` are checked with broken objects beside the good ones (negative controls).
"""

from __future__ import annotations

import copy
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from chart_support import REPO, Renderer, helm_run, skip_unless_ci
from meshray.audit import audit
from meshray.manifests import Manifest

EXAMPLES = sorted((REPO / "values-examples").glob("gatewayapi-*.yaml"))
GOOD = REPO / "tests/fixtures/values-corpus/good/gatewayapi-existing-gateway.yaml"
IN_GW_NS = ("gatewayAPI.routesInGatewayNamespace=true",)
NS = "ray"
# What each route kind sends, and the appProtocol its backend port must declare for Istio's
# gateway to send it (REFERENCE §4: appProtocol wins).
APP_PROTOCOL = {"HTTPRoute": "http", "GRPCRoute": "grpc", "TLSRoute": "tls"}
LISTENER_PROTOCOL = {"HTTPRoute": "HTTPS", "GRPCRoute": "HTTPS", "TLSRoute": "TLS"}
ROUTE_KINDS = tuple(APP_PROTOCOL)


def of(docs: list[dict[str, Any]], *kinds: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] in kinds]


def ray_ports(docs: list[dict[str, Any]]) -> dict[str, int]:
    """What the head's `ray start` listens on for each routable component, from the
    RayCluster: flags from rayStartParams, Serve's HTTP port from the container env."""
    (rc,) = of(docs, "RayCluster")
    head = rc["spec"]["headGroupSpec"]
    params = head["rayStartParams"]
    out = {"dashboard": int(params["dashboard-port"]),
           "client": int(params["ray-client-server-port"])}
    env = {e["name"]: e.get("value") for e in head["template"]["spec"]["containers"][0]["env"]}
    if "RAY_SERVE_DEFAULT_HTTP_PORT" in env:
        out["serve"] = int(env["RAY_SERVE_DEFAULT_HTTP_PORT"])
    return out


def values_of(path: Path) -> dict[str, Any]:
    return dict(yaml.safe_load(path.read_text())["gatewayAPI"])


def test_there_is_an_example_per_route_kind(render_chart: Renderer) -> None:
    kinds = {d["kind"] for p in EXAMPLES for d in render_chart(p, namespace=NS)}
    assert set(ROUTE_KINDS) <= kinds


@pytest.mark.parametrize("values", [*EXAMPLES, GOOD], ids=lambda p: p.stem)
def test_every_route_reaches_its_ray_port(render_chart: Renderer, values: Path) -> None:
    docs = render_chart(values, namespace=NS)
    ga = values_of(values)
    wanted = {name: r for name, r in ga["routes"].items() if r.get("enabled")}
    listen = ray_ports(docs)
    routes = of(docs, *ROUTE_KINDS)
    # one route per enabled route, each for its own host
    assert sorted(h for r in routes for h in r["spec"]["hostnames"]) == sorted(
        r["host"] for r in wanted.values())
    services = {s["metadata"]["name"]: s for s in of(docs, "Service")}
    seen = set()
    for route in routes:
        (host,) = route["spec"]["hostnames"]
        name = next(n for n, r in wanted.items() if r["host"] == host)
        seen.add(name)
        mode = wanted[name].get("mode", "grpc")
        want_kind = ("HTTPRoute" if name != "client" else
                     "TLSRoute" if mode == "passthrough" else "GRPCRoute")
        assert route["kind"] == want_kind, (name, route["kind"])
        (rule,) = route["spec"]["rules"]
        (ref,) = rule["backendRefs"]
        assert ref.get("namespace", route["metadata"]["namespace"]) == NS
        svc = services[ref["name"]]
        assert svc["spec"]["selector"] == {"ray.io/cluster": of(docs, "RayCluster")[0]
                                           ["metadata"]["name"], "ray.io/node-type": "head"}
        (port,) = [p for p in svc["spec"]["ports"] if p["port"] == ref["port"]]
        assert port["targetPort"] == listen[name], (name, port, listen)
        assert port["appProtocol"] == APP_PROTOCOL[route["kind"]]
        if route["kind"] == "HTTPRoute":
            (match,) = rule["matches"]
            assert match["path"] == {"type": "PathPrefix",
                                     "value": wanted[name].get("pathPrefix", "/")}
    assert seen == set(wanted)


@pytest.mark.parametrize("values", [*EXAMPLES, GOOD], ids=lambda p: p.stem)
def test_routes_attach_to_a_listener_of_their_host(render_chart: Renderer, values: Path) -> None:
    docs = render_chart(values, namespace=NS)
    ga = values_of(values)
    gateways = of(docs, "Gateway")
    existing = ga.get("existingGateway")
    routes = of(docs, *ROUTE_KINDS)
    if existing:
        assert gateways == []
        gw_ns, gw_name = existing.split("/")
        for route in routes:
            for ref in route["spec"]["parentRefs"]:
                assert ref["name"] == gw_name and "sectionName" not in ref
                assert ref.get("namespace", route["metadata"]["namespace"]) == gw_ns
        return
    (gw,) = gateways
    assert gw["spec"]["gatewayClassName"] == ga.get("gatewayClassName", "istio")
    listeners = {ln["name"]: ln for ln in gw["spec"]["listeners"]}
    for route in routes:
        (host,) = route["spec"]["hostnames"]
        (ref,) = route["spec"]["parentRefs"]  # no http listener in these examples
        assert ref["name"] == gw["metadata"]["name"] and "namespace" not in ref
        ln = listeners[ref["sectionName"]]
        assert ln["hostname"] == host
        assert ln["protocol"] == LISTENER_PROTOCOL[route["kind"]]
        assert [k["kind"] for k in ln["allowedRoutes"]["kinds"]] == [route["kind"]]
        tls = ln["tls"]
        if route["kind"] == "TLSRoute":
            assert tls == {"mode": "Passthrough"}
        else:
            assert tls["mode"] == "Terminate"
            assert tls["certificateRefs"][0]["name"] == ga["https"]["certificateSecret"]


@pytest.mark.parametrize("values", [*EXAMPLES, GOOD], ids=lambda p: p.stem)
def test_the_gateway_principal_is_admitted_on_the_routed_ports(render_chart: Renderer,
                                                              values: Path) -> None:
    docs = render_chart(values, namespace=NS)
    ga = values_of(values)
    listen = ray_ports(docs)
    routed = {str(listen[n]) for n, r in ga["routes"].items() if r.get("enabled")}
    if ga.get("authorizationPolicy", {}).get("enabled"):  # the gateway guards both, routed or not
        routed |= {str(listen["dashboard"]), str(listen["client"])}
    if ga.get("existingGateway"):
        gw_ns, gw_name = ga["existingGateway"].split("/")
    else:
        gw_ns, gw_name = NS, of(docs, "Gateway")[0]["metadata"]["name"]
    sa = ga.get("serviceAccount") or f"{gw_name}-{ga.get('gatewayClassName', 'istio')}"
    principal = f"cluster.local/ns/{gw_ns}/sa/{sa}"
    admitted: dict[str, set[str]] = {}
    for pol in of(docs, "AuthorizationPolicy"):
        if pol["spec"].get("action", "ALLOW") != "ALLOW":
            continue
        for rule in pol["spec"]["rules"]:
            for src in rule.get("from", []):
                for p in src["source"].get("principals", []):
                    for op in rule.get("to", []):  # of the Ray ports: listed, or not left out
                        o = op["operation"]
                        ports = set(o["ports"]) if "ports" in o else (
                            {str(v) for v in listen.values()} - set(o.get("notPorts", [])))
                        admitted.setdefault(p, set()).update(ports)
    assert admitted.get(principal) == routed
    # The gateway's Service is visible to the gateway's namespace.
    (svc,) = [s for s in of(docs, "Service") if s["metadata"]["name"].endswith("-gateway-svc")]
    export = svc["metadata"]["annotations"]["networking.istio.io/exportTo"].split(",")
    assert gw_ns in export or (gw_ns == NS and "." in export)


def test_routes_in_the_gateway_namespace_get_a_reference_grant(render_chart: Renderer) -> None:
    docs = render_chart(GOOD, namespace=NS, set_values=IN_GW_NS)
    (grant,) = of(docs, "ReferenceGrant")
    routes = of(docs, *ROUTE_KINDS)
    assert {r["metadata"]["namespace"] for r in routes} == {"kube-system"}
    assert grant["metadata"]["namespace"] == NS
    assert grant["spec"]["from"] == [{"group": "gateway.networking.k8s.io", "kind": "HTTPRoute",
                                      "namespace": "kube-system"}]
    names = {ref["name"] for r in routes for ref in r["spec"]["rules"][0]["backendRefs"]}
    assert grant["spec"]["to"] == [{"group": "", "kind": "Service", "name": names.pop()}]
    assert _audit(docs) == []
    # Controls: routes in the release namespace need no grant; without it the audit objects.
    assert of(render_chart(GOOD, namespace=NS), "ReferenceGrant") == []
    ungranted = {c for c, _, _ in _audit([d for d in docs if d["kind"] != "ReferenceGrant"])}
    assert ungranted == {"route-reference-not-granted"}


def test_jwt_guards_the_dashboard_and_client_at_the_head(render_chart: Renderer) -> None:
    docs = render_chart(REPO / "values-examples/gatewayapi-grpc-client.yaml", namespace=NS)
    listen = ray_ports(docs)
    (ra,) = of(docs, "RequestAuthentication")
    assert ra["spec"]["jwtRules"][0]["audiences"] == ["ray-client"]
    (deny,) = [p for p in of(docs, "AuthorizationPolicy") if p["spec"]["action"] == "DENY"]
    rules = deny["spec"]["rules"]
    assert all(r["from"] == [{"source": {"notRequestPrincipals": ["*"]}}] for r in rules)
    assert sorted(p for r in rules for p in r["to"][0]["operation"]["ports"]) == sorted(
        {str(listen["dashboard"]), str(listen["client"])})


def test_off_by_default_and_nothing_of_the_gateway_api_renders(render_chart: Renderer) -> None:
    docs = render_chart(namespace=NS)
    assert [d for d in docs if d["apiVersion"].startswith("gateway.networking.k8s.io")] == []


# ---- kubeconform with the Gateway API v1.5.0 schemas (negative control) -----------------------

def _schemas() -> Path:
    root = Path(os.environ.get("MESHRAY_SCHEMAS") or REPO / ".cache" / "schemas")
    sets = sorted(root.glob("gateway-api-*"))
    if not sets:
        skip_unless_ci("no gateway-api schema set: make lint-schemas")
    return sets[-1]


def test_kubeconform_refuses_broken_gateway_api_objects(render_chart: Renderer,
                                                        tmp_path: Path) -> None:
    import sys
    sys.path.insert(0, str(REPO / "tools" / "ecosystem"))
    import check_renders as checks

    gwapi = _schemas()
    kubeconform = REPO / "bin" / "kubeconform"
    renders = [render_chart(p, namespace=NS) for p in EXAMPLES]
    renders.append(render_chart(GOOD, namespace=NS, set_values=IN_GW_NS))
    docs = [d for r in renders for d in r
            if d["apiVersion"].startswith("gateway.networking.k8s.io")]
    assert {d["kind"] for d in docs} == {"Gateway", *ROUTE_KINDS, "ReferenceGrant"}
    good = tmp_path / "good.yaml"
    good.write_text(yaml.safe_dump_all(docs))
    assert checks.kubeconform(kubeconform, [good], [gwapi]) == []
    broken = copy.deepcopy(docs)
    for d in broken:
        if d["kind"] == "HTTPRoute":
            d["spec"]["rules"][0]["matches"][0]["path"]["type"] = "Prefix"  # Ingress's spelling
        if d["kind"] == "TLSRoute":
            d["spec"]["rules"][0]["backendRef"] = d["spec"]["rules"][0].pop("backendRefs")
        if d["kind"] == "Gateway":
            d["spec"]["listeners"][0]["hostnames"] = [d["spec"]["listeners"][0]["hostname"]]
        if d["kind"] == "ReferenceGrant":
            d["spec"]["to"][0]["namespace"] = "elsewhere"  # a grant only covers its own namespace
    bad_path = tmp_path / "bad.yaml"
    bad_path.write_text(yaml.safe_dump_all(broken))
    bad = {r["kind"] for r in checks.kubeconform(kubeconform, [bad_path], [gwapi])}
    assert {"HTTPRoute", "TLSRoute", "Gateway", "ReferenceGrant"} <= bad
    # Without the set kubeconform has no schema for them at all.
    missing = checks.kubeconform(kubeconform, [good], [gwapi.parent / "k8s-v1.36.3"])
    assert missing and all("could not find schema" in r["msg"] for r in missing)


# ---- meshray audit -------------------------------------------------------------------------------

def _audit(docs: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    found = audit([Manifest(d, f"t#{i}") for i, d in enumerate(docs)], namespace=NS)
    return [(f.check, f.kind, f.name) for f in found if f.check.startswith("route-")]


@pytest.mark.parametrize("values", [*EXAMPLES, GOOD], ids=lambda p: p.stem)
def test_audit_is_clean_on_the_chart_routes(render_chart: Renderer, values: Path) -> None:
    assert _audit(render_chart(values, namespace=NS)) == []


def test_audit_names_each_broken_route(render_chart: Renderer) -> None:
    docs = render_chart(REPO / "values-examples/gatewayapi-grpc-client.yaml", namespace=NS)
    (grpc,) = of(docs, "GRPCRoute")

    def variant(name: str, change: dict[str, Any], ns: str | None = None) -> dict[str, Any]:
        r = copy.deepcopy(grpc)
        r["metadata"]["name"] = name
        if ns:
            r["metadata"]["namespace"] = ns
        r["spec"]["rules"][0]["backendRefs"][0].update(change)
        return r

    listen = ray_ports(docs)
    extra = [variant("to-dashboard", {"port": listen["dashboard"]}),
             variant("no-port", {"port": 10999}),
             variant("no-service", {"name": "nope"}),
             variant("other-ns", {"namespace": NS}, ns="elsewhere")]
    got = set(_audit([*docs, *extra]))
    assert ("route-protocol-mismatch", "GRPCRoute", "to-dashboard") in got
    assert ("route-port-missing", "GRPCRoute", "no-port") in got
    assert ("route-service-missing", "GRPCRoute", "no-service") in got
    assert ("route-reference-not-granted", "GRPCRoute", "other-ns") in got
    # The JWT guards the chart's own routes; without its DENY policy they are exposed.
    assert not any(c == "route-exposes-ray" for c, _, _ in got)
    unguarded = [d for d in docs if not d["metadata"]["name"].endswith("-require-jwt")]
    exposed = {(c, n) for c, _, n in _audit(unguarded)}
    assert exposed == {("route-exposes-ray", r["metadata"]["name"])
                       for r in of(docs, "HTTPRoute", "GRPCRoute")}


# ---- values never reach YAML unquoted; JWT that holds (issue 19, parts 1 and 8) ---------------

GRPC_EXAMPLE = REPO / "values-examples/gatewayapi-grpc-client.yaml"
INJECTED = "\n---\napiVersion: v1\nkind: Secret\nmetadata:\n  name: injected\n"
# istiod names the deployment of Gateway <name> of class istio <name>-istio, and its account
GATEWAY_SA = "cluster.local/ns/default/sa/ray-gwapi-client-gateway-istio"
SUBMITTER = "cluster.local/ns/jobs/sa/submitter"
NOTEBOOK = "cluster.local/ns/users/sa/notebook"
OPERATOR = "cluster.local/ns/ray-system/sa/kuberay-operator"




def grpc_example() -> dict[str, Any]:
    return dict(yaml.safe_load(GRPC_EXAMPLE.read_text()))


def with_value(values: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    out = copy.deepcopy(values)
    node = out
    *parents, leaf = path.split(".")
    for key in parents:
        node = node.setdefault(key, {})
    node[leaf] = value
    return out


def refusal(res: subprocess.CompletedProcess[str]) -> str:
    assert res.returncode != 0 and res.stdout == "", res.stdout[-1000:]
    assert "execution error at (meshray/templates/validate.yaml" in res.stderr, res.stderr
    return res.stderr


@pytest.mark.parametrize(("key", "value", "pointer"), [
    ("gatewayAPI.routes.dashboard.pathPrefix", "/ray" + INJECTED,
     "/gatewayAPI/routes/dashboard/pathPrefix"),
    ("gatewayAPI.auth.jwtIssuer", "https://auth.example.com" + INJECTED,
     "/gatewayAPI/auth/jwtIssuer"),
    ("gatewayAPI.auth.audiences", ["ray" + INJECTED], "/gatewayAPI/auth/audiences/0"),
    ("gatewayAPI.https.certificateSecret", "tls" + INJECTED, "/gatewayAPI/https/certificateSecret"),
])
def test_a_yaml_document_in_a_value_is_refused_naming_the_key(
        key: str, value: Any, pointer: str, tmp_path: Path) -> None:
    assert helm_run(grpc_example(), tmp_path).returncode == 0  # control: the example renders
    res = helm_run(with_value(grpc_example(), key, value), tmp_path)
    assert res.returncode != 0 and res.stdout == ""
    assert f"at '{pointer}'" in res.stderr, res.stderr


@pytest.mark.parametrize("name", ["null", "true", "0123"])
def test_names_yaml_would_retype_arrive_as_strings(name: str, tmp_path: Path) -> None:
    res = helm_run(with_value(grpc_example(), "gatewayAPI.https.certificateSecret", name), tmp_path)
    assert res.returncode == 0, res.stderr
    (gw,) = of([d for d in yaml.safe_load_all(res.stdout) if d], "Gateway")
    assert {ln["tls"]["certificateRefs"][0]["name"] for ln in gw["spec"]["listeners"]} == {name}


def test_path_prefix_with_reserved_characters_arrives_intact(tmp_path: Path) -> None:
    prefix = "/ray:v1/a,b;c=d/@x/%41"
    res = helm_run(with_value(grpc_example(), "gatewayAPI.routes.dashboard.pathPrefix", prefix),
                   tmp_path)
    assert res.returncode == 0, res.stderr
    (route,) = of([d for d in yaml.safe_load_all(res.stdout) if d], "HTTPRoute")
    assert route["spec"]["rules"][0]["matches"][0]["path"]["value"] == prefix


def test_a_jwt_route_on_the_plain_http_listener_is_refused(tmp_path: Path) -> None:
    err = refusal(helm_run(grpc_example(), tmp_path, "gatewayAPI.http.enabled=true"))
    assert ('gatewayAPI.http.enabled: true puts the JWT-protected dashboard route '
            '(gatewayAPI.auth.jwtIssuer="https://auth.example.com")') in err, err
    assert "set gatewayAPI.http.enabled=false" in err
    # Controls: without a JWT the HTTP listener renders and carries the dashboard route; with a
    # JWT and only the (unguarded) Serve route it renders too.
    res = helm_run(grpc_example(), tmp_path, "gatewayAPI.http.enabled=true",
                   "gatewayAPI.auth.jwtIssuer=", "gatewayAPI.acknowledgeUnauthenticated=true")
    assert res.returncode == 0, res.stderr
    (gw,) = of([d for d in yaml.safe_load_all(res.stdout) if d], "Gateway")
    assert "http-dashboard" in {ln["name"] for ln in gw["spec"]["listeners"]}
    res = helm_run(grpc_example(), tmp_path, "gatewayAPI.http.enabled=true", "serve.enabled=true",
                   "gatewayAPI.routes.dashboard.enabled=false",
                   "gatewayAPI.routes.client.enabled=false",
                   "gatewayAPI.routes.serve.enabled=true",
                   "gatewayAPI.routes.serve.host=serve.example.com")
    assert res.returncode == 0, res.stderr


def test_an_issuer_without_audiences_is_refused_unless_acknowledged(tmp_path: Path) -> None:
    values = grpc_example()
    del values["gatewayAPI"]["auth"]["audiences"]
    err = refusal(helm_run(values, tmp_path))
    assert ('gatewayAPI.auth.audiences: []: gatewayAPI.auth.jwtIssuer="https://auth.example.com"'
            in err), err
    assert "gatewayAPI.auth.acknowledgeAnyAudience=true" in err
    res = helm_run(values, tmp_path, "gatewayAPI.auth.acknowledgeAnyAudience=true")
    assert res.returncode == 0, res.stderr
    (ra,) = of([d for d in yaml.safe_load_all(res.stdout) if d], "RequestAuthentication")
    assert "audiences" not in ra["spec"]["jwtRules"][0]


def test_require_jwt_spares_the_listed_mesh_callers_not_the_gateway(tmp_path: Path) -> None:
    res = helm_run(grpc_example(), tmp_path,
                   f"mesh.authorizationPolicy.dashboardPrincipals={{{SUBMITTER}}}",
                   f"mesh.authorizationPolicy.clientPrincipals={{{NOTEBOOK}}}",
                   "gatewayAPI.authorizationPolicy.enabled=true",
                   f"gatewayAPI.authorizationPolicy.extraPrincipals={{{OPERATOR}}}")
    assert res.returncode == 0, res.stderr
    docs = [d for d in yaml.safe_load_all(res.stdout) if d]
    listen = ray_ports(docs)
    (deny,) = [p for p in of(docs, "AuthorizationPolicy") if p["spec"]["action"] == "DENY"]
    spared = {}
    for rule in deny["spec"]["rules"]:
        (port,) = rule["to"][0]["operation"]["ports"]
        (src,) = rule["from"]
        assert src["source"]["notRequestPrincipals"] == ["*"]
        spared[int(port)] = set(src["source"].get("notPrincipals", []))
    assert spared == {listen["dashboard"]: {SUBMITTER, OPERATOR},
                      listen["client"]: {NOTEBOOK, OPERATOR}}
    # The gateway's principal (admitted by the ALLOW policy) is spared nowhere.
    allowed = {p for pol in of(docs, "AuthorizationPolicy") if pol["spec"]["action"] == "ALLOW"
               for r in pol["spec"]["rules"] for f in r.get("from", [])
               for p in f["source"].get("principals", [])}
    assert GATEWAY_SA in allowed
    assert all(GATEWAY_SA not in s for s in spared.values())


def test_a_spared_principal_matching_the_gateway_is_refused(tmp_path: Path) -> None:
    err = refusal(helm_run(grpc_example(), tmp_path, "gatewayAPI.authorizationPolicy.enabled=true",
                           "gatewayAPI.authorizationPolicy.extraPrincipals={*-istio}"))
    assert ('gatewayAPI.authorizationPolicy.extraPrincipals[0]: "*-istio" matches the '
            f'gateway\'s own principal "{GATEWAY_SA}"') in err, err
