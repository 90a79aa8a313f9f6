"""Render tests: the chart's output, parsed, checked against what the values mean.

The oracles here never call the chart's helpers: expectations come from the values files
(read with PyYAML and merged the way helm merges them) and from the facts in
../shared/REFERENCE.md, written out below as plain tables.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
from chart_support import EXAMPLES, RAYCLUSTER_EXAMPLES, REPO, Renderer, effective_values

# REFERENCE.md §1: the protocol of each port, by the `ray start` flag (or env) that pins it.
HTTP_FLAGS = {"runtime-env-agent-port", "dashboard-agent-listen-port", "metrics-export-port"}
GRPC_FLAGS = {"node-manager-port", "object-manager-port", "dashboard-agent-grpc-port"}
NODE_FLAGS = HTTP_FLAGS | GRPC_FLAGS
HEAD_SERVICE_FLAGS = {"port": "gcs-server", "dashboard-port": "dashboard",
                      "ray-client-server-port": "client"}
HEAD_ENV_PORTS = {"AUTOSCALER_METRIC_PORT": "http", "DASHBOARD_METRIC_PORT": "http"}
# Ray Serve's proxies, on every node with a replica; pinned by env (Serve's constants).
NODE_ENV_PORTS = {"RAY_SERVE_DEFAULT_HTTP_PORT": "http", "RAY_SERVE_DEFAULT_GRPC_PORT": "grpc"}
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
IANA_SVC_NAME = re.compile(r"^(?=.{1,15}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?$")

CASES = [None, *RAYCLUSTER_EXAMPLES]
CASE_IDS = ["defaults", *[p.stem for p in RAYCLUSTER_EXAMPLES]]


def by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d.get("kind") == kind]


def one(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = by_kind(docs, kind)
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def headless(docs: list[dict[str, Any]]) -> dict[str, Any]:
    found = [s for s in by_kind(docs, "Service") if s["spec"].get("clusterIP") == "None"]
    assert len(found) == 1, f"expected one headless Service, found {len(found)}"
    return found[0]


def env_ports(group: dict[str, Any], names: dict[str, str]) -> dict[int, str]:
    """{port: protocol} for the ports a Ray container pins through env."""
    return {int(e["value"]): names[e["name"]] for e in ray_container(group).get("env", [])
            if e["name"] in names}


def groups(rc: dict[str, Any]) -> list[tuple[str, dict[str, Any], bool]]:
    spec = rc["spec"]
    out = [("head", spec["headGroupSpec"], True)]
    out += [(g["groupName"], g, False) for g in spec.get("workerGroupSpecs", [])]
    return out


def worker_ports(params: dict[str, str]) -> list[int]:
    if "worker-port-list" in params:
        return [int(p) for p in params["worker-port-list"].split(",")]
    return list(range(int(params["min-worker-port"]), int(params["max-worker-port"]) + 1))


def ray_container(group: dict[str, Any]) -> dict[str, Any]:
    return group["template"]["spec"]["containers"][0]


def head_service_ports(head: dict[str, Any]) -> dict[int, str]:
    """Port -> name of KubeRay's <cluster>-head-svc: the RayCluster's headService template's
    ports, then the head container's (KubeRay appends them)."""
    tmpl = ((head.get("headService") or {}).get("spec") or {}).get("ports", [])
    out = {p["port"]: p["name"] for p in tmpl}
    out |= {p["containerPort"]: p["name"] for p in ray_container(head).get("ports", [])}
    return out


