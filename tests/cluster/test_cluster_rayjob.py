"""The chart's RayJob on the real KubeRay operators (v1.1.0 and v1.6.2): what each one creates.

A RayJob release renders the RayJob, its mesh objects (headless Service, policies, Sidecars)
selecting `meshray.io/cluster: <rayjob>`, and the submitter's ServiceAccount. The operator then
names the job's RayCluster itself, waits for it to be Ready, and (K8sJobMode) creates the
submitter as a batch Job from the chart's pod template. Everything below is read back from the
live API server; the kubelet stand-in plays every Pod (no container runs), so the RayJob never
sees a dashboard: how it ends is the e2e suite's part, here its status is recorded.

Per operator version, on one control plane, all releases installed at once:
- `values-examples/rayjob.yaml` with Helm 4 (`rj-helm4`, its Pods held back by the kubelet for
  a while to show the submitter Job waits for a Ready cluster) and Helm 3 (`rj-helm3`);
- two RayJobs in one namespace (`rj-two`): every selector matches its own job's Pods only;
- a port-map upgrade with Helm 4 (`rj-upgrade`) and Helm 3 (`rj-upgrade3`), HTTPMode
  (`rj-http`), InteractiveMode and SidecarMode (v1.6.2 only), and the clusterSelector example
  beside a RayCluster release (`rj-existing`).
Measured facts (names, labels, the submitter's command, timings) are written to
`<run dir>/rayjob-facts.json` beside the components' logs.
"""

from __future__ import annotations

import copy
import fnmatch
import json
import re
import shlex
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from cases import (
    OPERATOR_SETS,
    RAYJOB_CASES,
    RAYJOB_OPERATOR_SETS,
    RESTRICTED,
    operator_group,
)
from kube import (
    CHART,
    HELMS,
    Cluster,
    Helm,
    LiveService,
    diff_paths,
    get_live,
    live_services,
    ray_pods,
    running,
    strip_server_fields,
    wait_for,
)
from kubernetes import client
from kubernetes.client.rest import ApiException
from oracle import check_cluster
from test_install import SERVER_DEFAULTS

EXAMPLE = RAYJOB_CASES["ex-rayjob"]
EXISTING = RAYJOB_CASES["ex-rayjob-existing-cluster"]
JOB = str(yaml.safe_load(EXAMPLE.read_text())["clusterName"])
EXISTING_JOB = str(yaml.safe_load(EXISTING.read_text())["clusterName"])
SHARED = str(yaml.safe_load(EXISTING.read_text())["rayJob"]["clusterSelector"]["ray.io/cluster"])
# k8s.io/apimachinery/pkg/util/rand.String: KubeRay's suffix for the job's RayCluster.
RANDOM5 = "[bcdfghjklmnpqrstvwxz2456789]{5}"
# What the operator appends to the RayJob's name (kuberay util.go:GenerateRayClusterName).
CLUSTER_INFIX = {"v1.1.0": "-raycluster-", "v1.6.2": "-"}
HOLD_SECONDS = 8.0  # > 2 of the operator's 3 s requeues while the cluster is not Ready
FINALIZER = "ray.io/rayjob-finalizer"
TRUST_DOMAIN = "cluster.local"
RESTRICTED_CONTAINER = {
    "runAsNonRoot": True,
    "runAsUser": 1000,
    "runAsGroup": 100,
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}
RESTRICTED_POD = {
    "runAsNonRoot": True,
    "fsGroup": 100,
    "seccompProfile": {"type": "RuntimeDefault"},
}
NO_SUBMITTER_CONFIG = ("--set-json", "rayJob.submitterConfig={}")

# Fields the API server, a CRD default or the operator add to what helm sent, by kind; any
# other difference fails test_readback_equals_render.
ADDED: dict[str, dict[str, str]] = {
    "Service": SERVER_DEFAULTS["Service"],
    "RayJob": {
        ".metadata.finalizers": f"{FINALIZER}, added by the operator (New state)",
        ".spec.backoffLimit": "KubeRay >= 1.2 CRD default 0 (the chart leaves 0 out)",
        # The operator adds its finalizer with a full Update of the RayJob, which writes the Go
        # zero values of what a manifest leaves out (test_helm4_upgrades_agree_...).
        ".spec.rayClusterSpec.headGroupSpec.headService.metadata": "{} from the operator's Update",
        ".spec.rayClusterSpec.headGroupSpec.headService.status": "{loadBalancer: {}}, same",
        ".spec.rayClusterSpec.workerGroupSpecs[].scaleStrategy": "{} from the operator's Update",
        ".spec.rayClusterSpec.workerGroupSpecs[].numOfHosts": "KubeRay CRD default 1",
    },
}


@dataclass
class Release:
    """One helm release of the module: its namespace, name, helm binary and values."""

    ns: str
    name: str
    job: str  # the RayJob's name (clusterName); for a RayCluster release, the cluster's
    args: tuple[str, ...]
    helm: str = "helm4"
    hold: bool = False  # the kubelet holds the namespace's Pods back after install


def releases(version: str) -> dict[str, Release]:
    base = ("-f", str(EXAMPLE), *RAYJOB_OPERATOR_SETS.get(version, ()))
    out = {
        "main": Release("rj-helm4", "rj", JOB, base, hold=True),
        "helm3": Release("rj-helm3", "rj", JOB, base, helm="helm3"),
        "job-a": Release("rj-two", "job-a", "job-a", (*base, "--set", "clusterName=job-a")),
        "job-b": Release("rj-two", "job-b", "job-b", (*base, "--set", "clusterName=job-b")),
        "upgrade": Release("rj-upgrade", "rj", JOB, base),
        "upgrade3": Release("rj-upgrade3", "rj", JOB, base, helm="helm3"),
        "http": Release(
            "rj-http",
            "rj",
            JOB,
            (*base, "--set", "rayJob.submissionMode=HTTPMode", *NO_SUBMITTER_CONFIG),
        ),
        "shared": Release(
            "rj-existing",
            "shared",
            SHARED,
            (
                "--set",
                f"clusterName={SHARED}",
                *[a for s in OPERATOR_SETS.get(version, ()) for a in ("--set", s)],
            ),
        ),
        "existing": Release(
            "rj-existing",
            "onshared",
            EXISTING_JOB,
            ("-f", str(EXISTING), *RAYJOB_OPERATOR_SETS.get(version, ())),
        ),
    }
    if version != "v1.1.0":  # InteractiveMode and SidecarMode came with KubeRay 1.3 and 1.5
        out["interactive"] = Release(
            "rj-interactive",
            "rj",
            JOB,
            (*base, "--set", "rayJob.submissionMode=InteractiveMode", *NO_SUBMITTER_CONFIG),
        )
        out["sidecar"] = Release("rj-sidecar", "rj", JOB, (*base, *SIDECAR_ARGS))
    return out


# SidecarMode needs podSecurity off (the chart refuses it otherwise); the groups' own contexts
# are restricted, so the operator's submitter container is the only unrestricted one.
SIDECAR_ARGS = (
    "--set",
    "rayJob.submissionMode=SidecarMode",
    *NO_SUBMITTER_CONFIG,
    "--set",
    "podSecurity.enabled=false",
    "--set",
    "podSecurity.acknowledgeUnrestricted=true",
    "--set-json",
    f"head.securityContext={json.dumps(RESTRICTED_CONTAINER)}",
    "--set-json",
    f"head.podSecurityContext={json.dumps(RESTRICTED_POD)}",
    "--set-json",
    f"workerDefaults.securityContext={json.dumps(RESTRICTED_CONTAINER)}",
    "--set-json",
    f"workerDefaults.podSecurityContext={json.dumps(RESTRICTED_POD)}",
)


