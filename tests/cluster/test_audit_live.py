"""`meshray audit --cluster` against the local control plane and the real operator's Pods.

A fresh install audits clean (exit 0). Then the stale-Pod case the chart exists to prevent is
made on purpose: no Recreate strategy, a helm upgrade that shifts the worker range, allowed by
the user. The RayCluster and the headless Service move; the running Pods keep their flags, and
the live audit must name them (exit 1). Deleting the Pods, as the audit's fix says, makes the
operator recreate them and the audit clean again.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from kube import CHART, HELMS, Cluster, Helm, ray_pods, running, wait_for
from kubernetes import client

MESHRAY = str(Path(sys.executable).parent / "meshray")
EXAMPLES = Path(CHART).parents[1] / "values-examples"


def install(cluster: Cluster, helm: Helm, release: str, ns: str, *extra: str) -> None:
    """helm install into a new namespace; KubeRay v1.1.0 knows no upgradeStrategy."""
    strategy = "" if cluster.version == "v1.1.0" else "Recreate"
    helm.run("install", release, str(CHART), "-n", ns, "--create-namespace",
             "--set", f"kuberay.upgradeStrategy={strategy}", *extra)


def audit(cluster: Cluster, ns: str) -> tuple[int, list[dict[str, object]]]:
    res = subprocess.run(
        [
            MESHRAY,
            "audit",
            "--cluster",
            "-n",
            ns,
            "--kubeconfig",
            str(cluster.kubeconfig),
            "--format",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "KUBECONFIG": "/nonexistent"},  # --kubeconfig must be what is read
    )
    assert res.returncode in (0, 1), res.stderr
    return res.returncode, json.loads(res.stdout)["findings"]


def test_live_audit_sees_stale_pods(cluster: Cluster) -> None:
    ns = "live-audit"
    helm = Helm(HELMS["helm4"], cluster.kubeconfig)
    sets = ["--set", "kuberay.upgradeStrategy="]
    helm.run("install", "live", str(CHART), "-n", ns, "--create-namespace", *sets)
    core = client.CoreV1Api(cluster.api)
    name = "live-meshray"
    wait_for("2 running pods", lambda: len(p := ray_pods(core, ns, name)) == 2 and running(p))

    rc, findings = audit(cluster, ns)
    assert (rc, [f for f in findings if f["severity"] == "error"]) == (0, [])

    helm.run(
        "upgrade",
        "live",
        str(CHART),
        "-n",
        ns,
        "--reset-values",
        *sets,
        "--set",
        "ports.minWorkerPort=10102",
        "--set",
        "ports.maxWorkerPort=10151",
        "--set",
        "kuberay.allowPortChangeWithoutRecreate=true",
    )
    rc, findings = audit(cluster, ns)
    stale = {(f["check"], f["name"]) for f in findings}
    pods = {p.metadata.name for p in ray_pods(core, ns, name)}
    assert rc == 1
    assert {n for c, n in stale if c == "pod-stale-flags"} == pods
    assert {n for c, n in stale if c == "pod-port-undeclared"} == pods

    core.delete_collection_namespaced_pod(ns, label_selector=f"ray.io/cluster={name}")
    wait_for(
        "2 new running pods",
        lambda: (
            len(p := ray_pods(core, ns, name)) == 2
            and running(p)
            and not ({x.metadata.name for x in p} & pods)
        ),
        timeout=60,
    )
    rc, findings = audit(cluster, ns)
    assert (rc, [f for f in findings if f["severity"] == "error"]) == (0, [])
    helm.run("uninstall", "live", "-n", ns)


def test_live_audit_sees_kuberays_tcp_head_service_conflict(cluster: Cluster) -> None:
    """KubeRay's own head Service (all ports tcp) against the headless Service's http metrics
    port: with the Sidecars' ingress off, the live audit must call it a conflict; with the
    chart's defaults (the Sidecar ingress decides) it must not."""
    helm = Helm(HELMS["helm4"], cluster.kubeconfig)
    core = client.CoreV1Api(cluster.api)
    for ns, extra, want in (
        ("conflict-off", ["--set", "mesh.sidecar.inbound=false"], {8080}),
        ("conflict-on", [], set()),
    ):
        install(cluster, helm, "pc", ns, *extra)
        wait_for(
            "the head Service",
            lambda ns=ns: core.read_namespaced_service("pc-meshray-head-svc", ns),
        )
        _, findings = audit(cluster, ns)
        got = {f["value"] for f in findings if f["check"] == "service-protocol-conflict"}
        assert got == want, findings
        helm.run("uninstall", "pc", "-n", ns)