def consistency_problems(docs: list[dict[str, Any]]) -> list[str]:
    """Port drift between the headless Service and the RayCluster, from the manifests alone."""
    problems: list[str] = []
    rc = one(docs, "RayCluster")
    name = rc["metadata"]["name"]
    services = [s for s in by_kind(docs, "Service") if s["spec"].get("clusterIP") == "None"
                and s["spec"].get("selector", {}).get("ray.io/cluster") == name]
    if len(services) != 1:
        return [f"expected one Service selecting ray.io/cluster={name}, found {len(services)}"]
    svc_ports = {p["port"]: p for p in services[0]["spec"]["ports"]}
    used: set[int] = set()
    for group_name, group, is_head in groups(rc):
        params = group["rayStartParams"]
        needed = [int(params[f]) for f in NODE_FLAGS if f in params] + worker_ports(params)
        if is_head and "dashboard-grpc-port" in params:
            needed.append(int(params["dashboard-grpc-port"]))
        needed += env_ports(group, NODE_ENV_PORTS)
        if is_head:
            needed += env_ports(group, HEAD_ENV_PORTS)
            head_svc = set(head_service_ports(group))
            for flag in HEAD_SERVICE_FLAGS:
                if int(params[flag]) not in head_svc:
                    problems.append(f"head {flag}={params[flag]} is not a head Service port")
        for port in needed:
            used.add(port)
            if port not in svc_ports:
                problems.append(f"{group_name}: port {port} missing from the headless Service")
    for port in svc_ports:
        if port not in used:
            problems.append(f"Service port {port} is used by no group")
    return problems


@pytest.mark.parametrize("values_file", CASES, ids=CASE_IDS)
def test_service_and_raycluster_agree(render_chart: Renderer, values_file: Path | None) -> None:
    docs = render_chart(*([values_file] if values_file else []))
    assert consistency_problems(docs) == []


@pytest.mark.parametrize("values_file", CASES, ids=CASE_IDS)
def test_ports_follow_the_values(render_chart: Renderer, values_file: Path | None) -> None:
    values = effective_values(values_file)
    p = values["ports"]
    docs = render_chart(*([values_file] if values_file else []))
    rc = one(docs, "RayCluster")
    expected_node = {
        "node-manager-port": p["nodeManager"], "object-manager-port": p["objectManager"],
        "runtime-env-agent-port": p["runtimeEnvAgent"],
        "dashboard-agent-grpc-port": p["dashboardAgentGrpc"],
        "dashboard-agent-listen-port": p["dashboardAgentListen"],
        "metrics-export-port": p["metricsExport"],
    }
    expected_workers = p["workerPortList"] or list(
        range(p["minWorkerPort"], p["maxWorkerPort"] + 1))
    old_ray = tuple(int(x) for x in values["ray"]["version"].split(".")[:2]) < (2, 45)
    for group_name, group, is_head in groups(rc):
        params = group["rayStartParams"]
        assert all(isinstance(v, str) for v in params.values()), "rayStartParams must be strings"
        for flag, port in expected_node.items():
            assert params[flag] == str(port), (group_name, flag)
        assert worker_ports(params) == expected_workers, group_name
        head_flags = {"port": p["gcs"], "dashboard-port": p["dashboard"],
                      "ray-client-server-port": p["client"]}
        for flag, port in head_flags.items():
            if is_head:
                assert params[flag] == str(port)
            else:
                assert flag not in params, f"{group_name} must not get head-only {flag}"
        assert ("dashboard-grpc-port" in params) == (is_head and old_ray), group_name
        if is_head and old_ray:
            assert params["dashboard-grpc-port"] == str(p["dashboardGrpc"])
    svc = headless(docs)
    want = set(expected_node.values()) | set(expected_workers)
    if values["serve"]["enabled"]:
        want |= {values["serve"]["httpPort"], values["serve"]["grpcPort"]}
    want |= {p["autoscalerMetrics"], p["dashboardMetrics"]}
    if old_ray:
        want.add(p["dashboardGrpc"])
    assert {sp["port"] for sp in svc["spec"]["ports"]} == want