@dataclass
class Env:
    """The module's control plane, its releases and what was measured."""

    cluster: Cluster
    rels: dict[str, Release]
    results: dict[str, Any] = field(default_factory=dict)
    facts: dict[str, Any] = field(default_factory=dict)
    samples: list[dict[str, Any]] = field(default_factory=list)
    t0: float = field(default_factory=time.monotonic)

    @property
    def core(self) -> client.CoreV1Api:
        return client.CoreV1Api(self.cluster.api)

    @property
    def batch(self) -> client.BatchV1Api:
        return client.BatchV1Api(self.cluster.api)

    @property
    def custom(self) -> client.CustomObjectsApi:
        return client.CustomObjectsApi(self.cluster.api)

    def helm(self, key: str) -> Helm:
        return Helm(HELMS[self.rels[key].helm], self.cluster.kubeconfig)

    def fact(self, key: str, name: str, value: Any) -> None:
        self.facts.setdefault(key, {})[name] = value

    def operator_log(self) -> str:
        log = Path(self.cluster.cp.logs) / f"kuberay-operator-{self.cluster.version}.log"
        return log.read_text(errors="replace")

    # ---- live objects of one release ------------------------------------------------------
    def rayjob(self, key: str) -> dict[str, Any]:
        r = self.rels[key]
        return dict(
            self.custom.get_namespaced_custom_object("ray.io", "v1", r.ns, "rayjobs", r.job)
        )

    def raycluster(self, ns: str, name: str) -> dict[str, Any] | None:
        try:
            return dict(
                self.custom.get_namespaced_custom_object("ray.io", "v1", ns, "rayclusters", name)
            )
        except ApiException as e:
            if e.status == 404:
                return None
            raise

    def cluster_name(self, key: str, timeout: float = 60) -> str:
        """The RayCluster the operator created for the RayJob (status.rayClusterName)."""
        r = self.rels[key]

        def name() -> str | None:
            got = self.rayjob(key).get("status", {}).get("rayClusterName")
            return str(got) if got and self.raycluster(r.ns, got) else None

        return wait_for(f"{r.ns}/{r.job}'s RayCluster", name, timeout=timeout)

    def running_pods(self, key: str, n: int = 2, timeout: float = 90) -> tuple[str, list[Any]]:
        r = self.rels[key]
        name = self.cluster_name(key)
        pods = wait_for(
            f"{n} running pods of {r.ns}/{name}",
            lambda: p if len(p := ray_pods(self.core, r.ns, name)) == n and running(p) else None,
            timeout=timeout,
        )
        return name, pods

    def job(self, key: str) -> Any | None:
        r = self.rels[key]
        try:
            return self.batch.read_namespaced_job(r.job, r.ns)
        except ApiException as e:
            if e.status == 404:
                return None
            raise

    def submitter_pod(self, key: str, timeout: float = 60) -> Any:
        r = self.rels[key]

        def pod() -> Any:
            items = self.core.list_namespaced_pod(
                r.ns, label_selector=f"batch.kubernetes.io/job-name={r.job}"
            ).items
            return items[0] if len(items) == 1 and items[0].status.pod_ip else None

        return wait_for(f"the running submitter Pod of {r.ns}/{r.job}", pod, timeout=timeout)

    def manifest(self, key: str) -> list[dict[str, Any]]:
        r = self.rels[key]
        out = self.helm(key).run("get", "manifest", r.name, "-n", r.ns).stdout
        return [d for d in yaml.safe_load_all(out) if d]

    def elapsed(self) -> float:
        return round(time.monotonic() - self.t0, 1)


def _install(env: Env, key: str) -> None:
    r = env.rels[key]
    # Every namespace enforces restricted Pod Security (the API server's admission checks the
    # operator's Pods and the Job controller's submitter Pods), except SidecarMode's, whose
    # operator-made submitter container has no securityContext (test_sidecar_mode).
    labels = {} if "podSecurity.enabled=false" in r.args else RESTRICTED
    try:
        env.core.create_namespace({"metadata": {"name": r.ns, "labels": labels}})
    except ApiException as e:
        if e.status != 409:  # a namespace two releases share
            raise
    if r.hold:
        env.cluster.kubelet.hold(r.ns)
    started = time.monotonic()
    env.results[key] = env.helm(key).run(
        "install", r.name, str(CHART), "-n", r.ns, "--create-namespace", *r.args, check=False
    )
    env.fact(key, "helm install seconds", round(time.monotonic() - started, 1))
    if r.hold and env.results[key].returncode == 0:
        _watch_held(env, key)
    elif r.hold:
        env.cluster.kubelet.release(r.ns)  # nothing to watch: play the namespace again


def _watch_held(env: Env, key: str) -> None:
    """With the namespace's Pods held (not bound, not Ready), sample the RayCluster's state and
    the submitter Job for HOLD_SECONDS, then let the kubelet play them and sample on until the
    Job exists: the record test_submitter_waits_for_a_ready_cluster reads."""
    r = env.rels[key]
    t0 = time.monotonic()
    name = ""

    def sample(phase: str) -> dict[str, Any]:
        t = round(time.monotonic() - t0, 2)  # when this look began
        job = env.job(key) is not None  # read first: a Job seen, the cluster read after it
        rc = env.raycluster(r.ns, name) or {}
        s = {
            "t": t,
            "phase": phase,
            "cluster_state": rc.get("status", {}).get("state"),
            "job": job,
            "pods": len(ray_pods(env.core, r.ns, name)),
            "rayjob": env.rayjob(key).get("status", {}).get("jobDeploymentStatus"),
        }
        env.samples.append(s)
        return s

    try:
        name = env.cluster_name(key)
        env.fact(
            key, "seconds from helm install to the RayCluster", round(time.monotonic() - t0, 1)
        )
        held_until = time.monotonic() + HOLD_SECONDS
        while time.monotonic() < held_until:
            sample("held")
            time.sleep(0.25)
        sample("held")  # the last look before the kubelet plays the Pods
    finally:
        env.cluster.kubelet.release(r.ns)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not sample("played")["job"]:
        time.sleep(0.1)


@pytest.fixture(scope="module")
def env(cluster: Cluster) -> Iterator[Env]:
    e = Env(cluster, releases(cluster.version))
    with ThreadPoolExecutor(len(e.rels)) as pool:
        list(pool.map(lambda k: _install(e, k), e.rels))
    e.fact("all", "seconds to install every release", e.elapsed())
    yield e
    out = cluster.cp.workdir / "rayjob-facts.json"
    out.write_text(
        json.dumps(
            {"operator": cluster.version, **e.facts, "held samples": e.samples},
            indent=1,
            default=str,
        )
    )
    print(f"\nRayJob facts of KubeRay {cluster.version}: {out}")
    for key, r in e.rels.items():  # leave the control plane as found for later modules
        if key in e.results and e.results[key].returncode == 0:
            e.helm(key).run("uninstall", r.name, "-n", r.ns, check=False)


def _ok(env: Env, key: str) -> Release:
    if key not in env.rels:
        raise AssertionError(f"{key} is not installed on KubeRay {env.cluster.version}")
    res = env.results[key]
    assert res.returncode == 0, f"helm install {key} failed:\n{res.stderr}"
    return env.rels[key]


# ---- selectors, EndpointSlices and the AuthorizationPolicy check ------------------------------
def pod_selector(obj: dict[str, Any]) -> dict[str, str] | None:
    """The labels a chart object selects Pods by (None: it selects no Pods)."""
    spec = obj.get("spec") or {}
    kind = obj["kind"]
    if kind == "Service":
        return dict(spec.get("selector") or {}) or None
    if kind in ("AuthorizationPolicy", "PeerAuthentication", "RequestAuthentication"):
        return dict((spec.get("selector") or {}).get("matchLabels") or {}) or None
    if kind == "Sidecar":
        return dict((spec.get("workloadSelector") or {}).get("labels") or {}) or None
    if kind == "NetworkPolicy":
        return dict((spec.get("podSelector") or {}).get("matchLabels") or {})
    return None


def matches(selector: dict[str, str], pod: Any) -> bool:
    labels = pod.metadata.labels or {}
    return all(labels.get(k) == v for k, v in selector.items())


def selector_problems(objs: Iterable[dict[str, Any]], pods: list[Any], own: set[str]) -> list[str]:
    """Each object that selects Pods must select some of ``own`` (its job's Ray Pods) and
    nothing else among ``pods`` (every Pod of the namespace)."""
    problems = []
    for obj in objs:
        sel = pod_selector(obj)
        if sel is None:
            continue
        got = {p.metadata.name for p in pods if matches(sel, p)}
        ident = f"{obj['kind']}/{obj['metadata']['name']}"
        if not got & own:
            problems.append(f"{ident} selects none of its job's Pods ({sel})")
        if got - own:
            problems.append(f"{ident} also selects {sorted(got - own)} ({sel})")
    return problems


