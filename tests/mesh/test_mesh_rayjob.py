"""What the real istiod programs for a RayJob (issue 21 item 6).

values-examples/rayjob.yaml is installed with helm on the local control plane with the real
KubeRay operator v1.6.2. The operator names the job's RayCluster `<rayjob>-<5 random>` and
creates its Pods (the kubelet stand-in makes them Ready), then the submitter Job, whose Pod the
Job controller creates. Every Pod of the job's namespaces is injected as it is created: istiod's
own injection webhook (a second istiod serving the injector config the pinned Istio renders,
inject_support.py) is registered at the API server, so the Pods carry what Istio's injector adds
(istio-proxy, `security.istio.io/tlsMode`) as they would in a cluster, and the submitter's Job
template is also injected offline by `istioctl kube-inject`, as test_injection.py does.

From the xDS the first istiod sends each Pod's sidecar (bin/meshray-xds):
1. the submitter Pod's istio-proxy is a native sidecar, and the Pod runs as `<rayjob>-submitter`;
2. the submitter's outbound to the address KubeRay hands it (RAY_DASHBOARD_ADDRESS, the job's
   RayCluster head Service) is L7 HTTP, and the transport socket Envoy picks for the head's
   endpoint is Istio mutual TLS verifying the head's identity;
3. on every port the head's and workers' `ray start` listens on, the RBAC filters admit exactly
   what the values say: the submitter and the KubeRay operator on the dashboard port, besides
   the cluster's own identity on every port but the dashboard and Ray Client; the submitter on
   no other port;
4. the Sidecars and the PeerAuthentication select the job's Pods by `meshray.io/cluster`
   although the operator named the cluster: every ingress port gets a chain speaking its
   declared protocol, accepting mutual TLS only.

Negative controls, on a second install (namespace rayjob-ctl) patched live and put back: the
AuthorizationPolicy without the submitter's rule; a DestinationRule turning TLS off for the
head Service, and its dashboard port declared `tcp`; the PeerAuthentication and the head's
Sidecar selecting by `ray.io/cluster: <rayjob>` (a name the operator does not give the cluster);
the submitter's template asking for a classic sidecar.
"""

from __future__ import annotations

import contextlib
import copy
import os
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml
from authz_support import expected
from inject_support import (
    PROXY,
    Injector,
    describe,
    inject,
    injected_on_create,
    injection_dir,
    injector,
    names,
    native,
    pod_manifest,
    proxy,
    register_webhook,
    unregister_webhook,
)
from kube import CHART, HELMS, Helm, ray_pods, running, wait_for
from kubernetes import client
from podcmd import listening_ports, ray_start
from test_authorization import admits, admitted, own_principal, wait_dump
from test_sidecar_config import (
    inbound,
    istiod_conflicts,
    mutual_tls_only,
    port_report,
    settled_dump,
    sidecar_ingress,
)
from xds_support import Mesh, endpoint_transport, outbound

T = TypeVar("T")
REPO = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("MESHRAY_CLUSTER_CACHE") or REPO / ".cache" / "cluster")
EXAMPLE = REPO / "values-examples" / "rayjob.yaml"
VALUES: dict[str, Any] = yaml.safe_load(EXAMPLE.read_text())
NAME = str(VALUES["clusterName"])  # the RayJob's name (release values `clusterName`)
_OP = VALUES["kuberay"]["operator"]
# The identity the values name for the KubeRay operator (istiod's trust domain is cluster.local).
OPERATOR_PRINCIPAL = f"cluster.local/ns/{_OP['namespace']}/sa/{_OP['serviceAccount']}"
NS, CTL = "rayjob-mesh", "rayjob-ctl"
WEBHOOK = "meshray-rayjob-injector"
# k8s.io/apimachinery rand.String's alphabet: the operator's 5 random characters.
GENERATED = re.compile(rf"^{re.escape(NAME)}-[bcdfghjklmnpqrstvwxz2456789]{{5}}$")
# The ConfigMap the example mounts on the head (its header: kubectl create configmap rayjob-code).
JOB_PY = "import os\nprint(os.environ.get('JOB_GREETING'))\n"
STRANGER = f"cluster.local/ns/{NS}/sa/default"