@pytest.mark.parametrize("values_file", CASES, ids=CASE_IDS)
def test_service_shape_and_protocols(render_chart: Renderer, values_file: Path | None) -> None:
    values = effective_values(values_file)
    docs = render_chart(*([values_file] if values_file else []))
    rc = one(docs, "RayCluster")
    cluster = rc["metadata"]["name"]
    svc = headless(docs)
    assert svc["metadata"]["name"] == f"{cluster}-headless-svc"
    assert svc["spec"]["clusterIP"] == "None"
    assert svc["spec"]["publishNotReadyAddresses"] is True
    assert svc["spec"]["selector"] == {"ray.io/cluster": cluster}
    assert svc["metadata"]["labels"]["ray.io/headless-worker-svc"] == cluster
    assert svc["metadata"]["annotations"]["networking.istio.io/exportTo"] == ",".join(
        values["service"]["exportTo"])
    tls = values["rayTls"]["enabled"]
    grpc = "tls" if tls else "grpc"
    head_params = rc["spec"]["headGroupSpec"]["rayStartParams"]
    by_port = {int(v): k for k, v in head_params.items() if k.endswith("-port") and v.isdigit()}
    head_group = rc["spec"]["headGroupSpec"]
    env_protocol = {**env_ports(head_group, HEAD_ENV_PORTS),
                    **env_ports(head_group, NODE_ENV_PORTS)}
    names = [sp["name"] for sp in svc["spec"]["ports"]]
    assert len(names) == len(set(names)), "Service port names must be unique"
    workers = set(worker_ports(head_params))
    for sp in svc["spec"]["ports"]:
        assert DNS_LABEL.match(sp["name"]) and len(sp["name"]) <= 63, sp["name"]
        assert sp["targetPort"] == sp["port"], "portLevelMtls keys on the workload port"
        flag = by_port.get(sp["port"])
        if sp["port"] in workers:
            want = grpc
        elif flag in HTTP_FLAGS:
            want = "http"
        elif flag in GRPC_FLAGS or flag == "dashboard-grpc-port":
            want = grpc
        else:  # pinned by env: metrics (head), Serve proxies (every node)
            want = env_protocol[sp["port"]]
            want = grpc if want == "grpc" else want
        assert sp["appProtocol"] == want, (sp["name"], sp["appProtocol"], want)
    # KubeRay copies head container ports into <cluster>-head-svc: names must be IANA names.
    for cp in ray_container(rc["spec"]["headGroupSpec"]).get("ports", []):
        assert IANA_SVC_NAME.match(cp["name"]), cp["name"]


@pytest.mark.parametrize("values_file", CASES, ids=CASE_IDS)
def test_head_service_template_declares_each_protocol(render_chart: Renderer,
                                                      values_file: Path | None) -> None:
    """KubeRay builds <cluster>-head-svc from the RayCluster's headService template and marks
    the head container's ports tcp (kuberay#1946): the template must carry the GCS, dashboard,
    client (and Serve) ports under KubeRay's names with Ray's protocol, or callers of the head
    Service reach them as plain TCP (docs/ports.md). Expected from the values alone."""
    values = effective_values(values_file)
    p = values["ports"]
    grpc = "tls" if values["rayTls"]["enabled"] else "grpc"
    # port -> (KubeRay's port name, protocol); Serve's names are the chart's (docs/ports.md)
    want = {p["gcs"]: ("gcs-server", grpc), p["dashboard"]: ("dashboard", "http"),
            p["client"]: ("client", grpc)}
    if values["serve"]["enabled"]:
        want[values["serve"]["httpPort"]] = ("serve", "http")
        want[values["serve"]["grpcPort"]] = ("serve-grpc", grpc)
    rc = one(render_chart(*([values_file] if values_file else [])), "RayCluster")
    ports = rc["spec"]["headGroupSpec"]["headService"]["spec"]["ports"]
    got = {sp["port"]: (sp["name"], sp["appProtocol"]) for sp in ports}
    assert got == want
    assert all(sp["targetPort"] == sp["port"] and sp["protocol"] == "TCP" for sp in ports)


def eval_fqdn(snippet: str, pod_ip: str) -> str:
    """Evaluate node-ip-address the way KubeRay's `bash -lc` container command does."""
    out = subprocess.run(["bash", "-c", f'printf %s "{snippet}"'], env={"MESHRAY_POD_IP": pod_ip},
                         capture_output=True, text=True, check=True)
    return out.stdout