def slice_pods(api: Any, ns: str, service: str) -> set[str]:
    slices = (
        client.DiscoveryV1Api(api)
        .list_namespaced_endpoint_slice(ns, label_selector=f"kubernetes.io/service-name={service}")
        .items
    )
    return {e.target_ref.name for s in slices for e in (s.endpoints or []) if e.target_ref}


def wait_slices(api: Any, ns: str, service: str, want: set[str]) -> None:
    """Wait until the Service's EndpointSlices list exactly the Pods ``want``."""
    last: set[str] = set()

    def listed() -> bool:
        nonlocal last
        last = slice_pods(api, ns, service)
        return last == want

    try:
        wait_for(f"EndpointSlices of {service} listing {sorted(want)}", listed, timeout=30)
    except AssertionError as e:
        raise AssertionError(f"{e}; listed {sorted(last)}") from None


def principal_matches(pattern: str, principal: str) -> bool:
    """Istio's principal match: exact, `*`, a `prefix*` or a `*suffix`."""
    return fnmatch.fnmatchcase(principal, pattern) if "*" in pattern else pattern == principal


def admitted_ports(policy: dict[str, Any], principal: str, ports: Iterable[int]) -> set[int]:
    """The ports among ``ports`` on which an ALLOW AuthorizationPolicy admits a peer that
    presents ``principal`` (mTLS, no JWT). A rule admits when one of its sources matches (none
    given: any source) and one of its operations names the port (none given: every port);
    `when` conditions are taken as met, which can only admit more."""
    if policy.get("spec", {}).get("action", "ALLOW") != "ALLOW":
        return set()
    out: set[int] = set()
    for rule in policy.get("spec", {}).get("rules") or []:
        sources = [f.get("source") or {} for f in rule.get("from") or [{}]]
        if not any(_source_matches(s, principal) for s in sources):
            continue
        for port in ports:
            ops = [t.get("operation") or {} for t in rule.get("to") or [{}]]
            if any(_operation_port(op, port) for op in ops):
                out.add(port)
    return out


def _source_matches(source: dict[str, Any], principal: str) -> bool:
    if source.get("requestPrincipals"):  # needs a JWT the submitter does not send
        return False
    ns = principal.split("/ns/", 1)[1].split("/", 1)[0] if "/ns/" in principal else ""
    checks = [
        ("principals", principal, True),
        ("notPrincipals", principal, False),
        ("namespaces", ns, True),
        ("notNamespaces", ns, False),
    ]
    for key, value, positive in checks:
        if key in source:
            hit = any(principal_matches(p, value) for p in source[key])
            if hit != positive:
                return False
    return True


def _operation_port(op: dict[str, Any], port: int) -> bool:
    if "ports" in op and str(port) not in {str(p) for p in op["ports"]}:
        return False
    return not ("notPorts" in op and str(port) in {str(p) for p in op["notPorts"]})


def submitter_admission(
    policy: dict[str, Any], submitter: Any, head: Any, services: list[LiveService], ns: str
) -> list[str]:
    """The live submitter Pod's identity must be admitted by the live AuthorizationPolicy on
    the head's dashboard port and on no other port of the Services selecting the head Pod;
    the policy must apply to the head Pod. Returns the problems."""
    problems = []
    principal = f"{TRUST_DOMAIN}/ns/{ns}/sa/{submitter.spec.service_account_name or 'default'}"
    sel = pod_selector(policy) or {}
    if not matches(sel, head):
        problems.append(f"the policy's selector {sel} does not select the head Pod")
    selecting = [s for s in services if s.selects(head)]
    dashboard = {
        info["port"] for s in selecting for info in s.ports.values() if info["name"] == "dashboard"
    }
    ports = {info["port"] for s in selecting for info in s.ports.values()} | dashboard
    got = admitted_ports(policy, principal, ports)
    if not dashboard or not dashboard <= got:
        problems.append(f"{principal} is not admitted on the dashboard port {sorted(dashboard)}")
    if got - dashboard:
        problems.append(f"{principal} is also admitted on {sorted(got - dashboard)}")
    return problems


def _head(pods: list[Any]) -> Any:
    return next(p for p in pods if (p.metadata.labels or {}).get("ray.io/node-type") == "head")


def _policy(env: Env, ns: str, cluster_name: str) -> dict[str, Any]:
    return dict(
        env.custom.get_namespaced_custom_object(
            "security.istio.io", "v1", ns, "authorizationpolicies", f"{cluster_name}-ray"
        )
    )


def test_xdist_groups_by_operator(request: pytest.FixtureRequest, operator: str) -> None:
    """The scheduler of conftest puts every test of one operator version in one group, read
    from the real node id (this test's own, and the shapes the suite's ids take), so one worker
    runs one control plane and this module's tests share it in order. The control: xdist's
    own loadgroup split of such an id (pytest 9.2 leaves no `@group` suffix) gives every test
    a scope of its own."""
    from xdist.scheduler import LoadGroupScheduling  # type: ignore[import-untyped]

    group = f"kuberay-{operator}"
    assert operator_group(request.node.nodeid) == group, request.node.nodeid
    ids = [f"t.py::t[{operator}]", f"t.py::t[{operator}-helm4-ex-rayjob]", f"t.py::t[x-{operator}]"]
    assert {operator_group(i) for i in ids} == {group}
    assert operator_group("t.py::test_received_sees_a_split_value") is None
    assert LoadGroupScheduling._split_scope(None, request.node.nodeid) == request.node.nodeid


# ---- 1. install, the operator's RayCluster, its Pods, the oracle ------------------------------
@pytest.mark.parametrize("key", ["main", "helm3"])
def test_readback_equals_render(env: Env, key: str) -> None:
    """helm install of the example succeeds (Helm 4 and Helm 3) and every object read back is
    what helm sent, but for the named server, CRD and operator additions (ADDED)."""
    r = _ok(env, key)
    docs = env.manifest(key)
    assert {d["kind"] for d in docs} >= {
        "RayJob",
        "Service",
        "ServiceAccount",
        "AuthorizationPolicy",
        "PeerAuthentication",
    }
    problems = []
    for d in docs:
        live = strip_server_fields(get_live(env.cluster.api, d, r.ns))
        changed, added = diff_paths(d, live)
        allowed = ADDED.get(d["kind"], {})
        ident = f"{d['kind']}/{d['metadata']['name']}"
        problems += [f"{ident}: {c}" for c in changed]
        problems += [f"{ident}: {a} added (not named)" for a in sorted(set(added) - set(allowed))]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("key", ["main", "helm3"])
def test_operator_creates_the_raycluster(env: Env, key: str) -> None:
    """The operator's RayCluster: its generated name, the labels it copies and adds, the Pods'
    labels, the headless Service's EndpointSlices, and the Pod oracle on the job's Pods."""
    r = _ok(env, key)
    v = env.cluster.version
    name, pods = env.running_pods(key)
    assert re.fullmatch(rf"{re.escape(r.job)}{CLUSTER_INFIX[v]}{RANDOM5}", name), name
    rc = env.raycluster(r.ns, name)
    assert rc is not None
    labels = rc["metadata"].get("labels") or {}
    assert labels.get("ray.io/originated-from-cr-name") == r.job, labels
    assert labels.get("ray.io/originated-from-crd") == "RayJob", labels
    assert ("ray.io/job-submission-mode" in labels) == (v != "v1.1.0"), labels
    rj = env.rayjob(key)
    copied = rj["metadata"].get("labels") or {}
    assert all(labels.get(k) == val for k, val in copied.items()), (labels, copied)
    owner = rc["metadata"]["ownerReferences"]
    assert [(o["kind"], o["name"], o.get("controller")) for o in owner] == [
        ("RayJob", r.job, True)
    ], owner
    env.fact(
        key,
        "RayCluster",
        {"name": name, "labels": labels, "annotations": rc["metadata"].get("annotations")},
    )

    roles = sorted(str((p.metadata.labels or {}).get("ray.io/node-type")) for p in pods)
    assert roles == ["head", "worker"], roles
    for p in pods:
        pl = p.metadata.labels or {}
        assert pl.get("meshray.io/cluster") == r.job, pl
        assert pl.get("ray.io/cluster") == name, pl
    env.fact(key, "Pod labels", {p.metadata.name: p.metadata.labels for p in pods})

    headless = f"{r.job}-headless-svc"
    wait_slices(env.cluster.api, r.ns, headless, {p.metadata.name for p in pods})

    problems, starts = check_cluster(env.core, r.ns, name)
    assert not problems, "\n".join(problems)
    assert {rs.head for rs in starts.values()} == {True, False}
    for rs in starts.values():
        host = rs.params["node-ip-address"]
        assert host.split(".", 2)[1] == headless, host  # the chart's headless Service
    env.fact(key, "seconds to 2 running Pods (from the module start)", env.elapsed())


