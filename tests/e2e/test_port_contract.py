"""Prove the port contract with real Ray, started from the real KubeRay operator's Pods,
behind firewalls built from the live Services and EndpointSlices.

For the default values and every values example, on each Ray version (the chart's default and
the oldest it supports), the chart is `helm install`ed with that ``ray.version`` on a local
control plane with the real KubeRay operator; the harness plays kubelet for the head Pod and one
worker Pod (each gets its network namespace's address), and starts each node from its Pod as
the API server holds it. Each node's firewall admits from its peer only the ports of the
Services whose EndpointSlices list that Pod. The workload must pass, no Ray process may listen
outside those Services, and no connection attempt may be dropped. The negative controls show
each kind of check can fail.
"""

from __future__ import annotations

from typing import Any

import pytest
from e2e_support import (
    CAPTURE_DIR,
    DEFAULT,
    LOG_DIR,
    RAY_VERSIONS,
    broken_fqdn,
    guide,
    metrics_env,
    values_examples,
    venv_for,
)
from e2e_support import example as example_dep
from raynet import capture
from raynet.live import LocalCluster
from raynet.scenario import RunConfig, RunResult, run, worker_ports_of

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("e2e_host")]

# Examples that get the whole workload on every version; the others get the shorter one
# (still: both nodes started from their Pods, cross-node tasks, actors, an object pull,
# metrics, a job submission, and the listening-port audit). See tests/e2e/README.md.
FULL = {DEFAULT, "kuberay-istio-guide"}


def ray_params(pod_argv: tuple[str, ...]) -> dict[str, str]:
    """`--k=v` words of a Pod's (unexpanded) command line: only for values without variables."""
    words = " ".join(pod_argv).split()
    return {
        w[2:].split("=", 1)[0]: w.split("=", 1)[1] for w in words if w.startswith("--") and "=" in w
    }


def execute(record: list[RunResult], cfg: RunConfig) -> RunResult:
    result = run(cfg)
    record.append(result)
    print(result.summary())
    return result


def profile_kwargs(full: bool) -> dict[str, Any]:
    if full:
        return {"profile": "full", "actors": 8, "tasks": 5000, "object_mib": 64}
    return {"profile": "smoke", "actors": 3, "tasks": 500, "object_mib": 16}


def assert_clean(result: RunResult) -> None:
    failed = [s.name for s in result.steps if not s.ok]
    assert result.ok, f"steps failed: {failed}\n{result.summary()}"
    dropped = {role: ports for role, ports in result.blocked.items() if ports}
    assert not dropped, f"connection attempts dropped by the firewall: {dropped}"


# ---- every example on every version -----------------------------------------------------------
@pytest.mark.parametrize("version", RAY_VERSIONS)
@pytest.mark.parametrize("example", [DEFAULT, *values_examples()])
def test_example(
    example: str, version: str, e2e_cluster: LocalCluster, record_run: list[RunResult]
) -> None:
    venv = venv_for(version)
    label = f"{example}@{version}"
    cfg = RunConfig(
        cluster=e2e_cluster.read(example_dep(example, version), label),
        venv=venv,
        label=label,
        log_dir=LOG_DIR,
        capture_dir=CAPTURE_DIR if capture.available() else None,
        **profile_kwargs(example in FULL),
    )
    result = execute(record_run, cfg)
    assert_clean(result)
    # The rendered worker range is what Ray used: every worker-range listener is inside it.
    used = result.worker_ports_used
    assert used.get("worker"), "no worker-range port seen on the worker: audit not sampling?"
    if cfg.capture_dir is not None:
        assert_capture(result, cfg)


def assert_capture(result: RunResult, cfg: RunConfig) -> None:
    """The capture decoded the worker's GCS traffic: HTTP/2 with an :authority when Ray's
    gRPC is plaintext; with Ray-native TLS (RAY_USE_TLS) no :authority is readable on any gRPC
    port (the control: the decoder finds no header where the wire holds none), only SNIs."""
    gcs = int(ray_params(cfg.cluster.head.argv).get("port", "6379"))
    rows = [a for a in result.authorities if a["from"] == "worker" and a["port"] == gcs]
    if cfg.cluster.head.env.get("RAY_USE_TLS") == "1":
        assert rows and all(a["kind"] == "tls" for a in rows), result.authorities
    else:
        assert any(a["kind"] == "h2" and a["authority"] for a in rows), result.authorities


# ---- negative controls: each must fail the step it should ---------------------------------------
@pytest.mark.parametrize("version", RAY_VERSIONS)
def test_negative_object_manager_port(
    version: str, e2e_cluster: LocalCluster, record_run: list[RunResult]
) -> None:
    c = e2e_cluster.read(example_dep(DEFAULT, version), f"no-object-manager@{version}")
    om = int(ray_params(c.worker.argv)["object-manager-port"])
    cfg = RunConfig(
        cluster=c,
        venv=venv_for(version),
        label=f"no-object-manager@{version}",
        profile="smoke",
        actors=2,
        tasks=200,
        object_mib=16,
        job=False,
        step_timeout=30,
        drop_both=frozenset({om}),
        log_dir=None,
    )
    result = execute(record_run, cfg)
    failure = result.first_failure()
    assert failure is not None, "removing the object-manager port broke nothing"
    assert failure.name == "object_pull_worker_to_head", result.summary()
    assert om in result.blocked["head"] + result.blocked["worker"], result.blocked


