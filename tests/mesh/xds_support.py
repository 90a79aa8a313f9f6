"""Support of the mesh suite: asking the real istiod what it sends a Ray Pod's sidecar."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
XDS = REPO / "bin" / "meshray-xds"


class Mesh:
    def __init__(self, cp: Any, xds_addr: str) -> None:
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
