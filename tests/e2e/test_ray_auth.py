"""Ray token authentication (rayAuth.enabled), with real Ray from the real operator's Pods.

KubeRay (v1.6.2 here) turns `spec.authOptions.mode: token` into a Secret holding a random token
and RAY_AUTH_MODE / RAY_AUTH_TOKEN in every Ray container; the harness starts each node from
its Pod with that env resolved from the API server, as the kubelet would. The whole smoke
workload must pass (workers join, tasks, actors, objects, metrics scrape, a job submission
with the token from the Pod's env). Then, from the worker node: every HTTP endpoint Ray serves
without and with the token, the Jobs API and the Ray Client without the token and with it.
The control runs the same requests against the defaults (no token auth): what the token
refuses there passes.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from e2e_support import DEFAULT, LOG_DIR, TOKEN_AUTH_VERSIONS, ray_auth, venv_for
from e2e_support import example as example_dep
from raynet.live import LocalCluster
from raynet.scenario import RunConfig, RunResult, run

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("e2e_host")]


def _run(cluster: Any, version: str, label: str, record: list[RunResult]) -> RunResult:
    cfg = RunConfig(
        cluster=cluster,
        venv=venv_for(version),
        label=label,
        profile="smoke",
        actors=2,
        tasks=200,
        object_mib=8,
        token_auth=True,
        log_dir=LOG_DIR,
    )
    result = run(cfg)
    record.append(result)
    print(result.summary())
    for s in result.steps:
        if s.name.startswith("token_auth"):
            print(s.name, json.dumps(s.detail, indent=1, default=str))
    return result


# What Ray 2.60 answers, measured. HTTP: the dashboard and the Jobs API refuse a caller without
# the token (401) or with a wrong one (403); the health endpoints the operator's probes use (an
# HTTP GET without a header for Ray >= 2.53) and every metrics endpoint answer without it, so
# probes and scrapers work as before (Ray 2.61 announces metrics behind the token unless
# RAY_AUTH_SKIP_METRICS=1; the package index here serves 2.60 at most). The Jobs API client and
# the Ray Client without the token or with a wrong one fail: the first before it submits, the
# second at the handshake, after its 30 s connection timeout.
PROTECTED = {"dashboard /api/version", "jobs API /api/jobs/"}
OPEN = {
    "dashboard /api/gcs_healthz",
    "agent /api/healthz (probe)",
    "agent /api/local_raylet_healthz",
    "head metrics",
    "worker metrics",
    "dashboard metrics",
    "autoscaler metrics",
}
# without a token: 401 Unauthorized; with a wrong one: 403 Forbidden
REFUSED, WRONG, ANSWERED = 401, 403, 200


def _detail(result: RunResult, step: str) -> Any:
    s = result.step(step)
    assert s is not None and s.ok, result.summary()
    return s.detail


@pytest.mark.parametrize("version", TOKEN_AUTH_VERSIONS)
def test_ray_token_auth(
    version: str, e2e_cluster: LocalCluster, record_run: list[RunResult]
) -> None:
    c = e2e_cluster.read(ray_auth(version), f"ray-auth@{version}")
    for pod in (c.head, c.worker):
        assert pod.env.get("RAY_AUTH_MODE") == "token", pod.env
        assert len(pod.env.get("RAY_AUTH_TOKEN", "")) >= 32, f"{pod.name}: no token from the Secret"
    result = _run(c, version, f"ray-auth@{version}", record_run)
    failed = [s.name for s in result.steps if not s.ok]
    # the workload, the job submission with the Pod's token and every token step ran
    assert result.ok, f"steps failed: {failed}\n{result.summary()}"
    http = _detail(result, "token_auth_http")
    assert set(http) == PROTECTED | OPEN, sorted(http)
    for name in PROTECTED:
        assert http[name] == {"without": REFUSED, "wrong": WRONG, "with": ANSWERED}, (name, http)
    for name in OPEN:
        assert http[name] == {"without": ANSWERED, "wrong": ANSWERED, "with": ANSWERED}, (
            name,
            http,
        )
    for step in (
        "job_without_token",
        "job_wrong_token",
        "rayclient_without_token",
        "rayclient_wrong_token",
    ):
        d = _detail(result, f"token_auth_{step}")
        assert d["succeeded"] is False, (step, d)
    assert _detail(result, "token_auth_rayclient_with_token")["succeeded"] is True


@pytest.mark.parametrize("version", TOKEN_AUTH_VERSIONS)
def test_without_token_auth_the_same_requests_pass(
    version: str, e2e_cluster: LocalCluster, record_run: list[RunResult]
) -> None:
    """The control: the defaults (no rayAuth) answer every request the token refused."""
    c = e2e_cluster.read(example_dep(DEFAULT, version), f"no-auth@{version}")
    assert "RAY_AUTH_MODE" not in c.head.env
    result = _run(c, version, f"no-auth@{version}", record_run)
    failed = [s.name for s in result.steps if not s.ok]
    assert result.ok, f"steps failed: {failed}\n{result.summary()}"
    http = _detail(result, "token_auth_http")
    for name in PROTECTED | OPEN:
        assert http[name] == {"without": ANSWERED, "wrong": ANSWERED, "with": None}, (name, http)
    for step in ("job_without_token", "rayclient_without_token"):
        assert _detail(result, f"token_auth_{step}")["succeeded"] is True, step