@dataclass
class RayJobRun:
    ns: str
    raycluster: str  # the name the operator gave the job's RayCluster
    pods: list[Any]  # head and workers, as istiod's webhook injected them
    submitter: Any  # the submitter Job's Pod
    job: Any  # the submitter batch Job
    seconds: float  # helm install -> submitter Pod running

    @property
    def head(self) -> Any:
        return next(p for p in self.pods if p.metadata.labels["ray.io/node-type"] == "head")

    @property
    def workers(self) -> list[Any]:
        return [p for p in self.pods if p.metadata.labels["ray.io/node-type"] == "worker"]


def settle(fn: Callable[[], T], ok: Callable[[T], bool], timeout: float = 30) -> T:
    """istiod learns Pods, Services and policies from its informers: ask until `ok`, or
    `timeout` seconds have passed, and return the last answer."""
    deadline = time.monotonic() + timeout
    while True:
        got = fn()
        if ok(got) or time.monotonic() > deadline:
            return got
        time.sleep(1)


# ---- the install ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def injector_config(tmp_path_factory: pytest.TempPathFactory) -> Injector:
    return injector(tmp_path_factory.mktemp("rayjob-injector"))


@pytest.fixture(scope="module")
def webhook(mesh: Mesh, injector_config: Injector,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """A second istiod serving the injection webhook, registered at the API server for the
    job's namespaces (the first istiod, which the xDS is read from, is left as it is)."""
    cp = mesh.cp
    saved = (cp.istiod_debug, cp.istiod_https)
    try:
        # POD_NAME: its own leader-election identity, so it does not act as the first istiod.
        cp.start_istiod(injection=injection_dir(injector_config, tmp_path_factory.mktemp("wh")),
                        env={"POD_NAME": "istiod-injector"})
        https, proc = cp.istiod_https, cp.procs[-1]
    finally:
        # the rest of the suite reads the first istiod's debug endpoints through these
        cp.istiod_debug, cp.istiod_https = saved
    core = client.CoreV1Api(mesh.api)
    try:
        for ns in (NS, CTL):
            core.create_namespace({"metadata": {"name": ns}})
        register_webhook(mesh.api, https, cp.certs / "ca.crt", [NS, CTL], WEBHOOK)
        wait_for("the API server calling istiod's webhook",
                 lambda: all(injected_on_create(mesh.api, ns) for ns in (NS, CTL)), timeout=30)
        yield
    finally:
        with contextlib.suppress(Exception):
            unregister_webhook(mesh.api, WEBHOOK)
        if proc.popen and proc.popen.poll() is None:
            proc.popen.terminate()
            proc.popen.wait(15)


def _install(mesh: Mesh, ns: str) -> None:
    core = client.CoreV1Api(mesh.api)
    core.create_namespaced_config_map(
        ns, {"metadata": {"name": "rayjob-code"}, "data": {"job.py": JOB_PY}})
    Helm(HELMS["helm4"], mesh.kubeconfig).run(
        "install", "m", str(CHART), "-n", ns, "-f", str(EXAMPLE))


def _running_job(mesh: Mesh, ns: str, t0: float) -> RayJobRun:
    core = client.CoreV1Api(mesh.api)
    crd = client.CustomObjectsApi(mesh.api)

    def cluster_name() -> str | None:
        rj = crd.get_namespaced_custom_object("ray.io", "v1", ns, "rayjobs", NAME)
        return str((rj.get("status") or {}).get("rayClusterName") or "") or None

    rc_name = wait_for(f"the RayJob's cluster in {ns}", cluster_name, timeout=60)
    rc = wait_for(f"RayCluster {rc_name}", lambda: crd.get_namespaced_custom_object(
        "ray.io", "v1", ns, "rayclusters", rc_name), timeout=60)
    n = 1 + sum(int(g["replicas"]) for g in rc["spec"]["workerGroupSpecs"])
    pods = wait_for(
        f"{n} running Ray pods in {ns}",
        lambda: p if len(p := ray_pods(core, ns, rc_name)) == n and running(p) else None,
        timeout=120)

    def submitter() -> Any:
        got = core.list_namespaced_pod(
            ns, label_selector=f"batch.kubernetes.io/job-name={NAME}").items
        return got[0] if len(got) == 1 and running(got) else None

    sub = wait_for(f"the submitter Job's Pod in {ns}", submitter, timeout=120)
    job = client.BatchV1Api(mesh.api).read_namespaced_job(NAME, ns)
    return RayJobRun(ns, rc_name, pods, sub, job, round(time.monotonic() - t0, 1))


@pytest.fixture(scope="module")
def runs(mesh: Mesh, webhook: None) -> Iterator[dict[str, RayJobRun]]:
    """The example installed twice (the second for the negative controls), both running;
    the namespaces are deleted afterwards, so the rest of the suite's istiod pushes skip them."""
    t0 = time.monotonic()
    try:
        for ns in (NS, CTL):
            _install(mesh, ns)
        yield {ns: _running_job(mesh, ns, t0) for ns in (NS, CTL)}
    finally:
        for ns in (NS, CTL):
            with contextlib.suppress(client.ApiException):
                client.CoreV1Api(mesh.api).delete_namespace(ns)


# ---- the checks ----------------------------------------------------------------------------


def job_pod(api: Any, job: Any, annotations: dict[str, str] | None = None) -> dict[str, Any]:
    """The Pod the Job controller makes from the submitter Job's template, before admission
    (name and namespace set, as the webhook is handed them), with `annotations` changed."""
    template = copy.deepcopy(api.sanitize_for_serialization(job.spec.template))
    meta = {**template["metadata"], "name": f"{job.metadata.name}-offline",
            "namespace": job.metadata.namespace}
    meta["annotations"] = {**meta.get("annotations", {}), **(annotations or {})}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": template["spec"]}


def submitter_problems(api: Any, pod: Any) -> list[str]:
    """Item 1 on a submitter Pod: a native istio-proxy ahead of the submitter, and its own
    identity."""
    m = pod_manifest(api, pod)
    out = []
    if not native(m):
        out.append(f"istio-proxy is not a native sidecar: {describe(m)}")
    if names(m, "containers") != ["ray-job-submitter"]:
        out.append(f"containers: {names(m, 'containers')}")
    if pod.spec.service_account_name != f"{NAME}-submitter":
        out.append(f"runs as {pod.spec.service_account_name}")
    return out


def dashboard_hop(core: client.CoreV1Api, dump: dict[str, Any], run: RayJobRun,
                  address: str | None = None) -> dict[str, Any]:
    """What the submitter's sidecar does with a connection to the Ray dashboard at `address`
    (default: the RAY_DASHBOARD_ADDRESS KubeRay put in the submitter's env, host:port): the
    address the name resolves to (the Service's ClusterIP, or the head's IP when headless), the
    listener, chain kind and cluster Envoy picks (xds_support.outbound), and the transport
    socket that cluster uses towards the head's endpoint."""
    if address is None:
        c = next(c for c in run.submitter.spec.containers if c.name == "ray-job-submitter")
        address = next(e.value for e in c.env or [] if e.name == "RAY_DASHBOARD_ADDRESS")
    host, _, port = address.rpartition(":")
    svc_name, svc_ns = host.split(".")[:2]
    svc = core.read_namespaced_service(svc_name, svc_ns)
    head_ip = run.head.status.pod_ip
    vip = head_ip if svc.spec.cluster_ip == "None" else svc.spec.cluster_ip
    hop = outbound(dump, vip, int(port), host)
    transport = endpoint_transport(dump, hop["cluster"], head_ip) if hop["cluster"] else {}
    return {"address": address, "service": svc_name, "vip": vip, **hop, "transport": transport}


def dashboard_problems(hop: dict[str, Any], head_principal: str) -> list[str]:
    """Item 2: L7 HTTP, and Istio mutual TLS to the head's endpoint verifying its identity."""
    out = []
    where = f"{hop['address']} ({hop['listener']} -> {hop['cluster']})"
    if hop["kind"] != "http":
        out.append(f"{where}: {hop['kind']}, not L7 HTTP")
    t = hop["transport"]
    if not t.get("endpoint"):
        out.append(f"{where}: no endpoint at the head's IP")
    if not t.get("mtls"):
        out.append(f"{where}: {t.get('entry')} ({t.get('socket')}), not Istio mutual TLS")
    elif f"spiffe://{head_principal}" not in t["tls"]["sans"]:
        out.append(f"{where}: does not verify {head_principal}: {t['tls']['sans']}")
    return out


def submitter_dump(mesh: Mesh, run: RayJobRun,
                   ok: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    return settle(lambda: mesh.sidecar_config(run.submitter), ok)


def rbac_mismatches(mesh: Mesh, core: client.CoreV1Api, pods: list[Any],
                    callers: set[str]) -> tuple[dict[tuple[str, int, str], str],
                                                dict[str, dict[int, set[str]]]]:
    """Item 3 on each pod: on every port its `ray start` listens on, the principals the RBAC
    filters admit must be what the values say (the pod's own identity on every port but the
    dashboard and Ray Client, `callers` on the dashboard port, nobody else), and Envoy's
    decision for the pod's own identity, each caller and a stranger must agree. Returns the
    mismatches, keyed (role, port, principal or "principals"), and what was admitted."""
    out: dict[tuple[str, int, str], str] = {}
    seen: dict[str, dict[int, set[str]]] = {}
    for pod in pods:
        role = pod.metadata.labels["ray.io/node-type"]
        ports = listening_ports(ray_start(core, pod))
        chains = inbound(settled_dump(mesh, pod, set(ports)))
        own = own_principal(pod)
        want = expected(ports, own, {})
        for p, opener in ports.items():
            if opener == "dashboard-port":
                want[p] |= callers
        seen[role] = {}
        for p, opener in sorted(ports.items()):
            if p not in chains:
                out[(role, p, "chain")] = f"{opener}: no inbound chain"
                continue
            got = seen[role][p] = admitted(chains[p], p)
            if got != want[p]:
                out[(role, p, "principals")] = f"{opener}: {sorted(got)}, want {sorted(want[p])}"
            for who in sorted({own, STRANGER} | callers):
                if admits(chains[p], p, who) != (who in want[p]):
                    out[(role, p, who)] = f"{opener}: Envoy's decision for {who} is wrong"
    return out, seen


# ---- 1. the submitter Pod --------------------------------------------------------------------


def test_the_submitter_pod_has_a_native_sidecar_and_its_own_identity(
    mesh: Mesh, runs: dict[str, RayJobRun], injector_config: Injector
) -> None:
    run = runs[NS]
    sub = pod_manifest(mesh.api, run.submitter)
    assert submitter_problems(mesh.api, run.submitter) == []
    # created by the Job controller, from the Job KubeRay made for this RayJob
    (owner,) = run.submitter.metadata.owner_references
    assert (owner.kind, owner.name) == ("Job", NAME)
    (job_owner,) = run.job.metadata.owner_references
    assert (job_owner.kind, job_owner.name) == ("RayJob", NAME)
    inits = names(sub, "initContainers")
    assert inits.index("istio-init") < inits.index(PROXY), describe(sub)
    found = proxy(sub)
    assert found is not None and found[2].get("startupProbe"), describe(sub)
    # what the injector adds so peers send it mTLS, and the chart's submitter label
    labels = run.submitter.metadata.labels
    assert labels["security.istio.io/tlsMode"] == "istio"
    assert labels["meshray.io/submitter"] == NAME
    assert "meshray.io/cluster" not in labels  # not one of the cluster's Pods
    client.CoreV1Api(mesh.api).read_namespaced_service_account(f"{NAME}-submitter", NS)
    # Istio's injector offline (kube-inject, as test_injection.py) on the Job's Pod template
    # gives the same layout as istiod's webhook gave the live Pod.
    offline = inject(injector_config, job_pod(mesh.api, run.job))
    assert native(offline), describe(offline)
    assert (names(offline, "initContainers"), names(offline, "containers")) == (
        inits, names(sub, "containers"))


def test_control_a_classic_sidecar_fails_the_submitter_check(
    mesh: Mesh, runs: dict[str, RayJobRun], injector_config: Injector
) -> None:
    """The same Job template with `sidecar.istio.io/nativeSidecar: "false"` (what
    mesh.nativeSidecar=false, which the chart refuses for K8sJobMode, would render): istio-proxy
    becomes a regular container that outlives the submitter (istio#11045)."""
    assert native(inject(injector_config, job_pod(mesh.api, runs[CTL].job)))
    pod = inject(injector_config, job_pod(mesh.api, runs[CTL].job,
                                          {"sidecar.istio.io/nativeSidecar": "false"}))
    assert not native(pod) and PROXY in names(pod, "containers"), describe(pod)


# ---- 2. the submitter's outbound to the dashboard --------------------------------------------


def test_the_submitter_reaches_the_dashboard_over_l7_and_istio_mtls(
    mesh: Mesh, runs: dict[str, RayJobRun]
) -> None:
    run = runs[NS]
    core = client.CoreV1Api(mesh.api)
    head = own_principal(run.head)
    dump = submitter_dump(mesh, run,
                          lambda d: dashboard_problems(dashboard_hop(core, d, run), head) == [])
    hop = dashboard_hop(core, dump, run)
    assert dashboard_problems(hop, head) == []
    # KubeRay points the submitter at the job's RayCluster head Service (ClusterIP: the
    # chart's headService template), on its `dashboard` port.
    assert hop["service"] == f"{run.raycluster}-head-svc"
    assert hop["vip"] != run.head.status.pod_ip
    assert hop["cluster"] == f"outbound|8265||{hop['address'].rpartition(':')[0]}"
    t = hop["transport"]
    assert (t["type"], t["entry"]) == ("EDS", "tlsMode-istio")  # auto mTLS to an injected pod
    assert "istio" in t["tls"]["alpn"] and t["tls"]["client_cert"]
    assert t["tls"]["sni"] == f"outbound_.8265_._.{hop['address'].rpartition(':')[0]}"
    # The Service KubeRay adds for the RayJob (<rayjob>-head-svc, a copy of the head Service)
    # is L7 and mTLS the same way.
    copy_addr = f"{NAME}-head-svc.{NS}.svc.cluster.local:8265"
    assert dashboard_problems(dashboard_hop(core, dump, run, copy_addr), head) == []


def test_control_a_plaintext_or_tcp_dashboard_fails_the_check(
    mesh: Mesh, runs: dict[str, RayJobRun]
) -> None:
    """Two ways the check must fail: a DestinationRule turning TLS off for the head Service
    (the cluster keeps no mTLS socket), and the Service's dashboard port declared `tcp` (a
    tcp_proxy on the ClusterIP's listener)."""
    run = runs[CTL]
    core = client.CoreV1Api(mesh.api)
    crd = client.CustomObjectsApi(mesh.api)
    head = own_principal(run.head)
    svc = f"{run.raycluster}-head-svc"
    ok = submitter_dump(mesh, run,
                        lambda d: dashboard_problems(dashboard_hop(core, d, run), head) == [])
    assert dashboard_problems(dashboard_hop(core, ok, run), head) == []
    dr = {"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
          "metadata": {"name": "no-tls"},
          "spec": {"host": f"{svc}.{CTL}.svc.cluster.local",
                   "trafficPolicy": {"tls": {"mode": "DISABLE"}}}}
    crd.create_namespaced_custom_object("networking.istio.io", "v1", CTL, "destinationrules", dr)
    try:
        dump = submitter_dump(mesh, run, lambda d: not dashboard_hop(core, d, run)["transport"]
                              .get("mtls"))
        problems = dashboard_problems(dashboard_hop(core, dump, run), head)
        assert len(problems) == 1 and problems[0].endswith("not Istio mutual TLS"), problems
    finally:
        crd.delete_namespaced_custom_object(
            "networking.istio.io", "v1", CTL, "destinationrules", "no-tls")
    core.patch_namespaced_service(svc, CTL, {"spec": {"ports": [
        {"port": 8265, "appProtocol": "tcp"}]}})
    try:
        dump = submitter_dump(mesh, run, lambda d: dashboard_hop(core, d, run)["kind"] != "http")
        problems = dashboard_problems(dashboard_hop(core, dump, run), head)
        assert len(problems) == 1 and problems[0].endswith("tcp, not L7 HTTP"), problems
    finally:
        core.patch_namespaced_service(svc, CTL, {"spec": {"ports": [
            {"port": 8265, "appProtocol": "http"}]}})


# ---- 3. who the head admits ------------------------------------------------------------------


def test_the_submitter_is_admitted_to_the_dashboard_port_only(
    mesh: Mesh, runs: dict[str, RayJobRun]
) -> None:
    run = runs[NS]
    core = client.CoreV1Api(mesh.api)
    submitter = own_principal(run.submitter)
    assert submitter == f"cluster.local/ns/{NS}/sa/{NAME}-submitter"
    mismatches, seen = rbac_mismatches(mesh, core, run.pods, {submitter, OPERATOR_PRINCIPAL})
    assert mismatches == {}
    head_ports = listening_ports(ray_start(core, run.head))
    by_opener = {o: p for p, o in head_ports.items()}
    # the evidence, in words
    assert seen["head"][by_opener["dashboard-port"]] == {submitter, OPERATOR_PRINCIPAL}
    assert seen["head"][by_opener["ray-client-server-port"]] == set()
    assert {p for r in seen.values() for p, who in r.items() if submitter in who} == {
        by_opener["dashboard-port"]}
    assert {"port", "node-manager-port", "object-manager-port", "worker"} <= set(
        head_ports.values())
    assert set(seen) == {"head", "worker"}


def test_control_without_the_submitter_rule_the_filter_lacks_it(
    mesh: Mesh, runs: dict[str, RayJobRun]
) -> None:
    """The AuthorizationPolicy patched live without the submitter's rule: istiod drops the
    principal from the head's dashboard chains and the check reports exactly that."""
    run = runs[CTL]
    core = client.CoreV1Api(mesh.api)
    crd = client.CustomObjectsApi(mesh.api)
    submitter = own_principal(run.submitter)
    callers = {submitter, OPERATOR_PRINCIPAL}
    dash = next(p for p, o in listening_ports(ray_start(core, run.head)).items()
                if o == "dashboard-port")
    assert rbac_mismatches(mesh, core, [run.head], callers)[0] == {}
    ap = crd.get_namespaced_custom_object("security.istio.io", "v1", CTL,
                                          "authorizationpolicies", f"{NAME}-ray")
    rules = ap["spec"]["rules"]
    kept = [r for r in rules
            if submitter not in {p for f in r.get("from", []) for p in f["source"]
                                 .get("principals", [])}]
    assert len(kept) == len(rules) - 1
    crd.patch_namespaced_custom_object("security.istio.io", "v1", CTL, "authorizationpolicies",
                                       f"{NAME}-ray", {"spec": {"rules": kept}})
    try:
        wait_dump(mesh, run.head, lambda c: not admits(c[dash], dash, submitter))
        mismatches, seen = rbac_mismatches(mesh, core, [run.head], callers)
        assert set(mismatches) == {("head", dash, "principals"), ("head", dash, submitter)}
        assert seen["head"][dash] == {OPERATOR_PRINCIPAL}
    finally:
        crd.patch_namespaced_custom_object("security.istio.io", "v1", CTL,
                                           "authorizationpolicies", f"{NAME}-ray",
                                           {"spec": {"rules": rules}})
        wait_dump(mesh, run.head, lambda c: admits(c[dash], dash, submitter))


# ---- 4. the mesh objects select the job's Pods -----------------------------------------------


def test_the_job_runs_on_a_cluster_named_by_the_operator(runs: dict[str, RayJobRun]) -> None:
    for run in runs.values():
        assert GENERATED.match(run.raycluster), run.raycluster
        for pod in run.pods:
            assert pod.metadata.labels["ray.io/cluster"] == run.raycluster
            assert pod.metadata.labels["meshray.io/cluster"] == NAME
            assert pod.metadata.labels["security.istio.io/tlsMode"] == "istio"  # injected


def test_the_job_pods_get_the_sidecar_ingress_and_strict_mtls(
    mesh: Mesh, runs: dict[str, RayJobRun]
) -> None:
    run = runs[NS]
    for pod in run.pods:
        assert sidecar_ingress(mesh, NS, pod), pod.metadata.name  # a Sidecar selects it
    report = port_report(mesh, NS, run.pods)
    assert report["problems"] == []
    assert report["conflicts"] == set()
    assert report["not_l7"] == set()
    assert istiod_conflicts(mesh, NS) == []


def _patch_selector(mesh: Mesh, plural: str, group: str, name: str, key: str,
                    labels: dict[str, Any]) -> None:
    """Replace a live object's label selector (`key`: selector or workloadSelector)."""
    crd = client.CustomObjectsApi(mesh.api)
    obj = crd.get_namespaced_custom_object(group, "v1", CTL, plural, name)
    field = "matchLabels" if key == "selector" else "labels"
    old = obj["spec"][key][field]
    patch = {"spec": {key: {field: {**{k: None for k in old}, **labels}}}}
    crd.patch_namespaced_custom_object(group, "v1", CTL, plural, name, patch)


def test_control_selecting_by_the_rayjob_name_misses_the_pods(
    mesh: Mesh, runs: dict[str, RayJobRun]
) -> None:
    """What selecting by `ray.io/cluster: <rayjob>` would give: the PeerAuthentication no
    longer selects the job's Pods (the mesh default, PERMISSIVE: plaintext chains), and without
    the head's Sidecar istiod builds the head's inbound from the Services, where KubeRay's
    `metrics` (tcp) meets the headless Service's (http), which istiod reports as a conflict."""
    run = runs[CTL]
    by_name = {"ray.io/cluster": NAME}
    worker = run.workers[0]
    # clean before (the head in full; the worker's GCS-facing raylet port): the check passes
    assert port_report(mesh, CTL, [run.head])["problems"] == []
    assert mutual_tls_only(inbound(settled_dump(mesh, worker, {6380}))[6380])
    _patch_selector(mesh, "peerauthentications", "security.istio.io", NAME, "selector", by_name)
    try:
        settle(lambda: inbound(mesh.sidecar_config(worker)),
               lambda c: not mutual_tls_only(c.get(6380, [])))
        problems = port_report(mesh, CTL, run.pods)["problems"]
        assert problems and all(p.endswith("accepts more than mutual TLS") for p in problems)
        roles = {p.split()[0] for p in problems}
        assert roles == {"head", "worker"}, problems
    finally:
        _patch_selector(mesh, "peerauthentications", "security.istio.io", NAME, "selector",
                        {"meshray.io/cluster": NAME})
    # put back, and wait for istiod: the head's checks below read mutual-TLS-only chains
    settle(lambda: inbound(mesh.sidecar_config(worker)),
           lambda c: mutual_tls_only(c.get(6380, [])))
    head = run.head
    _patch_selector(mesh, "sidecars", "networking.istio.io", f"{NAME}-head", "workloadSelector",
                    {**by_name, "ray.io/node-type": "head"})
    try:
        assert sidecar_ingress(mesh, CTL, head) == {}
        # istiod records the conflict while it builds the head's listeners for a request.
        conflicts = settle(lambda: (mesh.sidecar_config(head), istiod_conflicts(mesh, CTL))[1],
                           bool)
        assert conflicts == [f"{head.metadata.name}.{CTL}"], conflicts
        assert port_report(mesh, CTL, [head])["conflicts"] == {("head", 8080)}
    finally:
        _patch_selector(mesh, "sidecars", "networking.istio.io", f"{NAME}-head",
                        "workloadSelector", {"meshray.io/cluster": NAME,
                                             "ray.io/node-type": "head"})


# ---- what was measured -----------------------------------------------------------------------


def _ranges(ports: list[int]) -> str:
    """10002, 10003, ..., 10051 -> 10002-10051."""
    runs: list[list[int]] = []
    for p in sorted(ports):
        if runs and runs[-1][-1] == p - 1:
            runs[-1].append(p)
        else:
            runs.append([p])
    return ", ".join(str(r[0]) if len(r) == 1 else f"{r[0]}-{r[-1]}" for r in runs)


def test_rayjob_table(mesh: Mesh, runs: dict[str, RayJobRun],
                      capsys: pytest.CaptureFixture[str]) -> None:
    """The measured tables of docs/mesh-e2e.md, written under .cache/cluster (and printed)."""
    run = runs[NS]
    core = client.CoreV1Api(mesh.api)
    head = own_principal(run.head)
    dump = submitter_dump(mesh, run,
                          lambda d: dashboard_problems(dashboard_hop(core, d, run), head) == [])
    rows = [f"RayCluster: {run.raycluster}; install -> submitter running: {run.seconds}s",
            f"submitter: {describe(pod_manifest(mesh.api, run.submitter))}, "
            f"serviceAccount {run.submitter.spec.service_account_name}", "",
            "| dashboard address | listener | chain | cluster | socket to the head | ALPN | SNI "
            "| verifies |", "|---|---|---|---|---|---|---|---|"]
    for addr in (None, f"{NAME}-head-svc.{NS}.svc.cluster.local:8265"):
        h = dashboard_hop(core, dump, run, addr)
        t = h["transport"]
        tls = t.get("tls") or {}
        rows.append(f"| {h['address']} | {h['listener']} | {h['kind']} | {h['cluster']} "
                    f"| {t.get('type')} {t.get('entry')} ({t.get('socket')}) "
                    f"| {tls.get('alpn')} | {tls.get('sni')} | {tls.get('sans')} |")
    callers = {own_principal(run.submitter), OPERATOR_PRINCIPAL}
    _, seen = rbac_mismatches(mesh, core, run.pods, callers)
    rows += ["", "| pod | ports | principals the RBAC filters admit |", "|---|---|---|"]
    for role, ports in seen.items():
        groups: dict[tuple[str, ...], list[int]] = {}
        for p, who in ports.items():
            groups.setdefault(tuple(sorted(who)), []).append(p)
        for who_t, ps in groups.items():
            rows.append(f"| {role} | {_ranges(ps)} | {', '.join(who_t) or '(nobody)'} |")
    svcs = {s.metadata.name: s for s in core.list_namespaced_service(NS).items}
    rows += ["", "| Service | type | 8265 appProtocol | exportTo |", "|---|---|---|---|"]
    for name, s in sorted(svcs.items()):
        dash = [p.app_protocol for p in s.spec.ports or [] if p.port == 8265]
        export = (s.metadata.annotations or {}).get("networking.istio.io/exportTo", "-")
        rows.append(f"| {name} | {'headless' if s.spec.cluster_ip == 'None' else 'ClusterIP'} "
                    f"| {dash[0] if dash else '-'} | {export} |")
    # Seen from the other namespace's submitter: which of this namespace's Services it gets.
    other = mesh.sidecar_config(runs[CTL].submitter)
    visible = sorted({c["name"].split("|")[3].split(".")[0] for c in other["clusters"]
                      if c["name"].startswith("outbound|") and f".{NS}.svc" in c["name"]})
    rows.append(f"\nvisible from {CTL}: {visible}")
    assert f"{run.raycluster}-head-svc" not in visible  # exportTo "." on KubeRay's head Service
    # ...and on KubeRay's RayJob copy, which takes the headService template's annotations
    assert f"{NAME}-head-svc" not in visible, visible
    table = "\n".join(rows) + "\n"
    out = CACHE / "rayjob-mesh.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(table)
    with capsys.disabled():
        print("\n" + table)
