"""Fixtures of the cluster suite: one real control plane per KubeRay operator version.

Each operator version gets its own etcd + kube-apiserver + controller-manager + operator (the
CRDs differ) and its own kubelet stand-in. Tests take the version as a parameter; under
pytest-xdist `--dist loadgroup` every test of one version runs in the same worker, so the two
control planes run side by side, one per worker.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tools" / "controlplane"))

from cases import operator_group  # noqa: E402
from controlplane import with_operator  # noqa: E402
from kube import Cluster  # noqa: E402
from kubelet import Kubelet  # noqa: E402

OPERATOR_VERSIONS = tuple(os.environ.get("MESHRAY_KUBERAY_VERSIONS", "v1.1.0 v1.6.2").split())
CACHE = Path(os.environ.get("MESHRAY_CLUSTER_CACHE") or REPO / ".cache" / "cluster")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/cluster/" not in str(item.fspath).replace(os.sep, "/"):
            continue
        item.add_marker(pytest.mark.cluster)
        cs = getattr(item, "callspec", None)
        version = cs.params.get("operator") if cs else None
        item.add_marker(pytest.mark.xdist_group(name=f"kuberay-{version or 'none'}"))


# xdist's loadgroup reads a test's group from a suffix it sets on `item._nodeid`, which pytest
# 9.2 no longer reads (a node id comes from `item._id`): no test had a group, and each worker
# started both control planes. Under `--dist loadgroup` this scheduler groups the cluster tests
# by the operator version in their id instead, so one worker runs one version's tests.
@pytest.hookimpl(tryfirst=True, optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadGroupScheduling  # type: ignore[import-untyped]

    class ByOperator(LoadGroupScheduling):  # type: ignore[misc]
        def _split_scope(self, nodeid: str) -> str:
            return operator_group(nodeid) or str(super()._split_scope(nodeid))

    return ByOperator(config, log)


@pytest.fixture(scope="session", params=OPERATOR_VERSIONS)
def operator(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="session")
def cluster(operator: str) -> Iterator[Cluster]:
    cp = with_operator(CACHE / f"run-{os.getpid()}-{operator}", operator)
    cp.start()
    kubelet = Kubelet(cp.api_client()).start()
    try:
        yield Cluster(cp, kubelet, operator)
    finally:
        kubelet.stop()
        cp.stop()