def test_operator_head_services(env: Env) -> None:
    """The head Services that select the job's head Pod: the RayCluster's own
    `<cluster>-head-svc` (from the chart's headService template), and in v1.6.2 also
    `<rayjob>-head-svc`, which the operator copies from it once the job runs. The copy must
    declare the same ports with the same appProtocols (two Services that disagree on a port's
    protocol are a conflict for Istio)."""
    r = _ok(env, "main")
    name, pods = env.running_pods("main")
    head = _head(pods)
    svc = wait_for(
        "the cluster's head Service",
        lambda: env.core.read_namespaced_service(f"{name}-head-svc", r.ns),
    )
    ports = {p.port: (p.name, p.app_protocol) for p in svc.spec.ports}
    env.fact(
        "main",
        "cluster head Service",
        {"name": svc.metadata.name, "ports": ports, "clusterIP": svc.spec.cluster_ip},
    )
    assert ports[8265] == ("dashboard", "http"), ports
    copy_name = f"{r.job}-head-svc"
    if env.cluster.version == "v1.1.0":
        with pytest.raises(ApiException) as e:
            env.core.read_namespaced_service(copy_name, r.ns)
        assert e.value.status == 404
        env.fact("main", "RayJob head Service", None)
        return
    job_svc = wait_for(
        f"the operator's {copy_name}", lambda: env.core.read_namespaced_service(copy_name, r.ns)
    )
    job_ports = {p.port: (p.name, p.app_protocol) for p in job_svc.spec.ports}
    assert job_ports == ports
    assert matches(job_svc.spec.selector, head)
    env.fact(
        "main",
        "RayJob head Service",
        {
            "name": copy_name,
            "labels": job_svc.metadata.labels,
            "annotations": job_svc.metadata.annotations,
            "selector": job_svc.spec.selector,
            "clusterIP": job_svc.spec.cluster_ip,
            "ports": job_ports,
        },
    )


# ---- 2. the submitter -----------------------------------------------------------------------
def test_submitter_waits_for_a_ready_cluster(env: Env) -> None:
    """While the kubelet held the job's Pods (not Ready), the RayCluster was not Ready and no
    submitter Job existed, across several of the operator's requeues; the Job appeared only
    once the RayCluster was Ready."""
    _ok(env, "main")
    held = [s for s in env.samples if s["phase"] == "held"]
    assert held and held[-1]["t"] - held[0]["t"] >= HOLD_SECONDS - 1, held
    assert all(s["cluster_state"] != "ready" and not s["job"] for s in held), held
    assert any(s["pods"] >= 1 for s in held), "the operator created no Pods while held"
    played = [s for s in env.samples if s["phase"] == "played"]
    first = next((s for s in played if s["job"]), None)
    assert first is not None, played
    assert first["cluster_state"] == "ready", first
    ready = next(s for s in played if s["cluster_state"] == "ready")
    env.fact(
        "main",
        "submitter Job after the cluster was Ready (observed, s)",
        round(first["t"] - ready["t"], 2),
    )
    env.fact("main", "RayJob states while held", sorted({str(s["rayjob"]) for s in held}))
    # The server's own clocks (1 s resolution): the Job's creation, the cluster's Ready times.
    r = env.rels["main"]
    job = env.job("main")
    rc = env.raycluster(r.ns, env.cluster_name("main")) or {}
    env.fact(
        "main",
        "server times",
        {
            "Job created": str(job.metadata.creation_timestamp) if job else None,
            "RayCluster status": {
                k: v
                for k, v in rc.get("status", {}).items()
                if k in ("lastUpdateTime", "stateTransitionTimes", "conditions")
            },
        },
    )


def test_submitter_pod_and_job_complete(env: Env) -> None:
    """The submitter Job and its Pod as the operator made them from the chart's template, the
    command and env KubeRay filled in; the Pod marked exited 0 completes the Job."""
    r = _ok(env, "main")
    v = env.cluster.version
    name = env.cluster_name("main")
    job = wait_for("the submitter Job", lambda: env.job("main"))
    rj = env.rayjob("main")
    status = rj["status"]
    dashboard = f"{name}-head-svc.{r.ns}.svc.cluster.local:8265"
    assert status["dashboardURL"] == dashboard, status
    assert re.fullmatch(rf"{re.escape(r.job)}-{RANDOM5}", status["jobId"]), status
    owner = job.metadata.owner_references
    assert [(o.kind, o.name, o.controller) for o in owner] == [("RayJob", r.job, True)]
    jl = job.metadata.labels or {}
    assert jl.get("ray.io/originated-from-cr-name") == r.job, jl
    assert jl.get("ray.io/originated-from-crd") == "RayJob", jl

    pod = env.submitter_pod("main")
    # the Job controller's submitter Pod was admitted by a namespace enforcing restricted
    ns_labels = env.core.read_namespace(r.ns).metadata.labels or {}
    assert {k: ns_labels.get(k) for k in RESTRICTED} == RESTRICTED, ns_labels
    labels = pod.metadata.labels or {}
    ann = pod.metadata.annotations or {}
    assert labels.get("meshray.io/submitter") == r.job, labels
    assert labels.get("sidecar.istio.io/inject") == "true", labels
    assert "meshray.io/cluster" not in labels, labels  # not one of the job's Ray Pods
    assert ann.get("sidecar.istio.io/nativeSidecar") == "true", ann
    assert pod.spec.service_account_name == f"{r.job}-submitter"
    assert pod.spec.restart_policy == "Never"
    # Everything the chart rendered into submitterPodTemplate reaches the Pod unchanged.
    tmpl = next(d for d in env.manifest("main") if d["kind"] == "RayJob")["spec"][
        "submitterPodTemplate"
    ]
    assert labels.items() >= tmpl["metadata"]["labels"].items(), labels
    assert ann.items() >= tmpl["metadata"]["annotations"].items(), ann
    c = pod.spec.containers[0]
    assert c.name == tmpl["spec"]["containers"][0]["name"] == "ray-job-submitter"
    api = client.ApiClient()
    assert (
        api.sanitize_for_serialization(c.security_context)
        == tmpl["spec"]["containers"][0]["securityContext"]
    )
    assert (
        api.sanitize_for_serialization(pod.spec.security_context) == tmpl["spec"]["securityContext"]
    )
    entrypoint = yaml.safe_load(EXAMPLE.read_text())["rayJob"]["entrypoint"]
    argv = [*(c.command or []), *(c.args or [])]
    line = " ".join(argv)
    assert f"--address http://{dashboard}" in line, argv
    assert f"--submission-id {status['jobId']}" in line, argv
    if v == "v1.1.0":  # plain argv, a blocking submit (job.go:GetK8sJobCommand)
        assert c.command[:3] == ["ray", "job", "submit"] and not c.args, argv
        assert c.command[c.command.index("--") + 1 :] == shlex.split(entrypoint), argv
    else:  # bash: submit unless already there, --no-wait, then follow the logs
        assert c.command == ["/bin/bash", "-ce", "--"] and len(c.args) == 1, argv
        script = c.args[0]
        assert "ray job status" in script and "--no-wait" in script, script
        assert f" -- {entrypoint} ;" in script, script
        assert f"ray job logs --address http://{dashboard} --follow {status['jobId']}" in script, (
            script
        )
    envs = {e.name: e.value for e in c.env or []}
    assert envs.get("RAY_DASHBOARD_ADDRESS") == dashboard, envs
    assert envs.get("RAY_JOB_SUBMISSION_ID") == status["jobId"], envs
    env.fact(
        "main",
        "submitter",
        {
            "Job": {
                "name": job.metadata.name,
                "labels": jl,
                "backoffLimit": job.spec.backoff_limit,
            },
            "Pod labels": labels,
            "Pod annotations": ann,
            "serviceAccountName": pod.spec.service_account_name,
            "command": c.command,
            "args": c.args,
            "env": envs,
        },
    )

    finished = time.monotonic()
    env.cluster.kubelet.finish(r.ns, pod.metadata.name, 0)

    def complete() -> bool:
        j = env.job("main")
        conditions = (j.status.conditions if j else None) or []
        return any(cd.type == "Complete" and cd.status == "True" for cd in conditions)

    wait_for("the submitter Job Complete", complete, timeout=60)
    env.fact(
        "main", "seconds from the Pod's exit to Job Complete", round(time.monotonic() - finished, 1)
    )
    env.facts["main"]["finished at"] = finished
    time.sleep(4)  # one more operator requeue (3 s) after the Job completed
    st = env.rayjob("main")["status"]
    env.fact(
        "main",
        "RayJob status after the Job completed",
        {k: st.get(k) for k in ("jobDeploymentStatus", "jobStatus", "reason", "message")},
    )
    assert st["jobDeploymentStatus"] == "Running", st  # the operator still polls the dashboard