@pytest.mark.parametrize("values_file", CASES, ids=CASE_IDS)
def test_node_ip_address_is_the_pod_fqdn(render_chart: Renderer, values_file: Path | None) -> None:
    values = effective_values(values_file)
    docs = render_chart(*([values_file] if values_file else []), namespace="ray-prod")
    rc = one(docs, "RayCluster")
    svc = headless(docs)["metadata"]["name"]
    domain = values["clusterDomain"]
    for group_name, group, _ in groups(rc):
        snippet = group["rayStartParams"]["node-ip-address"]
        assert "hostname" not in snippet, "hostname -I breaks on dual-stack pods"
        assert eval_fqdn(snippet, "10.244.1.7") == f"10-244-1-7.{svc}.ray-prod.svc.{domain}"
        assert eval_fqdn(snippet, "fd00:10:244::7") == f"fd00-10-244--7.{svc}.ray-prod.svc.{domain}"
        env = {e["name"]: e for e in ray_container(group)["env"]}
        field = env["MESHRAY_POD_IP"]["valueFrom"]["fieldRef"]["fieldPath"]
        assert field == "status.podIP", group_name


@pytest.mark.parametrize("values_file", CASES, ids=CASE_IDS)
def test_peer_authentication_covers_the_cluster(render_chart: Renderer,
                                                 values_file: Path | None) -> None:
    values = effective_values(values_file)
    docs = render_chart(*([values_file] if values_file else []))
    cluster = one(docs, "RayCluster")["metadata"]["name"]
    policies = by_kind(docs, "PeerAuthentication")
    m = values["mtls"]
    assert len(policies) == 1 + len(m["extraPolicies"])
    main = policies[0]
    assert main["apiVersion"] == f"security.istio.io/{values['istio']['apiVersion']}"
    assert main["spec"]["mtls"]["mode"] == m["mode"]
    if m["scope"] == "namespace":
        assert main["metadata"]["name"] == "default" and "selector" not in main["spec"]
    else:
        assert main["spec"]["selector"]["matchLabels"] == {"ray.io/cluster": cluster}
    svc_ports = {sp["port"] for sp in headless(docs)["spec"]["ports"]}
    for port, rule in (main["spec"].get("portLevelMtls") or {}).items():
        assert int(port) in svc_ports and rule["mode"] in {"STRICT", "PERMISSIVE", "DISABLE"}
    for extra, spec in zip(policies[1:], m["extraPolicies"], strict=True):
        assert extra["metadata"]["name"] == spec["name"]
        assert extra["spec"]["selector"]["matchLabels"] == spec["matchLabels"]
        # values.yaml: "mode defaults to PERMISSIVE"
        assert extra["spec"]["mtls"]["mode"] == spec.get("mode", "PERMISSIVE")


@pytest.mark.parametrize(("mode", "want"), [(None, "PERMISSIVE"), ("STRICT", "STRICT"),
                                             ("DISABLE", "DISABLE")])
def test_extra_peer_authentication_mode(render_chart: Renderer, mode: str | None,
                                        want: str) -> None:
    """An extra policy for another workload takes its own mode, PERMISSIVE when it names none
    (values.yaml), never the Ray pods' mode."""
    sets = ("mtls.extraPolicies[0].name=spark", "mtls.extraPolicies[0].matchLabels.app=spark",
            *((f"mtls.extraPolicies[0].mode={mode}",) if mode else ()))
    policies = by_kind(render_chart(set_values=sets), "PeerAuthentication")
    assert [(p["metadata"]["name"], p["spec"]["mtls"]["mode"]) for p in policies[1:]] == [
        ("spark", want)]
    assert policies[0]["spec"]["mtls"]["mode"] == "STRICT"


