"""helm install of every values file on the real API server with the real KubeRay operator.

For each operator version (one control plane each), with Helm 4 and Helm 3, the defaults,
every values-examples/*.yaml and every charts/meshray/ci/*-values.yaml are installed, each in
its own namespace, all at once. Then: the objects read back equal what helm sent, except the
server and CRD defaults named in SERVER_DEFAULTS; the Pods the operator made pass the port
oracle (oracle.py); the operator's own head Service is what REFERENCE §2 says; and helm
uninstall leaves nothing behind.

Every namespace enforces the restricted Pod Security Standard (RESTRICTED, created before the
install): the API server's own PodSecurity admission checks each Pod the operator creates, so
a Pod outside the standard is never created and its release's wait names it. The negative
control (a values file that leaves the standard is refused there) is test_pod_security.py.
"""

from __future__ import annotations

import json
import subprocess
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import yaml
from cases import CASES, RESTRICTED, namespace, value_args
from kube import (
    HELMS,
    Cluster,
    Helm,
    diff_paths,
    get_live,
    pod_security_refusals,
    ray_pods,
    running,
    strip_server_fields,
    wait_for,
)
from kubernetes import client
from oracle import check_cluster
from podcmd import RayStart, ray_start

RELEASE = "mr"
PARAMS = [(h, c) for h in HELMS for c in CASES]
IDS = [f"{h}-{c}" for h, c in PARAMS]

# Fields the API server or a CRD's defaults add to what helm sent, by kind. Each one is named
# here with its reason; any other difference fails test_readback_equals_render.
SERVER_DEFAULTS: dict[str, dict[str, str]] = {
    "Service": {
        ".spec.clusterIP": "allocated (or None kept) by the API server",
        ".spec.clusterIPs": "allocated by the API server",
        ".spec.ipFamilies": "the cluster's single-stack default",
        ".spec.ipFamilyPolicy": "SingleStack default",
        ".spec.internalTrafficPolicy": "Cluster default",
        ".spec.sessionAffinity": "None default",
        ".spec.type": "ClusterIP default",
        ".spec.ports[].protocol": "TCP default",
        ".spec.ports[].targetPort": "defaults to the port",
    },
    "RayCluster": {
        ".spec.workerGroupSpecs[].numOfHosts": "KubeRay CRD default 1",
    },
}


def _manifest(helm: Helm, ns: str) -> list[dict[str, Any]]:
    out = helm.run("get", "manifest", RELEASE, "-n", ns).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def _expected_pods(docs: list[dict[str, Any]]) -> dict[str, int]:
    out = {}
    for d in docs:
        if d["kind"] == "RayCluster":
            n = 1 + sum(
                int(g.get("replicas", 0)) * int(g.get("numOfHosts", 1))
                for g in d["spec"].get("workerGroupSpecs", [])
            )
            out[d["metadata"]["name"]] = n
    return out


class Installed:
    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.results: dict[tuple[str, str], Any] = {}
        self.manifests: dict[tuple[str, str], list[dict[str, Any]]] = {}


@pytest.fixture(scope="session")
def installed(cluster: Cluster) -> Installed:
    inst = Installed(cluster)

    core = client.CoreV1Api(cluster.api)

    def one(key: tuple[str, str]) -> None:
        helm_name, case = key
        helm = Helm(HELMS[helm_name], cluster.kubeconfig)
        ns = namespace(helm_name, case)
        core.create_namespace({"metadata": {"name": ns, "labels": RESTRICTED}})
        res = helm.run(
            "install",
            RELEASE,
            str(helm_chart()),
            "-n",
            ns,
            "--create-namespace",
            *value_args(case, cluster.version),
            check=False,
        )
        inst.results[key] = res
        if res.returncode == 0:
            inst.manifests[key] = _manifest(helm, ns)

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(one, PARAMS))
    for key, docs in inst.manifests.items():
        ns = namespace(*key)
        for name, n in _expected_pods(docs).items():
            try:
                wait_for(
                    f"{n} running pods of {ns}/{name}",
                    lambda ns=ns, name=name, n=n: (
                        len(p := ray_pods(core, ns, name)) == n and running(p)
                    ),
                    timeout=120,
                )
            except AssertionError as e:
                refused = "\n".join(pod_security_refusals(core, ns))
                raise AssertionError(f"{e}\nPodSecurity refusals:\n{refused or '(none)'}") from e
    return inst


def helm_chart() -> str:
    from kube import CHART

    return str(CHART)


def _require(inst: Installed, key: tuple[str, str]) -> list[dict[str, Any]]:
    res = inst.results[key]
    assert res.returncode == 0, f"helm install failed:\n{res.stderr}"
    return inst.manifests[key]


