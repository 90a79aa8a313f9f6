"""The Ray pods' Istio Sidecars: each role's `spec.ingress`, port by port and protocol by
protocol, against the port map.

istiod builds every inbound listener of a Ray pod from its Sidecar's `ingress` (docs/ports.md,
templates/mesh/sidecar.yaml), so a port missing there is a port the pod's proxy does not
program the way the chart claims, and a wrong protocol makes Envoy parse Ray's gRPC as HTTP/1.1
(or the reverse). The oracles never call the chart's helpers: which port a role opens, and
with which protocol, comes from the table in docs/ports.md written out below, applied to the
values (chart defaults merged with the values file the way helm merges them), then
cross-checked against the rendered headless Service's appProtocol and each group's
rayStartParams and env (which tests/render/test_render.py ties to the values).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from chart_support import CHART, EXAMPLES, Renderer, effective_values

CI_FILES = sorted((CHART / "ci").glob("*-values.yaml"))
CASES: list[Path | None] = [None, *EXAMPLES, *CI_FILES]
CASE_IDS = ["defaults", *(p.stem for p in EXAMPLES), *(f"ci-{p.stem}" for p in CI_FILES)]

HEAD, NODE = "head", "node"  # who opens a port: the head only, or every Ray node
GRPC, HTTP = "grpc", "http"
# docs/ports.md "How the port map works": values key -> (protocol, who opens it). The
# dashboard gRPC port exists below Ray 2.45 only; Serve's two proxies with serve.enabled only.
PORT_TABLE: dict[tuple[str, str], tuple[str, str]] = {
    ("ports", "gcs"): (GRPC, HEAD),
    ("ports", "dashboard"): (HTTP, HEAD),
    ("ports", "client"): (GRPC, HEAD),
    ("ports", "nodeManager"): (GRPC, NODE),
    ("ports", "objectManager"): (GRPC, NODE),
    ("ports", "runtimeEnvAgent"): (HTTP, NODE),  # aiohttp, not gRPC (docs/ports.md, item 1)
    ("ports", "dashboardAgentGrpc"): (GRPC, NODE),
    ("ports", "dashboardAgentListen"): (HTTP, NODE),
    ("ports", "metricsExport"): (HTTP, NODE),
    ("ports", "dashboardGrpc"): (GRPC, HEAD),
    ("ports", "autoscalerMetrics"): (HTTP, HEAD),
    ("ports", "dashboardMetrics"): (HTTP, HEAD),
    ("serve", "httpPort"): (HTTP, NODE),
    ("serve", "grpcPort"): (GRPC, NODE),
}
# Istio's Sidecar port protocols (networking.istio.io Port.protocol) for Ray's protocols; with
# rayTls.enabled Ray wraps its gRPC in TLS, which Istio must then pass as TLS (docs/ports.md).
ISTIO_PROTOCOL = {GRPC: "GRPC", HTTP: "HTTP"}
# The labels the KubeRay operator adds to every Ray pod (ray-operator/controllers/ray/utils/
# constant.go): the cluster's name, the node type, the group (headgroup for the head).
HEAD_GROUP = "headgroup"
# rayStartParams that pin a port on the node that gets them ("port" is the GCS).
PORT_PARAMS = {"port", "dashboard-port", "ray-client-server-port", "node-manager-port",
               "object-manager-port", "runtime-env-agent-port", "dashboard-agent-grpc-port",
               "dashboard-agent-listen-port", "metrics-export-port", "dashboard-grpc-port"}
PORT_ENV = {"AUTOSCALER_METRIC_PORT", "DASHBOARD_METRIC_PORT", "RAY_SERVE_DEFAULT_HTTP_PORT",
            "RAY_SERVE_DEFAULT_GRPC_PORT"}


def version_below(version: str, major: int, minor: int) -> bool:
    return tuple(int(x) for x in version.split(".")[:2]) < (major, minor)


def expected_ingress(values: dict[str, Any], role: str) -> dict[int, str]:
    """{port: Istio protocol} the Sidecar of `role` (head or worker) must declare, from the
    values alone."""
    tls = bool(values["rayTls"]["enabled"])
    old_ray = version_below(str(values["ray"]["version"]), 2, 45)

    def istio(protocol: str) -> str:
        return "TLS" if tls and protocol == GRPC else ISTIO_PROTOCOL[protocol]

    out: dict[int, str] = {}
    for (section, key), (protocol, opener) in PORT_TABLE.items():
        if key == "dashboardGrpc" and not old_ray:
            continue
        if section == "serve" and not values["serve"]["enabled"]:
            continue
        if opener == HEAD and role != "head":
            continue
        port = int(values[section][key])
        assert port not in out, f"{section}.{key}={port} collides in the expected table"
        out[port] = istio(protocol)
    p = values["ports"]
    workers = p["workerPortList"] or range(p["minWorkerPort"], p["maxWorkerPort"] + 1)
    for port in workers:
        assert int(port) not in out, f"worker port {port} collides in the expected table"
        out[int(port)] = istio(GRPC)
    return out


def renders_sidecars(values: dict[str, Any]) -> bool:
    """templates/mesh/sidecar.yaml's documented condition, read from the values: Ray pods with
    an istio-proxy (not ambient), Sidecars asked for, and a cluster the release runs (a RayJob
    on an existing cluster renders no pods of its own)."""
    mesh = values["mesh"]
    asked = mesh["sidecar"]["inbound"] or mesh["sidecar"]["enabled"]
    job_elsewhere = (values["workload"]["kind"] == "RayJob"
                     and bool(values["rayJob"]["clusterSelector"]))
    return mesh["dataplane"] != "ambient" and bool(asked) and not job_elsewhere


def of(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d.get("kind") == kind]


def cluster_spec(docs: list[dict[str, Any]]) -> tuple[dict[str, Any], str]:
    """The rendered cluster spec and the ray.io/cluster label its pods get: a RayCluster's
    name, or for a RayJob the operator's generated `<job>-<5 random>` (never the job's name)."""
    clusters = of(docs, "RayCluster")
    if clusters:
        assert len(clusters) == 1
        return clusters[0]["spec"], clusters[0]["metadata"]["name"]
    (job,) = of(docs, "RayJob")
    return job["spec"]["rayClusterSpec"], job["metadata"]["name"] + "-x7k2p"


def ray_pods(docs: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any], dict[str, str]]]:
    """(role, group spec, pod labels) for the head and each worker group: the pod template's
    labels plus the ones KubeRay adds."""
    spec, cluster = cluster_spec(docs)
    groups = [("head", HEAD_GROUP, spec["headGroupSpec"])]
    groups += [("worker", g["groupName"], g) for g in spec.get("workerGroupSpecs") or []]
    out = []
    for role, name, group in groups:
        labels = dict(group["template"].get("metadata", {}).get("labels") or {})
        labels.update({"ray.io/cluster": cluster, "ray.io/node-type": role,
                       "ray.io/group": name, "ray.io/is-ray-node": "yes"})
        out.append((role, group, labels))
    return out


def selects(sidecar: dict[str, Any], labels: dict[str, str]) -> bool:
    selector = sidecar["spec"]["workloadSelector"]["labels"]
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def ingress_of(sidecar: dict[str, Any]) -> dict[int, str]:
    """{port: protocol} of a Sidecar's ingress; each port declared once, each forwarded to the
    same port on the pod (defaultEndpoint 0.0.0.0:<port>: the pod's own address, where Ray
    binds), each with a unique name."""
    name = sidecar["metadata"]["name"]
    out: dict[int, str] = {}
    names: set[str] = set()
    for entry in sidecar["spec"].get("ingress") or []:
        port = entry["port"]
        number = int(port["number"])
        assert number not in out, f"{name}: port {number} declared twice"
        assert port["name"] not in names, f"{name}: port name {port['name']} used twice"
        names.add(port["name"])
        assert entry["defaultEndpoint"] == f"0.0.0.0:{number}", (name, entry)
        out[number] = port["protocol"]
    return out


def ingress_problems(expected: dict[int, str], got: dict[int, str]) -> list[str]:
    """Each port the Sidecar misses, adds, or declares with another protocol."""
    problems = [f"port {p} ({proto}) missing" for p, proto in expected.items() if p not in got]
    problems += [f"port {p} ({proto}) is not a port of the role" for p, proto in got.items()
                 if p not in expected]
    problems += [f"port {p} declared {got[p]}, Ray speaks {proto}"
                 for p, proto in expected.items() if p in got and got[p] != proto]
    return problems


def pinned_ports(group: dict[str, Any]) -> set[int]:
    """The ports a group's ray start pins (flags, worker range or list, env)."""
    params = group["rayStartParams"]
    out = {int(v) for k, v in params.items() if k in PORT_PARAMS}
    if "worker-port-list" in params:
        out |= {int(p) for p in params["worker-port-list"].split(",")}
    else:
        out |= set(range(int(params["min-worker-port"]), int(params["max-worker-port"]) + 1))
    env = group["template"]["spec"]["containers"][0].get("env") or []
    out |= {int(e["value"]) for e in env if e["name"] in PORT_ENV}
    return out


