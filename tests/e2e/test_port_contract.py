"""Prove the rendered port contract with real Ray behind a firewall of exactly the Services.

For the default values and every values example, on each Ray version (the chart's default
and the oldest it supports), the chart is rendered with that ``ray.version`` and a real head
and worker are started from the rendered ``rayStartParams`` in two network namespaces whose
firewalls admit from the peer only the ports of the Services that select the node. The
workload must pass, no Ray process may listen outside the Services, and no connection attempt
may be dropped. The negative controls show each kind of check can fail.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from e2e_support import LOG_DIR, RAY_VERSIONS, REPO, venv_for
from raynet.contract import ClusterContract, from_guide, from_manifests
from raynet.scenario import RunConfig, RunResult, run

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("e2e_host")]

EXAMPLES_DIR = REPO / "values-examples"
GUIDE = REPO.parent / "shared" / "reference" / "seeds" / "kuberay-istio-mtls-l7-guide.md"
DEFAULT = "default"
# Examples that get the whole workload on every version; the others get the shorter one
# (still: both nodes started from the rendered flags, cross-node tasks, actors, an object
# pull, metrics, a job submission, and the listening-port audit). See tests/e2e/README.md.
FULL = {DEFAULT, "kuberay-istio-guide"}


def values_examples() -> list[str]:
    """Values files directly in values-examples/ (gitops/ and manifests are not values)."""
    names = []
    for path in sorted(EXAMPLES_DIR.glob("*.yaml")):
        try:
            doc = yaml.safe_load(path.read_text())
        except yaml.YAMLError:
            continue
        if isinstance(doc, dict) and not {"apiVersion", "kind"} <= doc.keys():
            names.append(path.stem)
    return names


def render_contract(example: str, version: str, *sets: str) -> ClusterContract:
    from meshray.render import RenderError, RenderRequest, render

    files = [] if example == DEFAULT else [EXAMPLES_DIR / f"{example}.yaml"]
    req = RenderRequest(
        values_files=files, set_string_values=[f"ray.version={version}"], set_values=list(sets)
    )
    try:
        docs = render(req)
    except RenderError as exc:
        pytest.skip(f"the chart refuses {example} on Ray {version}: {exc.message}")
    return from_manifests(docs, source=f"{example}@{version}")


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
def test_example(example: str, version: str, record_run: list[RunResult]) -> None:
    venv = venv_for(version)
    contract = render_contract(example, version)
    cfg = RunConfig(
        contract=contract,
        venv=venv,
        label=f"{example}@{version}",
        log_dir=LOG_DIR,
        **profile_kwargs(example in FULL),
    )
    result = execute(record_run, cfg)
    assert_clean(result)
    # The rendered worker range is what Ray used: every worker-range listener is inside it.
    used = result.worker_ports_used
    assert used.get("worker"), "no worker-range port seen on the worker: audit not sampling?"


# ---- negative controls: each must fail the step it should ---------------------------------------
@pytest.mark.parametrize("version", RAY_VERSIONS)
def test_negative_object_manager_port(version: str, record_run: list[RunResult]) -> None:
    contract = render_contract(DEFAULT, version)
    om = int(contract.worker.start_params["object-manager-port"])
    cfg = RunConfig(
        contract=contract,
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
def test_negative_worker_port(version: str, record_run: list[RunResult]) -> None:
    contract = render_contract(DEFAULT, version)
    ports = contract.worker_ports()
    blocked = ports[3]
    # Actors pinned to the worker, created one at a time until the range is nearly full: one of
    # them must draw the blocked port (Ray 2.10 hands ports out in order, Ray 2.60 at random).
    cfg = RunConfig(
        contract=contract,
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
def test_negative_broken_fqdn_snippet(version: str, record_run: list[RunResult]) -> None:
    """A node-ip-address snippet that expands wrong (a typo in the variable) must fail."""
    contract = render_contract(DEFAULT, version)
    for role in ("head", "worker"):
        raw = getattr(contract, role).start_params["node-ip-address"]
        assert "MESHRAY_POD_IP" in raw, raw
        contract = contract.with_params(
            role, node_ip_address=raw.replace("MESHRAY_POD_IP", "MESHRAY_POD_IPX")
        )
    cfg = RunConfig(
        contract=contract,
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
def test_head_metrics_ports_follow_env(version: str, record_run: list[RunResult]) -> None:
    """AUTOSCALER_METRIC_PORT / DASHBOARD_METRIC_PORT are honoured: with other values the head
    listens on those, not on 44217/44227 (which would then be outside every Service)."""
    contract = render_contract(
        DEFAULT, version, "ports.autoscalerMetrics=44317", "ports.dashboardMetrics=44327"
    )
    assert contract.head.env.get("AUTOSCALER_METRIC_PORT") == "44317", contract.head.env
    assert contract.head.env.get("DASHBOARD_METRIC_PORT") == "44327", contract.head.env
    cfg = RunConfig(
        contract=contract,
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
def test_guide_contract_leaves_ports_undeclared(version: str, record_run: list[RunResult]) -> None:
    """The seed guide's own manifests, as a control of the audit: its head listens on the
    autoscaler/dashboard metrics ports (and, before Ray 2.45, a random dashboard gRPC port),
    none of which its Services declare. The chart exists to close exactly this gap."""
    if not GUIDE.exists():
        pytest.skip(f"{GUIDE} not present")
    contract = from_guide(Path(GUIDE))
    cfg = RunConfig(
        contract=contract,
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