@pytest.mark.parametrize(("helm", "case"), PARAMS, ids=IDS)
def test_install_succeeds(installed: Installed, helm: str, case: str) -> None:
    docs = _require(installed, (helm, case))
    kinds = {d["kind"] for d in docs}
    assert {"RayCluster", "Service", "PeerAuthentication"} <= kinds


@pytest.mark.parametrize(("helm", "case"), PARAMS, ids=IDS)
def test_pods_admitted_under_restricted(installed: Installed, helm: str, case: str) -> None:
    """Every Pod the operator makes from the release was admitted by a namespace that enforces
    the restricted Pod Security Standard: the namespace holds the labels, and the Pods exist."""
    docs = _require(installed, (helm, case))
    core = client.CoreV1Api(installed.cluster.api)
    ns = namespace(helm, case)
    labels = core.read_namespace(ns).metadata.labels or {}
    assert {k: labels.get(k) for k in RESTRICTED} == RESTRICTED
    for name, n in _expected_pods(docs).items():
        assert len(ray_pods(core, ns, name)) == n, f"{ns}/{name}: not every Pod was admitted"


@pytest.mark.parametrize(("helm", "case"), PARAMS, ids=IDS)
def test_readback_equals_render(installed: Installed, helm: str, case: str) -> None:
    docs = _require(installed, (helm, case))
    ns = namespace(helm, case)
    problems = []
    for d in docs:
        live = strip_server_fields(get_live(installed.cluster.api, d, ns))
        changed, added = diff_paths(d, live)
        allowed = SERVER_DEFAULTS.get(d["kind"], {})
        unexplained = sorted({a for a in added if a not in allowed})
        ident = f"{d['kind']}/{d['metadata']['name']}"
        problems += [f"{ident}: {c}" for c in changed]
        problems += [f"{ident}: {a} added by the server (not a named default)" for a in unexplained]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize(("helm", "case"), PARAMS, ids=IDS)
def test_pods_match_services(installed: Installed, helm: str, case: str) -> None:
    docs = _require(installed, (helm, case))
    core = client.CoreV1Api(installed.cluster.api)
    ns = namespace(helm, case)
    for name in _expected_pods(docs):
        problems, starts = check_cluster(core, ns, name)
        assert not problems, "\n".join(problems)
        assert any(rs.head for rs in starts.values())


@pytest.mark.parametrize(("helm", "case"), PARAMS, ids=IDS)
def test_no_init_container(installed: Installed, helm: str, case: str) -> None:
    docs = _require(installed, (helm, case))
    core = client.CoreV1Api(installed.cluster.api)
    ns = namespace(helm, case)
    wanted = {
        c["name"]
        for d in docs
        if d["kind"] == "RayCluster"
        for t in [d["spec"]["headGroupSpec"]["template"]]
        + [g["template"] for g in d["spec"].get("workerGroupSpecs", [])]
        for c in t["spec"].get("initContainers", [])
    }
    for pod in ray_pods(core, ns):
        got = {c.name for c in pod.spec.init_containers or []}
        assert got == wanted, f"{pod.metadata.name}: init containers {got}, chart's {wanted}"


@pytest.mark.parametrize(("helm", "case"), PARAMS, ids=IDS)
def test_operator_head_service(installed: Installed, helm: str, case: str) -> None:
    docs = _require(installed, (helm, case))
    core = client.CoreV1Api(installed.cluster.api)
    ns = namespace(helm, case)
    for rc in (d for d in docs if d["kind"] == "RayCluster"):
        name = rc["metadata"]["name"]
        svc = core.read_namespaced_service(f"{name}-head-svc", ns)
        # With the RayCluster's headService template both operators make it ClusterIP (v1.6.2
        # makes it headless only without one; tests/cluster/test_head_service.py).
        assert svc.spec.cluster_ip != "None"
        head = rc["spec"]["headGroupSpec"]
        want = {p["port"]: p["appProtocol"] for p in head["headService"]["spec"]["ports"]}
        # KubeRay appends the head container's ports, every one tcp (kuberay#1946).
        ray = head["template"]["spec"]["containers"][0]
        want |= {p["containerPort"]: "tcp" for p in ray["ports"]}
        got = {p.port: p.app_protocol for p in svc.spec.ports}
        assert got == want, f"head Service ports {got}, template + head container {want}"


@pytest.mark.parametrize(("helm", "case"), PARAMS, ids=IDS)
def test_no_competing_worker_headless_service(installed: Installed, helm: str, case: str) -> None:
    docs = _require(installed, (helm, case))
    core = client.CoreV1Api(installed.cluster.api)
    ns = namespace(helm, case)
    ours = {d["metadata"]["name"] for d in docs if d["kind"] == "Service"}
    for rc in (d for d in docs if d["kind"] == "RayCluster"):
        name = rc["metadata"]["name"]
        labelled = core.list_namespaced_service(
            ns, label_selector=f"ray.io/headless-worker-svc={name}"
        ).items
        assert [s.metadata.name for s in labelled] == [f"{name}-headless-svc"]
        extra = [
            s.metadata.name
            for s in core.list_namespaced_service(ns).items
            if s.metadata.name not in ours and s.metadata.name != f"{name}-head-svc"
        ]
        assert not extra, f"Services neither ours nor the operator's head Service: {extra}"


