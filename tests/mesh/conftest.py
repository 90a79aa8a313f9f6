"""Fixtures of the mesh suite: the local control plane with the KubeRay operator v1.6.2 and the
real istiod, and the xDS istiod sends each Ray Pod's sidecar (bin/meshray-xds)."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tools" / "controlplane"))
sys.path.insert(0, str(REPO / "tests" / "cluster"))

from controlplane import with_operator  # noqa: E402
from kubelet import Kubelet  # noqa: E402
from xds_support import Mesh  # noqa: E402

OPERATOR = "v1.6.2"
CACHE = Path(os.environ.get("MESHRAY_CLUSTER_CACHE") or REPO / ".cache" / "cluster")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/mesh/" in str(item.fspath).replace(os.sep, "/"):
            item.add_marker(pytest.mark.mesh)


@pytest.fixture(scope="session")
def mesh() -> Iterator[Mesh]:
    cp = with_operator(CACHE / f"mesh-{os.getpid()}", OPERATOR)
    cp.start()
    kubelet = Kubelet(cp.api_client()).start()
    try:
        yield Mesh(cp, cp.start_istiod())
    finally:
        kubelet.stop()
        cp.stop()
