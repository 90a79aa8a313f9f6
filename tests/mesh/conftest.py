"""Fixtures of the mesh suite: the local control plane with the KubeRay operator v1.6.2 and the
real istiod, and the xDS istiod sends each Ray Pod's sidecar (bin/meshray-xds)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tools" / "cluster"))
sys.path.insert(0, str(REPO / "tests" / "cluster"))

from controlplane import ControlPlane, with_operator  # noqa: E402
from kubelet import Kubelet  # noqa: E402

OPERATOR = "v1.6.2"
CACHE = Path(os.environ.get("MESHRAY_CLUSTER_CACHE") or REPO / ".cache" / "cluster")
XDS = REPO / "bin" / "meshray-xds"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/mesh/" in str(item.fspath).replace(os.sep, "/"):
            item.add_marker(pytest.mark.mesh)


class Mesh:
    def __init__(self, cp: ControlPlane, xds_addr: str) -> None:
        self.cp = cp
        self.api = cp.api_client()
        self.kubeconfig = cp.kubeconfig
        self.xds_addr = xds_addr

    def sidecar_config(self, pod: Any) -> dict[str, Any]:
        res = subprocess.run(
            [
                str(XDS),
                "-addr",
                self.xds_addr,
                "-pod",
                pod.metadata.name,
                "-namespace",
                pod.metadata.namespace,
                "-ip",
                pod.status.pod_ip,
                "-labels",
                json.dumps(pod.metadata.labels or {}),
                "-service-account",
                pod.spec.service_account_name or "default",
            ],
            capture_output=True,
            text=True,
            timeout=90,
            check=False,
        )
        assert res.returncode == 0, res.stderr
        return dict(json.loads(res.stdout))


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