def test_live_audit_reads_gateway_api_routes(cluster: Cluster) -> None:
    """The Gateway API example installed: the live audit lists its routes and Gateway and finds
    nothing wrong; with the routes' backend Service deleted it reports each route's missing
    backend (route-service-missing), which it can only do if it read the live routes."""
    helm = Helm(HELMS["helm4"], cluster.kubeconfig)
    core = client.CoreV1Api(cluster.api)
    ns = "gwapi-live"
    install(cluster, helm, "gw", ns, "-f", str(EXAMPLES / "gatewayapi-http.yaml"))
    try:
        wait_for("the head Service",
                 lambda: core.read_namespaced_service("ray-gwapi-head-svc", ns))
        code, findings = audit(cluster, ns)
        assert code == 0, findings
        assert not [f for f in findings if str(f["check"]).startswith("route-")], findings
        core.delete_namespaced_service("ray-gwapi-gateway-svc", ns)
        code, findings = audit(cluster, ns)
        missing = {str(f["name"]) for f in findings if f["check"] == "route-service-missing"}
        assert code == 1 and missing, findings
    finally:
        helm.run("uninstall", "gw", "-n", ns)


def test_live_audit_reads_ambient_waypoint(cluster: Cluster) -> None:
    """The ambient example with its waypoint installed: the live audit reads the waypoint
    Gateway, the RayCluster's pod labels and KubeRay's own head Service (which carries
    istio.io/use-waypoint from the chart's headService template) and finds nothing wrong.
    With the Gateway relabelled istio.io/waypoint-for: service, the waypoint no longer takes
    traffic addressed to the pods: every group's use-waypoint label must be reported
    (waypoint-for-mismatch, exit 1), KubeRay's head Service (Service traffic) must not."""
    helm = Helm(HELMS["helm4"], cluster.kubeconfig)
    core = client.CoreV1Api(cluster.api)
    custom = client.CustomObjectsApi(cluster.api)
    ns = "ambient-live"
    install(cluster, helm, "amb", ns, "-f", str(EXAMPLES / "ambient-waypoint.yaml"))
    try:
        head_svc = wait_for("the head Service",
                            lambda: core.read_namespaced_service("ray-ambient-wp-head-svc", ns))
        assert (head_svc.metadata.labels or {}).get("istio.io/use-waypoint") == \
            "ray-ambient-wp-waypoint", head_svc.metadata.labels
        code, findings = audit(cluster, ns)
        assert (code, findings) == (0, []), json.dumps(findings, indent=1)

        custom.patch_namespaced_custom_object(
            "gateway.networking.k8s.io", "v1", ns, "gateways", "ray-ambient-wp-waypoint",
            {"metadata": {"labels": {"istio.io/waypoint-for": "service"}}})
        code, findings = audit(cluster, ns)
        flagged = {(str(f["kind"]), str(f["key"])) for f in findings
                   if f["check"] == "waypoint-for-mismatch"}
        assert code == 1, findings
        assert flagged and {kind for kind, _ in flagged} == {"RayCluster"}, findings
        assert any(key.startswith("spec.headGroupSpec.template") for _, key in flagged), flagged
        assert any(key.startswith("spec.workerGroupSpecs") for _, key in flagged), flagged
    finally:
        helm.run("uninstall", "amb", "-n", ns)


def test_live_audit_names_a_deployment_sharing_the_ray_identity(cluster: Cluster) -> None:
    """The Ray pods run as ServiceAccount shared (create=false, acknowledged), which the chart's
    ALLOW policy admits to the GCS and raylets. Alone, nothing else runs as it: no identity
    finding (negative control). A Deployment running as shared is then read live and named
    once, as Deployment/app: not its ReplicaSet or Pod, which the controller-manager creates
    with ownerReferences; acknowledged, the finding is a warning (exit 0)."""
    helm = Helm(HELMS["helm4"], cluster.kubeconfig)
    core = client.CoreV1Api(cluster.api)
    ns = "identity-live"
    core.create_namespace({"metadata": {"name": ns}})
    core.create_namespaced_service_account(ns, {"metadata": {"name": "shared"}})
    install(cluster, helm, "ids", ns, "--set", "serviceAccount.create=false",
            "--set", "serviceAccount.name=shared",
            "--set", "serviceAccount.acknowledgeShared=true")
    try:
        wait_for("the RayCluster's Pods", lambda: ray_pods(core, ns, "ids-meshray"))
        code, findings = audit(cluster, ns)
        assert code == 0, findings
        assert not [f for f in findings if str(f["check"]).startswith("identity-")], findings

        client.AppsV1Api(cluster.api).create_namespaced_deployment(ns, {
            "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "app"},
            "spec": {"selector": {"matchLabels": {"app": "app"}}, "template": {
                "metadata": {"labels": {"app": "app"}},
                "spec": {"serviceAccountName": "shared",
                         "containers": [{"name": "main", "image": "busybox:1"}]}}}})
        wait_for("the Deployment's Pod", lambda: core.list_namespaced_pod(
            ns, label_selector="app=app").items)
        code, findings = audit(cluster, ns)
        shared = [f for f in findings if str(f["check"]).startswith("identity-")]
        assert code == 0, findings
        assert [(f["check"], f["severity"], f["kind"], f["name"]) for f in shared] == [
            ("identity-shared-service-account", "warning", "RayCluster", "ids-meshray")], shared
        assert "(in the input: Deployment/app)" in str(shared[0]["message"]), shared
    finally:
        helm.run("uninstall", "ids", "-n", ns)