# ---- 3. two RayJobs in one namespace --------------------------------------------------------
def _two(env: Env) -> tuple[dict[str, list[dict[str, Any]]], list[Any], dict[str, set[str]]]:
    own = {}
    for key in ("job-a", "job-b"):
        _ok(env, key)
        _, pods = env.running_pods(key)
        env.submitter_pod(key)
        own[key] = {p.metadata.name for p in pods}
    objs = {key: env.manifest(key) for key in ("job-a", "job-b")}
    live = {
        key: [get_live(env.cluster.api, d, "rj-two") for d in docs] for key, docs in objs.items()
    }
    return live, env.core.list_namespaced_pod("rj-two").items, own


def test_two_jobs_select_only_their_own_pods(env: Env) -> None:
    """Two RayJob releases in one namespace, their submitters running: every live object of a
    release that selects Pods (headless Service, AuthorizationPolicy, PeerAuthentication,
    Sidecars) selects only its own job's Ray Pods, and each headless Service's EndpointSlices
    list exactly them."""
    live, pods, own = _two(env)
    assert len(pods) == 6, [p.metadata.name for p in pods]  # 2 x (head, worker, submitter)
    kinds = set()
    for key, objs in live.items():
        assert not selector_problems(objs, pods, own[key]), selector_problems(objs, pods, own[key])
        kinds |= {o["kind"] for o in objs if pod_selector(o) is not None}
        wait_slices(env.cluster.api, "rj-two", f"{env.rels[key].job}-headless-svc", own[key])
    assert {"Service", "AuthorizationPolicy", "PeerAuthentication", "Sidecar"} <= kinds, kinds


def test_selector_check_fails_for_a_shared_selector(env: Env) -> None:
    """Negative control: job-a's live headless Service with KubeRay's common label as its
    selector (as a chart selecting every Ray Pod would) selects job-b's Pods too."""
    live, pods, own = _two(env)
    svc = copy.deepcopy(next(o for o in live["job-a"] if o["kind"] == "Service"))
    svc["spec"]["selector"] = {"ray.io/is-ray-node": "yes"}
    problems = selector_problems([svc], pods, own["job-a"])
    assert any("also selects" in p for p in problems), problems


def test_submitter_admitted_on_the_dashboard_only(env: Env) -> None:
    """The live AuthorizationPolicy admits the live submitter Pod's ServiceAccount on the head's
    dashboard port and no other port, for every K8sJobMode job (and the operator's principal
    the same way)."""
    for key in ("main", "job-a", "job-b"):
        r = _ok(env, key)
        _, pods = env.running_pods(key)
        head = _head(pods)
        services = live_services(env.core, r.ns)
        policy = _policy(env, r.ns, r.job)
        sub = env.submitter_pod(key) if key != "main" else _submitter_any(env, key)
        assert submitter_admission(policy, sub, head, services, r.ns) == [], key
        operator = copy.deepcopy(sub)
        operator.spec.service_account_name = "kuberay-operator"
        operator_problems = submitter_admission(policy, operator, head, services, "kuberay-system")
        assert operator_problems == [], operator_problems


def _submitter_any(env: Env, key: str) -> Any:
    """The submitter Pod whether running or already finished."""
    r = env.rels[key]
    items = env.core.list_namespaced_pod(
        r.ns, label_selector=f"batch.kubernetes.io/job-name={r.job}"
    ).items
    return items[0] if items else env.submitter_pod(key)


def test_admission_check_fails_when_the_submitter_is_not_admitted(env: Env) -> None:
    """Negative controls of submitter_admission: the live policy with the submitter's rule
    removed (patched on the API server and read back), and the live Pod running as the
    namespace's `default` ServiceAccount (KubeRay's default submitter has none)."""
    r = _ok(env, "job-b")
    _, pods = env.running_pods("job-b")
    head = _head(pods)
    sub = env.submitter_pod("job-b")
    services = live_services(env.core, r.ns)
    assert submitter_admission(_policy(env, r.ns, r.job), sub, head, services, r.ns) == []

    as_default = copy.deepcopy(sub)
    as_default.spec.service_account_name = None
    problems = submitter_admission(_policy(env, r.ns, r.job), as_default, head, services, r.ns)
    assert any("not admitted on the dashboard" in p for p in problems), problems

    policy = _policy(env, r.ns, r.job)
    principal = f"{TRUST_DOMAIN}/ns/{r.ns}/sa/{sub.spec.service_account_name}"
    idx = [
        i
        for i, rule in enumerate(policy["spec"]["rules"])
        if any(
            principal in (f.get("source") or {}).get("principals", [])
            for f in rule.get("from") or []
        )
    ]
    assert len(idx) == 1, policy["spec"]["rules"]
    env.custom.patch_namespaced_custom_object(
        "security.istio.io",
        "v1",
        r.ns,
        "authorizationpolicies",
        f"{r.job}-ray",
        [{"op": "remove", "path": f"/spec/rules/{idx[0]}"}],
        _content_type="application/json-patch+json",
    )
    problems = submitter_admission(_policy(env, r.ns, r.job), sub, head, services, r.ns)
    assert any("not admitted on the dashboard" in p for p in problems), problems

    wide = copy.deepcopy(policy)  # the submitter added to the Ray rule (every port but two)
    wide["spec"]["rules"][0]["from"][0]["source"]["principals"].append(principal)
    problems = submitter_admission(wide, sub, head, services, r.ns)
    assert any("also admitted" in p for p in problems), problems


# ---- 6a. the Pod oracle fails without a worker port -----------------------------------------
def test_oracle_fails_without_a_worker_port(env: Env) -> None:
    """Negative control: job-a's live headless Service patched to drop worker port 10002; the
    Pod oracle, clean before, reports the job's Pods listening on it undeclared."""
    r = _ok(env, "job-a")
    name, _ = env.running_pods("job-a")
    assert check_cluster(env.core, r.ns, name)[0] == []
    svc = env.core.read_namespaced_service(f"{r.job}-headless-svc", r.ns)
    idx = next(i for i, p in enumerate(svc.spec.ports) if p.port == 10002)
    env.core.patch_namespaced_service(
        svc.metadata.name, r.ns, [{"op": "remove", "path": f"/spec/ports/{idx}"}]
    )
    problems, _ = check_cluster(env.core, r.ns, name)
    assert any("listens on 10002 (worker)" in p for p in problems), problems


# ---- 5. other submission modes ---------------------------------------------------------------
def _no_submitter(env: Env, key: str) -> None:
    r = env.rels[key]
    assert env.job(key) is None
    assert env.batch.list_namespaced_job(r.ns).items == []
    names = {p.metadata.name for p in env.core.list_namespaced_pod(r.ns).items}
    assert names == {p.metadata.name for p in ray_pods(env.core, r.ns)}, names