# The cases whose render declares Sidecar ingress (the test above checks the others have none).
INBOUND_CASES = [c for c in CASES if renders_sidecars(effective_values(c))
                 and effective_values(c)["mesh"]["sidecar"]["inbound"]]
INBOUND_IDS = [CASE_IDS[CASES.index(c)] for c in INBOUND_CASES]


@pytest.mark.parametrize("values_file", CASES, ids=CASE_IDS)
def test_each_role_sidecar_declares_its_ports_and_protocols(
        render_chart: Renderer, values_file: Path | None) -> None:
    values = effective_values(values_file)
    docs = render_chart(*([values_file] if values_file else []))
    sidecars = of(docs, "Sidecar")
    if not renders_sidecars(values):
        assert sidecars == [], "no Ray pods with an istio-proxy here: a Sidecar selects nothing"
        return
    assert len(sidecars) == 2, [s["metadata"]["name"] for s in sidecars]
    used: set[str] = set()
    for role, group, labels in ray_pods(docs):
        chosen = [s for s in sidecars if selects(s, labels)]
        # Istio applies one Sidecar per workload; two matching ones make its choice arbitrary.
        assert len(chosen) == 1, (role, labels, [s["metadata"]["name"] for s in chosen])
        sidecar = chosen[0]
        used.add(sidecar["metadata"]["name"])
        assert sidecar["apiVersion"] == f"networking.istio.io/{values['istio']['apiVersion']}"
        if not values["mesh"]["sidecar"]["inbound"]:
            assert "ingress" not in sidecar["spec"], sidecar["metadata"]["name"]
        else:
            got = ingress_of(sidecar)
            problems = ingress_problems(expected_ingress(values, role), got)
            assert problems == [], (sidecar["metadata"]["name"], problems)
            # the ports this group's ray start actually pins all have a listener declared
            assert pinned_ports(group) <= set(got), (role, pinned_ports(group) - set(got))
        egress = sidecar["spec"].get("egress")
        if values["mesh"]["sidecar"]["enabled"]:
            assert egress == [{"hosts": values["mesh"]["sidecar"]["egressHosts"]}]
        else:
            assert egress is None, sidecar["metadata"]["name"]
    assert used == {s["metadata"]["name"] for s in sidecars}, "a Sidecar selects no Ray pod"


