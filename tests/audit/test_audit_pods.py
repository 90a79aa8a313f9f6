"""meshray/audit/pods.py: running Ray Pods (audit --cluster) against the Services and RayCluster.

The base adds to the clean fixture what a live cluster also holds: the head and worker Pods
KubeRay creates from that RayCluster and KubeRay's head Service. The Pods are written by hand
in the shape the real operator v1.6.2 gave them on the local control plane (command
``/bin/bash -c --``, one ``ulimit ...; ray start --k=v ...`` script, values unquoted, a pod IP
in status). Each case edits one fact and names the check it must trigger.
"""

from __future__ import annotations

from typing import Any

import pytest
from audit_support import Docs, base
from meshray.audit import Finding, audit
from meshray.audit import pods as family
from meshray.manifests import Manifest

FQDN = "--node-ip-address=${POD_IP//[.:]/-}.demo-headless-svc.ray.svc.cluster.local"
NODE = (
    "--node-manager-port=6380 --object-manager-port=6381 --runtime-env-agent-port=6382 "
    "--dashboard-agent-grpc-port=6383 --dashboard-agent-listen-port=52365 "
    "--metrics-export-port=8080 --min-worker-port=10002 --max-worker-port=10005"
)


def _pod(name: str, node_type: str, group: str, ip: str, script: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": "ray",
            "labels": {
                "ray.io/cluster": "demo",
                "ray.io/node-type": node_type,
                "ray.io/group": group,
                "ray.io/is-ray-node": "yes",
            },
        },
        "spec": {
            "containers": [
                {
                    "name": f"ray-{node_type}",
                    "image": "rayproject/ray:2.46.0",
                    "command": ["/bin/bash", "-c", "--"],
                    "args": [script],
                    "env": [
                        {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}
                    ],
                    "ports": [
                        {"name": "gcs-server", "containerPort": 6379},
                        {"name": "dashboard", "containerPort": 8265},
                        {"name": "client", "containerPort": 10001},
                    ]
                    if node_type == "head"
                    else [],
                }
            ]
        },
        "status": {"phase": "Running", "podIP": ip},
    }


def live_base() -> Docs:
    docs = base()
    docs.append(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "demo-head-svc", "namespace": "ray"},
            "spec": {
                "clusterIP": "None",
                "selector": {"ray.io/cluster": "demo", "ray.io/node-type": "head"},
                "ports": [
                    {"name": n, "port": p, "targetPort": p, "appProtocol": "tcp"}
                    for n, p in (("gcs-server", 6379), ("dashboard", 8265), ("client", 10001))
                ],
            },
        }
    )
    docs.append(
        _pod(
            "demo-head-x1",
            "head",
            "headgroup",
            "10.1.0.5",
            "ulimit -n 65536; ray start --head --block --dashboard-host=0.0.0.0 "
            f"--port=6379 --dashboard-port=8265 --ray-client-server-port=10001 {NODE} "
            f"{FQDN} ",
        )
    )
    docs.append(
        _pod(
            "demo-cpu-worker-y2",
            "worker",
            "cpu",
            "10.1.0.6",
            "ulimit -n 65536; ray start  --address=demo-head-svc.ray.svc.cluster.local:6379"
            f"  --block  {NODE}  {FQDN}  --num-cpus=1 ",
        )
    )
    return docs


def run(docs: Docs) -> list[Finding]:
    return audit([Manifest(d, f"test#{i}") for i, d in enumerate(docs)])


def pod(docs: Docs, node_type: str) -> dict[str, Any]:
    return next(
        d
        for d in docs
        if d["kind"] == "Pod" and d["metadata"]["labels"]["ray.io/node-type"] == node_type
    )


def edit_args(node_type: str, old: str, new: str) -> Any:
    def mutate(docs: Docs) -> None:
        c = pod(docs, node_type)["spec"]["containers"][0]
        assert old in c["args"][0]
        c["args"][0] = c["args"][0].replace(old, new)

    return mutate


def rc_group(docs: Docs) -> dict[str, Any]:
    rc = next(d for d in docs if d["kind"] == "RayCluster")
    return rc["spec"]["workerGroupSpecs"][0]


CASES: list[tuple[str, str, Any]] = [
    # the Pod predates a helm upgrade that moved the worker range (what REFERENCE §2 measured)
    (
        "pod-port-undeclared",
        "error",
        edit_args("worker", "--max-worker-port=10005", "--max-worker-port=10007"),
    ),
    (
        "pod-stale-flags",
        "error",
        edit_args("worker", "--max-worker-port=10005", "--max-worker-port=10007"),
    ),
    (
        "pod-port-undeclared",
        "error",
        edit_args("head", "--object-manager-port=6381", "--object-manager-port=6390"),
    ),
    (
        "pod-stale-flags",
        "error",  # the RayCluster changed, the Pod did not
        lambda d: rc_group(d)["rayStartParams"].update({"object-manager-port": "6390"}),
    ),
    ("pod-node-ip", "error", edit_args("worker", FQDN, "--node-ip-address=$POD_IP")),
    (
        "pod-node-ip",
        "error",  # the FQDN of another pod
        lambda d: (
            pod(d, "worker")["status"].update(podIP="10.1.0.7")
            or edit_args(
                "worker", FQDN, "--node-ip-address=10-1-0-6.demo-headless-svc.ray.svc.cluster.local"
            )(d)
        ),
    ),
    (
        "pod-command-unreadable",
        "error",
        lambda d: pod(d, "worker")["spec"]["containers"][0].update(args=["sleep infinity"]),
    ),
]


def test_live_base_is_clean() -> None:
    assert [f.line() for f in run(live_base())] == []


@pytest.mark.parametrize(
    ("check", "severity", "mutate"), CASES, ids=[f"{c}-{i}" for i, (c, _, _) in enumerate(CASES)]
)
def test_check_triggers(check: str, severity: str, mutate: Any) -> None:
    docs = live_base()
    mutate(docs)
    hits = [f for f in run(docs) if f.check == check]
    assert hits, f"{check} not reported: {[f.line() for f in run(docs)]}"
    assert {f.severity for f in hits} == {severity}
    assert all(f.kind == "Pod" and f.fix for f in hits)


def test_undeclared_ports_are_named() -> None:
    docs = live_base()
    edit_args("worker", "--max-worker-port=10005", "--max-worker-port=10007")(docs)
    [f] = [f for f in run(docs) if f.check == "pod-port-undeclared"]
    assert f.value == [10006, 10007]
    assert "10006 (worker port range)" in f.message


def test_expand_handles_the_forms_ray_start_flags_use() -> None:
    env = {"POD_IP": "fd00::1", "X": "a"}
    assert family.expand("${POD_IP//[.:]/-}.svc", env) == "fd00--1.svc"
    assert family.expand("$X-${X}", env) == "a-a"
    assert family.expand("$UNSET.x", env) == ".x"