def _status(env: Env, key: str, state: str, timeout: float = 60) -> dict[str, Any]:
    return wait_for(
        f"{key}'s RayJob {state}",
        lambda: (
            s
            if (s := env.rayjob(key).get("status", {})).get("jobDeploymentStatus") == state
            else None
        ),
        timeout=timeout,
    )


def test_http_mode(env: Env) -> None:
    """HTTPMode: the operator creates the cluster and no submitter; Running, it polls the
    dashboard itself (GET /api/jobs/<id>, unreachable here) to submit there."""
    r = _ok(env, "http")
    env.running_pods("http")
    st = _status(env, "http", "Running")
    time.sleep(3)  # a requeue: a submitter would exist by now
    _no_submitter(env, "http")
    log = env.operator_log()
    polled = [ln for ln in log.splitlines() if "Failed to get job info" in ln and st["jobId"] in ln]
    assert polled, "the operator did not try the dashboard for the job"
    env.fact(
        "http",
        "RayJob status",
        {
            k: st.get(k)
            for k in ("jobDeploymentStatus", "jobStatus", "jobId", "dashboardURL", "rayClusterName")
        },
    )
    env.fact("http", "operator log line", polled[-1][:600])
    env.fact("http", "namespace", r.ns)


def test_interactive_mode(env: Env) -> None:
    """InteractiveMode (KubeRay >= 1.3): the cluster, then Waiting with no job ID and no
    submitter. On KubeRay 1.1.0 the chart refuses the mode, naming the version."""
    if env.cluster.version == "v1.1.0":
        _refused_on_1_1(env, "InteractiveMode", "1.3.0")
        return
    _ok(env, "interactive")
    env.running_pods("interactive")
    st = _status(env, "interactive", "Waiting")
    assert not st.get("jobId"), st
    _no_submitter(env, "interactive")
    env.fact(
        "interactive",
        "RayJob status",
        {
            k: st.get(k)
            for k in ("jobDeploymentStatus", "jobStatus", "jobId", "dashboardURL", "rayClusterName")
        },
    )


def _refused_on_1_1(env: Env, mode: str, since: str) -> None:
    res = Helm(HELMS["helm4"], env.cluster.kubeconfig).run(
        "template",
        "rj",
        str(CHART),
        "-f",
        str(EXAMPLE),
        "--set",
        "kuberay.version=1.1.0",
        *NO_SUBMITTER_CONFIG,
        "--set",
        f"rayJob.submissionMode={mode}",
        check=False,
    )
    assert res.returncode != 0
    assert f"{mode}: needs KubeRay >= {since}" in res.stderr, res.stderr


def test_sidecar_mode(env: Env) -> None:
    """SidecarMode (KubeRay >= 1.5): the operator appends a `ray-job-submitter` container to the
    head Pod, without a securityContext, so restricted Pod Security refuses that Pod (the API
    server's own admission, dry run, in a namespace enforcing restricted), while the same Pod
    without that container is admitted. This is why the chart refuses SidecarMode under
    podSecurity.enabled, which the last lines show."""
    chart_refusal = Helm(HELMS["helm4"], env.cluster.kubeconfig).run(
        "template",
        "rj",
        str(CHART),
        "-f",
        str(EXAMPLE),
        *NO_SUBMITTER_CONFIG,
        "--set",
        "rayJob.submissionMode=SidecarMode",
        check=False,
    )
    assert chart_refusal.returncode != 0
    assert "SidecarMode" in chart_refusal.stderr and "podSecurity" in chart_refusal.stderr
    if env.cluster.version == "v1.1.0":
        _refused_on_1_1(env, "SidecarMode", "1.5.0")
        return
    r = _ok(env, "sidecar")
    name, pods = env.running_pods("sidecar")
    head = _head(pods)
    names = [c.name for c in head.spec.containers]
    assert names == ["ray-head", "ray-job-submitter"], names
    sub = head.spec.containers[1]
    assert sub.security_context is None
    assert head.spec.restart_policy == "Never"
    _status(env, "sidecar", "Running")
    _no_submitter(env, "sidecar")
    rc = env.raycluster(r.ns, name) or {}
    env.fact("sidecar", "head containers", names)
    env.fact(
        "sidecar",
        "submitter container",
        {
            "command": sub.command,
            "args": sub.args,
            "securityContext": sub.security_context,
            "env": {e.name: e.value for e in sub.env or []},
        },
    )
    env.fact("sidecar", "RayCluster annotations", rc["metadata"].get("annotations"))
    problems, _ = check_cluster(env.core, r.ns, name)
    assert not problems, problems

    restricted = "rj-restricted"
    env.core.create_namespace(
        {
            "metadata": {
                "name": restricted,
                "labels": {"pod-security.kubernetes.io/enforce": "restricted"},
            }
        }
    )
    try:
        env.core.create_namespaced_service_account(
            restricted, {"metadata": {"name": head.spec.service_account_name}}
        )
        body = _probe_pod(env, head)
        with pytest.raises(ApiException) as refused:
            env.core.create_namespaced_pod(restricted, body, dry_run="All")
        msg = str(json.loads(refused.value.body)["message"])
        assert refused.value.status == 403 and 'container "ray-job-submitter"' in msg, msg
        assert 'container "ray-head"' not in msg, msg
        env.fact("sidecar", "restricted Pod Security on the operator's head Pod", msg[:600])
        body["spec"]["containers"] = body["spec"]["containers"][:1]
        env.core.create_namespaced_pod(restricted, body, dry_run="All")  # the control
    finally:
        env.core.delete_namespace(restricted)


def _probe_pod(env: Env, pod: Any) -> dict[str, Any]:
    """A creatable copy of a live Pod: its spec and labels under a new name."""
    spec = client.ApiClient().sanitize_for_serialization(pod.spec)
    spec.pop("nodeName", None)
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "pss-probe", "labels": pod.metadata.labels},
        "spec": spec,
    }


# ---- a RayJob on an existing RayCluster (clusterSelector) -------------------------------------
def test_existing_cluster(env: Env) -> None:
    """values-examples/rayjob-existing-cluster.yaml beside a RayCluster release named as its
    clusterSelector: the operator creates no RayCluster, runs the submitter against that
    cluster's head Service, and that cluster's policy admits the submitter only after the
    `helm upgrade` the example's comment gives (before it: the admission check fails)."""
    r = _ok(env, "existing")
    shared = _ok(env, "shared")
    pods = wait_for(
        f"2 running pods of {SHARED}",
        lambda: p if len(p := ray_pods(env.core, r.ns, SHARED)) == 2 and running(p) else None,
        timeout=90,
    )
    sub = env.submitter_pod("existing")
    st = env.rayjob("existing")["status"]
    dashboard = f"{SHARED}-head-svc.{r.ns}.svc.cluster.local:8265"
    assert st.get("rayClusterName") == SHARED and st.get("dashboardURL") == dashboard, st
    clusters = env.custom.list_namespaced_custom_object("ray.io", "v1", r.ns, "rayclusters")
    assert [c["metadata"]["name"] for c in clusters["items"]] == [SHARED]
    envs = {e.name: e.value for e in sub.spec.containers[0].env or []}
    assert envs.get("RAY_DASHBOARD_ADDRESS") == dashboard, envs
    assert sub.spec.service_account_name == f"{EXISTING_JOB}-submitter"
    head = _head(pods)
    services = live_services(env.core, r.ns)
    before = submitter_admission(_policy(env, r.ns, SHARED), sub, head, services, r.ns)
    assert any("not admitted on the dashboard" in p for p in before), before
    principal = f"{TRUST_DOMAIN}/ns/{r.ns}/sa/{sub.spec.service_account_name}"
    env.helm("shared").run(
        "upgrade",
        shared.name,
        str(CHART),
        "-n",
        r.ns,
        "--reuse-values",
        "--set",
        f"mesh.authorizationPolicy.dashboardPrincipals={{{principal}}}",
    )
    after = submitter_admission(_policy(env, r.ns, SHARED), sub, head, services, r.ns)
    assert after == [], after
    assert not [s.name for s in services if s.name == f"{EXISTING_JOB}-head-svc"]
    env.fact(
        "existing",
        "RayJob status",
        {k: st.get(k) for k in ("jobDeploymentStatus", "rayClusterName", "dashboardURL", "jobId")},
    )