@pytest.mark.parametrize("version", RAY_VERSIONS)
def test_negative_worker_port(
    version: str, e2e_cluster: LocalCluster, record_run: list[RunResult]
) -> None:
    c = e2e_cluster.read(example_dep(DEFAULT, version), f"no-worker-port@{version}")
    ports = worker_ports_of(ray_params(c.worker.argv))
    blocked = ports[3]
    # Actors pinned to the worker, created one at a time until the range is nearly full: one of
    # them must draw the blocked port (Ray 2.10 hands ports out in order, Ray 2.60 at random).
    cfg = RunConfig(
        cluster=c,
        venv=venv_for(version),
        label=f"no-worker-port@{version}",
        profile="sizing",
        actors=len(ports) - 2,
        tasks=200,
        job=False,
        step_timeout=30,
        drop_worker=frozenset({blocked}),
        log_dir=None,
    )
    result = execute(record_run, cfg)
    failure = result.first_failure()
    assert failure is not None, f"removing worker port {blocked} broke nothing"
    assert failure.name == "actors_on_worker", result.summary()
    assert blocked in result.blocked["worker"], result.blocked


@pytest.mark.parametrize("version", RAY_VERSIONS)
def test_negative_broken_fqdn_snippet(
    version: str, e2e_cluster: LocalCluster, record_run: list[RunResult]
) -> None:
    """A node-ip-address snippet that expands wrong (a typo in the variable) must fail."""
    c = e2e_cluster.read(broken_fqdn(version), f"broken-fqdn@{version}")
    for pod in (c.head, c.worker):
        assert "MESHRAY_POD_IPX" in " ".join(pod.argv), pod.argv
    cfg = RunConfig(
        cluster=c,
        venv=venv_for(version),
        label=f"broken-fqdn@{version}",
        start_timeout=40,
        profile="smoke",
        actors=2,
        tasks=200,
        object_mib=16,
        job=False,
        step_timeout=30,
        log_dir=None,
    )
    result = execute(record_run, cfg)
    assert not result.ok
    for role in ("head", "worker"):
        step = result.step(f"node_ip_{role}")
        assert step is not None and not step.ok, result.summary()
    # Not only the harness's own check: Ray itself must not come up with that address.
    ray_steps = [s for s in result.steps if not s.name.startswith(("node_ip_", "network"))]
    assert any(not s.ok for s in ray_steps if s.name != "listening_ports"), result.summary()


@pytest.mark.parametrize("version", RAY_VERSIONS)
def test_head_metrics_ports_follow_env(
    version: str, e2e_cluster: LocalCluster, record_run: list[RunResult]
) -> None:
    """AUTOSCALER_METRIC_PORT / DASHBOARD_METRIC_PORT are honoured: with other values the head
    listens on those, not on 44217/44227 (which would then be outside every Service)."""
    c = e2e_cluster.read(metrics_env(version), f"metrics-env@{version}")
    assert c.head.env.get("AUTOSCALER_METRIC_PORT") == "44317", c.head.env
    assert c.head.env.get("DASHBOARD_METRIC_PORT") == "44327", c.head.env
    cfg = RunConfig(
        cluster=c,
        venv=venv_for(version),
        label=f"metrics-env@{version}",
        profile="smoke",
        actors=1,
        tasks=100,
        object_mib=1,
        job=False,
        log_dir=LOG_DIR,
    )
    result = execute(record_run, cfg)
    assert_clean(result)
    head = result.listening["head"]
    assert {44317, 44327} <= head.keys() and not {44217, 44227} & head.keys(), sorted(head)


@pytest.mark.parametrize("version", RAY_VERSIONS)
def test_guide_contract_leaves_ports_undeclared(
    version: str, e2e_cluster: LocalCluster, record_run: list[RunResult]
) -> None:
    """The seed guide's own manifests, as a control of the audit: its head listens on the
    autoscaler/dashboard metrics ports (and, before Ray 2.45, a random dashboard gRPC port),
    none of which its Services declare. The chart exists to close exactly this gap."""
    cfg = RunConfig(
        cluster=e2e_cluster.read(guide(), f"guide-as-published@{version}"),
        venv=venv_for(version),
        label=f"guide-as-published@{version}",
        profile="smoke",
        actors=2,
        tasks=200,
        object_mib=8,
        job=True,
        log_dir=None,
    )
    result = execute(record_run, cfg)
    step = result.step("listening_ports")
    assert step is not None and not step.ok, result.summary()
    assert {44217, 44227} <= set(result.outside["head"]), result.outside
    assert not result.outside["worker"], result.outside