@pytest.mark.parametrize("values_file", INBOUND_CASES, ids=INBOUND_IDS)
def test_sidecar_protocols_match_the_headless_service(
        render_chart: Renderer, values_file: Path | None) -> None:
    """A second oracle: every port of the headless Service (whose appProtocol tests/
    test_render.py checks against the values) is declared with that same protocol by the
    Sidecar of each role that opens it, so the Service and the listener never disagree."""
    docs = render_chart(*([values_file] if values_file else []))
    services = [s for s in of(docs, "Service") if s["spec"].get("clusterIP") == "None"]
    assert len(services) == 1
    declared = {int(p["port"]): str(p["appProtocol"]).upper() for p in services[0]["spec"]["ports"]}
    sidecars = of(docs, "Sidecar")
    for role, group, labels in ray_pods(docs):
        (sidecar,) = [s for s in sidecars if selects(s, labels)]
        got = ingress_of(sidecar)
        for port in pinned_ports(group) & set(declared):
            assert got.get(port) == declared[port], (role, port, got.get(port), declared[port])


def test_inbound_off_leaves_only_egress(render_chart: Renderer) -> None:
    """mesh.sidecar.inbound=false with egress scoping on: Sidecars with egress and no ingress;
    both off: no Sidecar at all."""
    docs = render_chart(set_values=("mesh.sidecar.inbound=false", "mesh.sidecar.enabled=true"))
    sidecars = of(docs, "Sidecar")
    assert len(sidecars) == 2
    for s in sidecars:
        assert "ingress" not in s["spec"] and s["spec"]["egress"]
    docs = render_chart(set_values=("mesh.sidecar.inbound=false",))
    assert of(docs, "Sidecar") == []


def test_the_oracle_catches_a_dropped_port_and_a_wrong_protocol(render_chart: Renderer) -> None:
    """The checks above can fail: a head Sidecar that loses the GCS, dashboard and client
    ports, and a Sidecar that declares every gRPC port HTTP, are both reported."""
    values = effective_values(None)
    docs = render_chart()
    head = next(s for s in of(docs, "Sidecar") if s["spec"]["workloadSelector"]["labels"]
                .get("ray.io/node-type") == "head")
    p = values["ports"]
    lost = {p["gcs"], p["dashboard"], p["client"]}
    head["spec"]["ingress"] = [e for e in head["spec"]["ingress"]
                               if e["port"]["number"] not in lost]
    problems = ingress_problems(expected_ingress(values, "head"), ingress_of(head))
    assert sorted(problems) == sorted(f"port {port} ({proto}) missing" for port, proto in
                                      expected_ingress(values, "head").items() if port in lost)
    for e in head["spec"]["ingress"]:
        e["port"]["protocol"] = "HTTP"
    problems = ingress_problems(expected_ingress(values, "head"), ingress_of(head))
    assert f"port {p['nodeManager']} declared HTTP, Ray speaks GRPC" in problems
    assert f"port {p['minWorkerPort']} declared HTTP, Ray speaks GRPC" in problems