# ---- 4. helm upgrade ------------------------------------------------------------------------
def test_helm4_upgrades_agree_with_the_operators_update(env: Env) -> None:
    """The operator adds its finalizer with a full Update of the RayJob, writing the Go zero
    values a manifest leaves out (`workerGroupSpecs[].scaleStrategy: {}`, `numOfHosts: 1`);
    workerGroupSpecs is an atomic list, so when those values differ from what Helm applied, the
    operator becomes its only manager and Helm 4's server-side apply of the RayJob, changed or
    not, conflicts on it. The chart renders those defaults, so Helm stays the manager and a
    dry-run apply of the release's RayJob under Helm's field manager goes through. Control: the
    same RayJob without them (as the chart rendered it before), applied as another object, is
    taken over by the operator and its re-apply conflicts."""
    r = _ok(env, "main")
    wait_for("the operator's finalizer", lambda: env.rayjob("main")["metadata"].get("finalizers"))
    live = env.rayjob("main")
    helm_manager = next(
        e["manager"] for e in live["metadata"]["managedFields"] if e["operation"] == "Apply"
    )
    env.fact("main", "Helm 4 field manager", helm_manager)
    env.fact("main", "owners of workerGroupSpecs after the operator's update",
             _owners(live, "rayClusterSpec", "workerGroupSpecs"))
    assert _owners(live, "rayClusterSpec", "workerGroupSpecs") == [f"{helm_manager} (Apply)"]
    rendered = next(d for d in env.manifest("main") if d["kind"] == "RayJob")

    def apply(doc: dict[str, Any], dry_run: bool = True) -> int:
        try:
            env.custom.patch_namespaced_custom_object(
                "ray.io", "v1", r.ns, "rayjobs", doc["metadata"]["name"], doc,
                field_manager=helm_manager, _content_type="application/apply-patch+yaml",
                **({"dry_run": "All"} if dry_run else {}),
            )
        except ApiException as e:
            assert e.status != 409 or "workerGroupSpecs" in str(e.body), e.body
            return int(e.status)
        return 200

    assert apply(copy.deepcopy(rendered)) == 200
    # control: the RayJob as the chart rendered it without the defaults, suspended so the
    # operator makes no cluster for it, under another name
    bare = copy.deepcopy(rendered)
    bare["metadata"] = {"name": f"{r.job}-bare", "namespace": r.ns}
    bare["spec"]["suspend"] = True
    for g in bare["spec"]["rayClusterSpec"]["workerGroupSpecs"]:
        g.pop("numOfHosts", None)
        g.pop("scaleStrategy", None)
    assert apply(bare, dry_run=False) == 200
    try:
        def taken() -> list[str] | None:
            obj = env.custom.get_namespaced_custom_object("ray.io", "v1", r.ns, "rayjobs",
                                                          f"{r.job}-bare")
            owners = _owners(obj, "rayClusterSpec", "workerGroupSpecs")
            return owners if obj["metadata"].get("finalizers") else None

        owners = wait_for("the operator's update of the bare RayJob", taken)
        env.fact("main", "owners of workerGroupSpecs, control without the defaults", owners)
        assert owners == ["kuberay-operator (Update)"], owners
        assert apply(bare) == 409
    finally:
        env.custom.delete_namespaced_custom_object("ray.io", "v1", r.ns, "rayjobs",
                                                   f"{r.job}-bare")


SHIFT = ("--set", "ports.minWorkerPort=10102", "--set", "ports.maxWorkerPort=10151")


def _owners(rayjob: dict[str, Any], *path: str) -> list[str]:
    """The field managers (and operation) that own ``path`` under .spec of a live object."""
    out = []
    for entry in rayjob["metadata"].get("managedFields") or []:
        node = (entry.get("fieldsV1") or {}).get("f:spec") or {}
        for key in path:
            node = node.get(f"f:{key}") if isinstance(node, dict) else None
        if node is not None:
            out.append(f"{entry['manager']} ({entry['operation']})")
    return out


def _port_map_upgrade(env: Env, key: str,
                      *extra: str) -> tuple[Any, str, set[str], dict[str, Any]]:
    """Install settled and clean, then helm upgrade with the worker range shifted."""
    r = _ok(env, key)
    name, pods = env.running_pods(key)
    assert check_cluster(env.core, r.ns, name)[0] == []
    rc_before = env.raycluster(r.ns, name) or {}
    env.fact(
        key,
        "owners of .spec.rayClusterSpec.workerGroupSpecs",
        _owners(env.rayjob(key), "rayClusterSpec", "workerGroupSpecs"),
    )
    res = env.helm(key).run("upgrade", r.name, str(CHART), "-n", r.ns, *r.args, *SHIFT, *extra,
                            check=False)
    env.fact(key, "helm upgrade (port map) exit", res.returncode)
    env.fact(key, "helm upgrade stderr", res.stderr[-700:])
    return res, name, {p.metadata.uid for p in pods}, rc_before


def test_upgrade_port_map_of_a_running_rayjob_is_refused(env: Env) -> None:
    """Helm 4 upgrading a running RayJob's worker range: the chart reads the live RayJob
    (lookup) and refuses the port-map change before anything is applied, since the operator
    would keep the job's cluster on the old ports (next test); the Services stay as they were,
    so the oracle stays clean."""
    res, name, uids, _ = _port_map_upgrade(env, "upgrade")
    r = env.rels["upgrade"]
    assert res.returncode != 0
    assert f'port map of RayJob "{r.job}"' in res.stderr, res.stderr
    assert f"kubectl delete rayjob -n {r.ns} {r.job}" in res.stderr, res.stderr
    assert check_cluster(env.core, r.ns, name)[0] == []
    assert {p.metadata.uid for p in ray_pods(env.core, r.ns, name)} == uids


