"""The restricted Pod Security Standard, as the API server's own PodSecurity admission enforces it.

test_install.py installs every values file into a namespace that enforces `restricted` and
waits for every Pod the operator makes: that is the positive claim. This module is its negative
control, so the claim can fail: the defaults with one acknowledged exception on the head
(`podSecurity.acknowledgeUnrestricted` and the capability `IPC_LOCK`, what a GPU group asks
for) installed into a restricted namespace: the admission refuses the head Pod, naming the
container and the capability, and no Ray Pod exists there (both operators, v1.1.0 and v1.6.2,
measured, create the workers only once the head exists). The same release in a namespace
without the label gets its head and worker Pods, so the admission is the difference.
"""

from __future__ import annotations

import json

import pytest
from cases import RESTRICTED, value_args
from kube import CHART, HELMS, Cluster, Helm, pod_security_refusals, ray_pods, wait_for
from kubernetes import client

# What a GPU group asks for: one capability beyond the restricted set, acknowledged.
IPC_LOCK = (
    "--set",
    "podSecurity.acknowledgeUnrestricted=true",
    "--set-json",
    'head.securityContext={"capabilities":{"add":["IPC_LOCK"]}}',
)


def _install(cluster: Cluster, ns: str, labels: dict[str, str]) -> None:
    client.CoreV1Api(cluster.api).create_namespace({"metadata": {"name": ns, "labels": labels}})
    Helm(HELMS["helm4"], cluster.kubeconfig).run(
        "install", "psa", str(CHART), "-n", ns, *value_args("defaults", cluster.version), *IPC_LOCK
    )


def test_a_pod_outside_restricted_is_refused(cluster: Cluster) -> None:
    core = client.CoreV1Api(cluster.api)
    ns, control = "psa-restricted", "psa-unlabelled"
    _install(cluster, ns, RESTRICTED)
    _install(cluster, control, {})
    try:
        # the control: without the label the operator creates the head (and the worker)
        pods = wait_for(
            f"head and worker Pods in {control}",
            lambda: len(p := ray_pods(core, control)) == 2 and p,
            timeout=90,
        )
        head = next(p for p in pods if p.metadata.labels["ray.io/node-type"] == "head")
        added = head.spec.containers[0].security_context.capabilities.add
        assert added == ["IPC_LOCK"], added
        # under restricted: the head is refused with the reason, and with it every Ray Pod
        msgs = wait_for(
            f"a PodSecurity refusal in {ns}", lambda: pod_security_refusals(core, ns), timeout=90
        )
        assert ray_pods(core, ns) == [], [p.metadata.name for p in ray_pods(core, ns)]
        assert any('"restricted:latest"' in m and "IPC_LOCK" in m for m in msgs), json.dumps(msgs)
        assert any('container "ray-head"' in m for m in msgs), json.dumps(msgs)
    finally:
        for n in (ns, control):
            Helm(HELMS["helm4"], cluster.kubeconfig).run("uninstall", "psa", "-n", n, check=False)


def test_the_install_label_is_one_the_api_server_enforces(cluster: Cluster) -> None:
    """The label test_install.py puts on its namespaces is one the API server enforces: a
    server-side dry run of a privileged Pod there is refused (a misspelt label would admit it)."""
    core = client.CoreV1Api(cluster.api)
    ns = "psa-probe"
    core.create_namespace({"metadata": {"name": ns, "labels": RESTRICTED}})
    pod = {
        "metadata": {"name": "probe"},
        "spec": {
            "containers": [
                {"name": "c", "image": "busybox", "securityContext": {"privileged": True}}
            ]
        },
    }
    with pytest.raises(client.ApiException) as refused:
        core.create_namespaced_pod(ns, pod, dry_run="All")
    assert refused.value.status == 403
    message = str(json.loads(refused.value.body)["message"])
    assert 'violates PodSecurity "restricted:latest"' in message, message