@pytest.mark.parametrize("values_file", CASES, ids=CASE_IDS)
def test_ingress_backends_exist(render_chart: Renderer, values_file: Path | None) -> None:
    docs = render_chart(*([values_file] if values_file else []))
    rc = one(docs, "RayCluster")
    head_svc = f"{rc['metadata']['name']}-head-svc"
    head_ports = head_service_ports(rc["spec"]["headGroupSpec"])
    for ing in by_kind(docs, "Ingress"):
        for rule in ing["spec"]["rules"]:
            for path in rule["http"]["paths"]:
                backend = path["backend"]["service"]
                assert backend["name"] == head_svc, ing["metadata"]["name"]
                assert backend["port"]["number"] in head_ports, ing["metadata"]["name"]


def test_guide_example_reproduces_the_guide(render_chart: Renderer) -> None:
    """The guide's 17 Service ports and its rayStartParams, with only documented differences."""
    import yaml

    guide = REPO / "tests" / "fixtures" / "guide" / "kuberay-istio-guide.yaml"
    guide_docs = [d for d in yaml.safe_load_all(guide.read_text()) if d]
    guide_svc = one(guide_docs, "Service")
    guide_rc = next(d for d in guide_docs if d["kind"] == "RayCluster")
    docs = render_chart(REPO / "values-examples/kuberay-istio-guide.yaml")
    svc = one(docs, "Service")
    rc = one(docs, "RayCluster")
    assert svc["metadata"]["name"] == guide_svc["metadata"]["name"]
    assert rc["metadata"]["name"] == guide_rc["metadata"]["name"]
    assert rc["spec"]["rayVersion"] == guide_rc["spec"]["rayVersion"]
    ours = {sp["name"]: sp for sp in svc["spec"]["ports"]}
    assert len(guide_svc["spec"]["ports"]) == 17
    for gp in guide_svc["spec"]["ports"]:
        assert ours[gp["name"]]["port"] == gp["port"], gp["name"]
        if gp["name"] == "runtime-env-agent-port":  # documented: aiohttp, so http, not grpc
            assert gp["appProtocol"] == "grpc" and ours[gp["name"]]["appProtocol"] == "http"
        else:
            assert ours[gp["name"]]["appProtocol"] == gp["appProtocol"], gp["name"]
    documented_extra = {"dashboard-grpc-port", "autoscaler-metrics-port", "dashboard-metrics-port"}
    assert set(ours) - {gp["name"] for gp in guide_svc["spec"]["ports"]} == documented_extra
    guide_groups = [guide_rc["spec"]["headGroupSpec"], *guide_rc["spec"]["workerGroupSpecs"]]
    for ours_g, guide_g in zip(groups(rc), guide_groups, strict=True):
        params = ours_g[1]["rayStartParams"]
        for flag, value in guide_g["rayStartParams"].items():
            if flag == "node-ip-address":  # documented: built from POD_IP, not hostname -I
                suffix = value.split(")", 1)[1]
                assert params[flag].endswith(suffix), (params[flag], suffix)
            else:
                assert params[flag] == value, (ours_g[0], flag)
    assert [g["groupName"] for g in rc["spec"]["workerGroupSpecs"]] == ["small-group"]


def test_consistency_check_catches_a_removed_port(render_chart: Renderer) -> None:
    """The oracle above can fail: drop one pinned port and one worker port from the Service."""
    for victim in (6381, 10007):
        docs = render_chart()
        svc = one(docs, "Service")
        svc["spec"]["ports"] = [p for p in svc["spec"]["ports"] if p["port"] != victim]
        problems = consistency_problems(docs)
        assert any(f"port {victim} missing" in p for p in problems), problems


def test_consistency_check_catches_a_stray_service_port(render_chart: Renderer) -> None:
    docs = render_chart()
    one(docs, "Service")["spec"]["ports"].append(
        {"name": "p20000", "port": 20000, "appProtocol": "grpc"})
    assert "Service port 20000 is used by no group" in consistency_problems(docs)


