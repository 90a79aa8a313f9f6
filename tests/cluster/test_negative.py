"""Negative controls: the cluster oracle fails when the invariant is broken.

The chart's own render is applied straight to the API server (no helm), once as rendered (the
oracle must pass, so the controls below fail for the reason they name), once with one port
dropped from the headless Service, and once with a RayCluster whose flags disagree with the
Service. Then the operator is restarted at its default (init container injection on) to show
what STRICT users without the prerequisite get, and that NOTES name the fix.
"""

from __future__ import annotations

import copy
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cases import OPERATOR_SETS
from kube import HELMS, Cluster, Helm, dyn, ray_pods, running, wait_for
from kubernetes import client
from oracle import check_cluster

MESHRAY = str(Path(sys.executable).parent / "meshray")
Mutator = Callable[[list[dict[str, Any]]], None]


def _render(cluster: Cluster, ns: str) -> list[dict[str, Any]]:
    sets = [a for s in OPERATOR_SETS.get(cluster.version, ()) for a in ("--set", s)]
    return Helm(HELMS["helm4"], cluster.kubeconfig).template("neg", ns, extra=sets)


def _apply(cluster: Cluster, ns: str, docs: list[dict[str, Any]]) -> str:
    core = client.CoreV1Api(cluster.api)
    core.create_namespace({"metadata": {"name": ns}})
    d = dyn(cluster.api)
    for doc in docs:
        res = d.resources.get(api_version=doc["apiVersion"], kind=doc["kind"])
        res.create(body=doc, namespace=ns)
    name = next(doc["metadata"]["name"] for doc in docs if doc["kind"] == "RayCluster")
    rc = next(doc for doc in docs if doc["kind"] == "RayCluster")
    n = 1 + sum(int(g["replicas"]) for g in rc["spec"]["workerGroupSpecs"])
    wait_for(
        f"{n} running pods in {ns}",
        lambda: len(p := ray_pods(core, ns, name)) == n and running(p),
        timeout=90,
    )
    return name


def _drop_service_port(docs: list[dict[str, Any]]) -> None:
    svc = next(
        d
        for d in docs
        if d["kind"] == "Service" and d["metadata"]["name"].endswith("-headless-svc")
    )
    svc["spec"]["ports"] = [p for p in svc["spec"]["ports"] if p["port"] != 6381]


def _disagreeing_flags(docs: list[dict[str, Any]]) -> None:
    rc = next(d for d in docs if d["kind"] == "RayCluster")
    rc["spec"]["workerGroupSpecs"][0]["rayStartParams"]["max-worker-port"] = "10061"


def _unchanged(docs: list[dict[str, Any]]) -> None:
    return None


@pytest.mark.parametrize(
    ("label", "mutate", "expect"),
    [
        ("as-rendered", _unchanged, None),
        ("service-drops-6381", _drop_service_port, "listens on 6381 (object-manager-port)"),
        ("flags-disagree", _disagreeing_flags, "listens on 10052 (worker)"),
    ],
    ids=["as-rendered", "service-drops-6381", "flags-disagree"],
)
def test_oracle_fails_when_the_invariant_breaks(
    cluster: Cluster, label: str, mutate: Mutator, expect: str | None
) -> None:
    ns = f"neg-{label}"
    docs = copy.deepcopy(_render(cluster, ns))
    mutate(docs)
    name = _apply(cluster, ns, docs)
    problems, _ = check_cluster(client.CoreV1Api(cluster.api), ns, name)
    if expect is None:
        assert problems == []
    else:
        assert any(expect in p for p in problems), problems


def test_default_operator_injects_wait_gcs_ready_and_notes_say_so(
    cluster: Cluster, tmp_path: Path
) -> None:
    """The operator at its default injects `wait-gcs-ready` into worker Pods (it would start
    before istio-proxy and be refused under STRICT); the chart's NOTES name the fix."""
    env_before = dict(cluster.cp.operator_env)
    cluster.cp.restart_operator({})
    try:
        helm = Helm(HELMS["helm4"], cluster.kubeconfig)
        ns = "default-operator"
        sets = [a for s in OPERATOR_SETS.get(cluster.version, ()) for a in ("--set", s)]
        # without native sidecars (mesh.nativeSidecar=false) the NOTES ask for the operator env
        res = helm.run("install", "dflt", str(helm_chart()), "-n", ns, "--create-namespace",
                       "--set", "mesh.nativeSidecar=false", *sets)
        assert "ENABLE_INIT_CONTAINER_INJECTION=false" in res.stdout
        not_native = tmp_path / "not-native.yaml"
        not_native.write_text("mesh:\n  nativeSidecar: false\n")
        validate = subprocess.run(
            [MESHRAY, "validate", str(not_native)], capture_output=True, text=True, timeout=120,
            check=False,
        )
        assert "ENABLE_INIT_CONTAINER_INJECTION=false" in validate.stderr
        assert "wait-gcs-ready" in validate.stderr
        core = client.CoreV1Api(cluster.api)
        pods = wait_for(
            "the worker pod",
            lambda: [
                p
                for p in ray_pods(core, ns)
                if p.metadata.labels.get("ray.io/node-type") == "worker"
            ],
            timeout=60,
        )
        inits = [c.name for c in pods[0].spec.init_containers or []]
        assert "wait-gcs-ready" in inits, inits
        helm.run("uninstall", "dflt", "-n", ns)
    finally:
        cluster.cp.restart_operator(env_before)


def helm_chart() -> str:
    from kube import CHART

    return str(CHART)