def test_upgrade_port_map_helm3_is_disregarded_by_the_operator(env: Env) -> None:
    """Why the chart refuses it: forced through (Helm 3, a merge patch, with
    kuberay.allowPortChangeWithoutRecreate), the RayJob and the chart's Services change, but
    the operator keeps the RayCluster it created as it was ("Disregard changes in RayClusterSpec
    of RayJob") and its Pods, so the Pods keep the old flags: the oracle reports ports the
    Services no longer declare."""
    res, name, uids, rc_before = _port_map_upgrade(
        env, "upgrade3", "--set", "kuberay.allowPortChangeWithoutRecreate=true")
    r = env.rels["upgrade3"]
    assert res.returncode == 0, res.stderr
    rj = env.rayjob("upgrade3")
    params = rj["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]["rayStartParams"]
    assert params["min-worker-port"] == "10102", params
    time.sleep(4)  # a requeue of the operator
    rc_after = env.raycluster(r.ns, name) or {}
    assert rc_after["spec"] == rc_before["spec"]
    assert env.rayjob("upgrade3")["status"]["rayClusterName"] == name
    assert {p.metadata.uid for p in ray_pods(env.core, r.ns, name)} == uids
    assert "Disregard changes in RayClusterSpec of RayJob" in env.operator_log()
    stale = check_cluster(env.core, r.ns, name)[0]
    env.fact("upgrade3", "oracle after the upgrade", stale[:6])
    assert stale, "the Pods kept their ports, and the oracle did not see it"


def _nudge(env: Env, key: str, n: int) -> None:
    """Change an annotation of the RayJob: its watch has no predicate, so the operator
    reconciles it now. Needed because every reconcile of a job whose dashboard does not answer
    returns an error, so controller-runtime requeues it with a growing backoff, not in 3 s."""
    r = env.rels[key]
    env.custom.patch_namespaced_custom_object(
        "ray.io",
        "v1",
        r.ns,
        "rayjobs",
        r.job,
        {"metadata": {"annotations": {"meshray.test/nudge": str(n)}}},
        _content_type="application/merge-patch+json",
    )


def test_upgrade_ttl_and_what_the_operator_does(env: Env) -> None:
    """The job whose submitter finished, 31 s on (each second nudged to reconcile): KubeRay
    1.6.2 fails the RayJob (JobDeploymentStatusTransitionGracePeriodExceeded: the submitter
    finished 30 s ago and no Ray job is terminal) and keeps its cluster for ttl 60; KubeRay
    1.1.0 has no such timeout: the RayJob stays Running with its cluster. Then `helm upgrade`
    ttlSecondsAfterFinished 60 -> 5: Helm 4 refuses it whole (the conflict above) and goes
    through with --force-conflicts; only the RayJob's spec changes (same Job, and in 1.1.0 the
    same RayCluster and Pods); 1.6.2 reads the new ttl at cleanup and deletes the cluster."""
    r = _ok(env, "main")
    v = env.cluster.version
    finished = env.facts.get("main", {}).get("finished at")
    assert finished, "run test_submitter_pod_and_job_complete first"
    name = env.cluster_name("main")
    pods = {p.metadata.uid for p in ray_pods(env.core, r.ns, name)}
    job = env.job("main")
    assert job is not None
    rc_uid = (env.raycluster(r.ns, name) or {})["metadata"]["uid"]
    time.sleep(max(0.0, finished + 31 - time.monotonic()))
    for n in range(1, 16):
        _nudge(env, "main", n)
        time.sleep(1)
        st = env.rayjob("main")["status"]
        if st["jobDeploymentStatus"] != "Running" or (v == "v1.1.0" and n >= 5):
            break
    keys = ("jobDeploymentStatus", "jobStatus", "reason", "message", "endTime")
    env.fact(
        "main",
        f"RayJob status {round(time.monotonic() - finished)} s after the Job completed",
        {k: st.get(k) for k in keys},
    )
    if v == "v1.1.0":
        assert st["jobDeploymentStatus"] == "Running", st
    else:
        assert st["jobDeploymentStatus"] == "Failed", st
        assert st["reason"] == "JobDeploymentStatusTransitionGracePeriodExceeded", st
    assert env.raycluster(r.ns, name) is not None  # 1.6.2: kept for ttlSecondsAfterFinished 60

    gen = env.rayjob("main")["metadata"]["generation"]
    ttl = ("--set", "rayJob.ttlSecondsAfterFinished=5")
    upgrade = ("upgrade", r.name, str(CHART), "-n", r.ns, *r.args, *ttl)
    # Helm 4's server-side apply agrees with the operator's own update of the RayJob: the
    # chart declares the defaults that update writes (numOfHosts, scaleStrategy), so no conflict
    plain = env.helm("main").run(*upgrade, check=False)
    env.fact("main", "helm upgrade (ttl) exit, Helm 4", plain.returncode)
    assert plain.returncode == 0, plain.stderr
    upgraded = time.monotonic()
    rj = env.rayjob("main")
    assert rj["spec"]["ttlSecondsAfterFinished"] == 5
    assert rj["metadata"]["generation"] == gen + 1
    assert (env.job("main") or job).metadata.uid == job.metadata.uid  # the Job is kept
    env.fact(
        "main",
        "status.observedGeneration after the upgrade",
        rj.get("status", {}).get("observedGeneration"),
    )
    if v == "v1.1.0":
        time.sleep(4)  # a reconcile
        assert (env.raycluster(r.ns, name) or {})["metadata"]["uid"] == rc_uid
        assert {p.metadata.uid for p in ray_pods(env.core, r.ns, name)} == pods
        assert env.rayjob("main")["status"]["jobDeploymentStatus"] == "Running"
        return
    wait_for(
        "the RayCluster deleted after the new ttl",
        lambda: env.raycluster(r.ns, name) is None,
        timeout=30,
    )
    env.fact(
        "main",
        "RayCluster deleted (s after the upgrade to ttl 5)",
        round(time.monotonic() - upgraded, 1),
    )
    wait_for("the job's Pods gone", lambda: not ray_pods(env.core, r.ns, name), timeout=30)
    assert env.job("main") is not None  # the submitter Job is kept (its logs)
    assert env.rayjob("main")["status"]["jobDeploymentStatus"] == "Failed"


# ---- 4. helm uninstall ----------------------------------------------------------------------
ISTIO = (
    ("security.istio.io", "v1", "authorizationpolicies"),
    ("security.istio.io", "v1", "peerauthentications"),
    ("security.istio.io", "v1", "requestauthentications"),
    ("networking.istio.io", "v1", "sidecars"),
    ("networking.istio.io", "v1", "gateways"),
    ("networking.istio.io", "v1", "virtualservices"),
    ("ray.io", "v1", "rayjobs"),
    ("ray.io", "v1", "rayclusters"),
)


def leftovers(api: Any, ns: str, prefix: str = "") -> list[str]:
    """Every object of the namespace (but its default ServiceAccount and root CA ConfigMap)
    whose name starts with ``prefix``."""
    core = client.CoreV1Api(api)
    found = [f"Pod/{o.metadata.name}" for o in core.list_namespaced_pod(ns).items]
    found += [f"Service/{o.metadata.name}" for o in core.list_namespaced_service(ns).items]
    found += [
        f"ServiceAccount/{o.metadata.name}"
        for o in core.list_namespaced_service_account(ns).items
        if o.metadata.name != "default"
    ]
    found += [
        f"ConfigMap/{o.metadata.name}"
        for o in core.list_namespaced_config_map(ns).items
        if o.metadata.name != "kube-root-ca.crt"
    ]
    found += [f"Secret/{o.metadata.name}" for o in core.list_namespaced_secret(ns).items]
    found += [
        f"Job/{o.metadata.name}" for o in client.BatchV1Api(api).list_namespaced_job(ns).items
    ]
    found += [
        f"NetworkPolicy/{o.metadata.name}"
        for o in client.NetworkingV1Api(api).list_namespaced_network_policy(ns).items
    ]
    found += [
        f"EndpointSlice/{o.metadata.name}"
        for o in client.DiscoveryV1Api(api).list_namespaced_endpoint_slice(ns).items
    ]
    custom = client.CustomObjectsApi(api)
    for group, version, plural in ISTIO:
        items = custom.list_namespaced_custom_object(group, version, ns, plural)["items"]
        found += [f"{plural}/{i['metadata']['name']}" for i in items]
    return [f for f in found if f.split("/", 1)[1].startswith(prefix)]


def test_uninstall_leaves_nothing(env: Env) -> None:
    """helm uninstall (Helm 3) of a running RayJob whose submitter still runs: the finalizer
    the operator put on the RayJob makes it try POST /api/jobs/<id>/stop on the dashboard
    (unreachable), then it lets go; nothing of the release is left in the namespace within
    60 s: RayJob, RayCluster, Pods, Job, Services, EndpointSlices, ServiceAccounts, policies."""
    r = _ok(env, "helm3")
    env.running_pods("helm3")
    env.submitter_pod("helm3")
    rj = env.rayjob("helm3")
    assert rj["metadata"].get("finalizers") == [FINALIZER], rj["metadata"]
    job_id = rj["status"]["jobId"]
    assert rj["status"].get("jobStatus", "") == ""  # not terminal: the operator must stop it
    assert leftovers(env.cluster.api, r.ns)
    started = time.monotonic()
    env.helm("helm3").run("uninstall", r.name, "-n", r.ns)
    wait_for(f"nothing left in {r.ns}", lambda: not leftovers(env.cluster.api, r.ns), timeout=60)
    env.fact(
        "helm3",
        "seconds from helm uninstall to an empty namespace",
        round(time.monotonic() - started, 1),
    )
    stop = [ln for ln in env.operator_log().splitlines() if f"/api/jobs/{job_id}/stop" in ln]
    assert stop, f"no POST /api/jobs/{job_id}/stop in the operator's log"
    env.fact("helm3", "operator log on delete", stop[-1][:600])
    env.results.pop("helm3")  # uninstalled here

    # One of two releases in a namespace: only its own objects go.
    a = _ok(env, "job-a")
    _, pods_b = env.running_pods("job-b")
    env.helm("job-a").run("uninstall", a.name, "-n", a.ns)
    wait_for(
        "nothing of job-a left", lambda: not leftovers(env.cluster.api, a.ns, "job-a"), timeout=60
    )
    env.results.pop("job-a")
    left_b = {p.metadata.uid for p in ray_pods(env.core, a.ns, env.cluster_name("job-b"))}
    assert left_b == {p.metadata.uid for p in pods_b}
    assert leftovers(env.cluster.api, a.ns, "job-b")