def test_worker_port_list_replaces_the_range(render_chart: Renderer) -> None:
    docs = render_chart(set_values=("ports.workerPortList={12000,12002,12004}",))
    for _, group, _ in groups(one(docs, "RayCluster")):
        params = group["rayStartParams"]
        assert params["worker-port-list"] == "12000,12002,12004"
        assert "min-worker-port" not in params and "max-worker-port" not in params
    assert consistency_problems(docs) == []


def test_worker_defaults_and_group_overrides(render_chart: Renderer) -> None:
    docs = render_chart(REPO / "values-examples/multi-group.yaml")
    specs = {g["groupName"]: g for g in one(docs, "RayCluster")["spec"]["workerGroupSpecs"]}
    assert set(specs) == {"cpu", "highmem"}
    assert specs["highmem"]["replicas"] == 0  # a zero override is kept, not defaulted
    assert ray_container(specs["highmem"])["resources"]["limits"]["memory"] == "32Gi"
    assert ray_container(specs["cpu"])["resources"]["limits"]["cpu"] == "2"
    assert specs["highmem"]["template"]["spec"]["nodeSelector"]


def test_passthrough_pod_fields(render_chart: Renderer) -> None:
    docs = render_chart(set_values=(
        "head.serviceAccountName=ray-sa", "serviceAccount.acknowledgeShared=true",
        "head.nodeSelector.disk=ssd",
        "head.env[0].name=FOO", "head.env[0].value=bar",
        "head.podSecurityContext.fsGroup=100",
        "head.annotations.team=ml",
        "workerDefaults.tolerations[0].key=gpu", "workerDefaults.tolerations[0].operator=Exists",
        "ray.imagePullSecrets={regcred}",
    ))
    rc = one(docs, "RayCluster")
    head = rc["spec"]["headGroupSpec"]["template"]
    assert head["spec"]["serviceAccountName"] == "ray-sa"
    assert head["spec"]["nodeSelector"] == {"disk": "ssd"}
    assert head["spec"]["securityContext"]["fsGroup"] == 100
    assert head["spec"]["imagePullSecrets"] == [{"name": "regcred"}]
    assert head["metadata"]["annotations"]["team"] == "ml"
    assert {"name": "FOO", "value": "bar"} in head["spec"]["containers"][0]["env"]
    worker = rc["spec"]["workerGroupSpecs"][0]["template"]
    assert worker["spec"]["tolerations"] == [{"key": "gpu", "operator": "Exists"}]


def test_sync_waves_order_the_objects(render_chart: Renderer) -> None:
    """Argo CD: Service and PeerAuthentication before the RayCluster, Ingress after."""
    docs = render_chart(REPO / "values-examples/dashboard-ingress-auth.yaml")
    wave = {d["kind"]: int(d["metadata"]["annotations"]["argocd.argoproj.io/sync-wave"])
            for d in docs}
    assert wave["Service"] < wave["RayCluster"] < wave["Ingress"]
    assert wave["PeerAuthentication"] < wave["RayCluster"]


def test_rendering_is_deterministic(render_chart_text: Any) -> None:
    for values_file in EXAMPLES:
        assert render_chart_text(values_file) == render_chart_text(values_file), values_file.name


def test_many_groups_and_a_full_worker_range_stay_consistent(render_chart: Renderer) -> None:
    """The size `make bench` times: 10 worker groups x 200 worker ports (the default ceiling).
    The port map is built once per render and shared by every group: each still gets it all."""
    sets = ("ports.minWorkerPort=11000", "ports.maxWorkerPort=11199",
            *(f"workerGroups.g{i}.replicas=1" for i in range(10)))
    docs = render_chart(set_values=sets)
    assert consistency_problems(docs) == []
    rc = one(docs, "RayCluster")
    assert [g["groupName"] for g in rc["spec"]["workerGroupSpecs"]] == [f"g{i}" for i in range(10)]
    svc_ports = [p["port"] for p in headless(docs)["spec"]["ports"]]
    assert svc_ports[-200:] == list(range(11000, 11200))
    for name, group, _ in groups(rc):
        assert worker_ports(group["rayStartParams"]) == list(range(11000, 11200)), name