# What the values of the `ci-raystartparams` case give `ray start`, per role, as Ray must
# receive them: one argument each, JSON intact (charts/meshray/ci/raystartparams-values.yaml).
QUOTED_PARAMS = {
    True: {"resources": {"CustomA": 1, "accel:v1": 2}, "temp-dir": "/tmp/ray session"},
    False: {"resources": {"CustomB": 0.5}, "num-cpus": "1"},
}


def received(rs: Any) -> dict[str, Any]:
    """The flags of QUOTED_PARAMS as `ray start` receives them (JSON decoded), from its argv."""
    out: dict[str, Any] = {}
    for word in rs.argv[1:]:
        flag, _, value = word[2:].partition("=")
        if flag in QUOTED_PARAMS[rs.head]:
            out[flag] = json.loads(value) if flag == "resources" else value
    return out


@pytest.mark.parametrize("helm", HELMS)
def test_quoted_params_reach_ray_start_whole(installed: Installed, helm: str) -> None:
    """rayStartParams are data, never shell: KubeRay writes `--key=value` into `bash -lc`
    unquoted, and the chart single-quotes values bash would split or interpret. The real
    operator's Pod command, run through bash (podcmd.ray_start), hands each value to `ray start`
    as one argument, JSON intact, on the head and every worker."""
    _require(installed, (helm, "ci-raystartparams"))
    core = client.CoreV1Api(installed.cluster.api)
    starts = [ray_start(core, p) for p in ray_pods(core, namespace(helm, "ci-raystartparams"))]
    assert {rs.head for rs in starts} == {True, False}
    for rs in starts:
        assert received(rs) == QUOTED_PARAMS[rs.head], rs.argv


def test_received_sees_a_split_value() -> None:
    """Negative control: the argv bash makes of an unquoted JSON value (what KubeRay's command
    gives without the chart's quoting) is not what the check above expects."""
    flags = " ".join(f"--{k}={v}" for k, v in (("resources", '{"CustomA": 1, "accel:v1": 2}'),
                                                 ("temp-dir", "/tmp/ray session")))
    argv = subprocess.run(["bash", "-c", f"printf '%s\\0' start --head {flags}"],
                          capture_output=True, text=True, check=True).stdout.split("\0")[:-1]
    rs = RayStart("p", True, {}, {}, argv)
    with pytest.raises(json.JSONDecodeError):
        received(rs)


@pytest.mark.parametrize(("helm", "case"), PARAMS, ids=IDS)
def test_uninstall_leaves_nothing(installed: Installed, helm: str, case: str) -> None:
    docs = _require(installed, (helm, case))
    api = installed.cluster.api
    ns = namespace(helm, case)
    Helm(HELMS[helm], installed.cluster.kubeconfig).run("uninstall", RELEASE, "-n", ns)
    core = client.CoreV1Api(api)
    custom = client.CustomObjectsApi(api)

    def leftovers() -> list[str]:
        left = [f"Pod/{p.metadata.name}" for p in core.list_namespaced_pod(ns).items]
        left += [f"Service/{s.metadata.name}" for s in core.list_namespaced_service(ns).items]
        left += [
            f"ConfigMap/{c.metadata.name}"
            for c in core.list_namespaced_config_map(ns).items
            if c.metadata.name != "kube-root-ca.crt"
        ]
        left += [f"Secret/{s.metadata.name}" for s in core.list_namespaced_secret(ns).items]
        for group, version, plural in (
            ("ray.io", "v1", "rayclusters"),
            ("security.istio.io", "v1", "peerauthentications"),
            ("security.istio.io", "v1", "authorizationpolicies"),
            ("security.istio.io", "v1", "requestauthentications"),
            ("networking.istio.io", "v1", "gateways"),
            ("networking.istio.io", "v1", "virtualservices"),
            ("networking.istio.io", "v1", "sidecars"),
        ):
            items = custom.list_namespaced_custom_object(group, version, ns, plural)["items"]
            left += [f"{plural}/{i['metadata']['name']}" for i in items]
        for ing in client.NetworkingV1Api(api).list_namespaced_ingress(ns).items:
            left.append(f"Ingress/{ing.metadata.name}")
        slices = client.DiscoveryV1Api(api).list_namespaced_endpoint_slice(ns).items
        left += [f"EndpointSlice/{s.metadata.name}" for s in slices]
        return left

    wait_for(f"nothing left in {ns}", lambda: not leftovers(), timeout=60)
    assert docs  # the release existed
