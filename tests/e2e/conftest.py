"""Fixtures and reporting for the real-Ray e2e suite (`make e2e`, marker `e2e`)."""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from e2e_support import CACHE, REPO, REPORT, deployment_for, unavailable  # noqa: E402
from raynet.live import HELM, OPERATOR, LocalCluster  # noqa: E402
from raynet.netns import pid_alive, require_tools  # noqa: E402
from raynet.scenario import RunResult  # noqa: E402

_results: list[dict[str, Any]] = []
_started = time.monotonic()
_cluster_info: dict[str, Any] = {}


@pytest.fixture(scope="session")
def e2e_host() -> None:
    if os.geteuid() != 0:
        unavailable("the e2e suite needs root (network namespaces, nftables)")
    missing = require_tools()
    if missing:
        unavailable(f"missing host tools {missing} (`make e2e-deps`)")


@pytest.fixture(scope="session")
def e2e_cluster(e2e_host: None, request: pytest.FixtureRequest) -> Iterator[LocalCluster]:
    """The local control plane with the real KubeRay operator, for the whole session. Every
    deployment the selected tests need is installed in the background, in test order, while
    earlier tests run Ray."""
    needed = [
        REPO / "bin" / "kube-apiserver",
        REPO / "bin" / "kube-controller-manager",
        REPO / "bin" / f"kuberay-operator-{OPERATOR}",
        Path(HELM),
    ]
    missing = [str(p) for p in needed if not p.exists()]
    if missing or not shutil.which("etcd"):
        unavailable(f"control plane binaries missing {missing or ['etcd']} (`make cluster-bins`)")
    for old in (CACHE / "e2e").glob("cluster-*"):  # control planes of finished sessions
        pid = old.name.removeprefix("cluster-")
        if pid.isdigit() and not pid_alive(int(pid)):
            shutil.rmtree(old, ignore_errors=True)
    cluster = LocalCluster(CACHE / "e2e" / f"cluster-{os.getpid()}")
    try:
        cluster.start()
        _cluster_info["control_plane_seconds"] = cluster.seconds
        for item in request.session.items:
            cs = getattr(item, "callspec", None)
            dep = deployment_for(getattr(item, "originalname", item.name), cs.params if cs else {})
            if dep is not None:
                cluster.submit(dep)
        yield cluster
    finally:
        _cluster_info["deployments"] = cluster.timings()
        cluster.stop()


@pytest.fixture
def record_run() -> Iterator[list[RunResult]]:
    """Collects RunResults for the session report (printed and written as JSON)."""
    runs: list[RunResult] = []
    yield runs
    for r in runs:
        _results.append(
            {
                "label": r.label,
                "ray_version": r.ray_version,
                "ok": r.ok,
                "seconds": r.seconds,
                "steps": [
                    {"name": s.name, "ok": s.ok, "seconds": s.seconds, "detail": s.detail}
                    for s in r.steps
                ],
                "listening": r.listening,
                "outside": r.outside,
                "blocked": r.blocked,
                "worker_ports_used": r.worker_ports_used,
                "worker_ports_peak": r.worker_ports_peak,
                "authorities": r.authorities,
                "rayjob": getattr(r, "rayjob", None),  # RayJob runs: statuses, attempts, times
                "summary": r.summary(),
            }
        )


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not _results:
        return
    tr = terminalreporter
    tr.section("meshray e2e runs")
    for r in _results:
        tr.write_line(r["summary"])
    total = time.monotonic() - _started
    if _cluster_info:
        deps = _cluster_info.get("deployments", {})
        tr.write_line(
            f"control plane (operator {OPERATOR}) up in "
            f"{_cluster_info.get('control_plane_seconds')}s; {len(deps)} deployments "
            f"(install until Pods Ready in EndpointSlices), "
            f"{sum(deps.values()):.0f}s in the background: {deps}"
        )
    tr.write_line(f"e2e: {len(_results)} Ray cluster runs in {total:.0f}s")
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    REPORT.write_text(
        json.dumps(
            {"seconds": round(total, 1), "cluster": _cluster_info, "runs": _results},
            indent=1,
            default=str,
        )
    )
    tr.write_line(f"e2e report: {REPORT}")
