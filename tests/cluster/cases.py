"""The values files every cluster test installs, and per-operator settings."""

from __future__ import annotations

import re
from pathlib import Path

import yaml
from kube import REPO

CHART = REPO / "charts" / "meshray"
CASES: dict[str, Path | None] = {"defaults": None}
CASES.update({f"ex-{p.stem}": p for p in sorted((REPO / "values-examples").glob("*.yaml"))})
CASES.update(
    {
        f"ci-{p.name.removesuffix('-values.yaml')}": p
        for p in sorted((CHART / "ci").glob("*-values.yaml"))
    }
)

# Values an operator version needs: KubeRay < 1.6 has no spec.upgradeStrategy in its CRD, and
# Helm 4's server-side apply refuses unknown fields (test_upgrade shows it).
OPERATOR_SETS: dict[str, tuple[str, ...]] = {
    # what a user of the oldest operator sets: no upgradeStrategy, and its version, so the chart
    # refuses a field that operator lacks before the API server does
    "v1.1.0": ("kuberay.upgradeStrategy=", "kuberay.version=1.1.0"),
}

# The labels of the namespaces test_install.py installs into: the API server's PodSecurity
# admission enforces the restricted standard (at its own version) on every Pod created there.
RESTRICTED = {
    "pod-security.kubernetes.io/enforce": "restricted",
    "pod-security.kubernetes.io/enforce-version": "latest",
}


def namespace(helm: str, case: str) -> str:
    return re.sub(r"[^a-z0-9-]", "-", f"{helm}-{case}".lower())[:63].strip("-")


def value_args(case: str, operator: str) -> list[str]:
    f = CASES[case]
    args = ["-f", str(f)] if f else []
    for s in OPERATOR_SETS.get(operator, ()):
        args += ["--set", s]
    return args


def _workload_kind(path: Path) -> str:
    values = yaml.safe_load(path.read_text()) or {}
    return str((values.get("workload") or {}).get("kind", "RayCluster"))


# RayJob examples: the operator names their RayCluster and runs a submitter, so the
# RayCluster-shaped checks of test_install do not apply; test_cluster_rayjob.py proves them.
RAYJOB_CASES: dict[str, Path] = {
    case: path
    for case, path in CASES.items()
    if path is not None and _workload_kind(path) == "RayJob"
}
for _case in RAYJOB_CASES:
    del CASES[_case]

# Values a RayJob release needs per operator version: the chart refuses fields KubeRay 1.1.0
# lacks (submitterConfig) once told the version, so the example's submitterConfig is dropped.
RAYJOB_OPERATOR_SETS: dict[str, tuple[str, ...]] = {
    "v1.1.0": ("--set", "kuberay.version=1.1.0", "--set-json", "rayJob.submitterConfig={}"),
}


# The operator version in a test id: each `[...]` parameter list of the cluster tests carries
# one (the `operator` fixture), e.g. `test_x[v1.6.2-helm4-defaults]`.
_OPERATOR_IN_ID = re.compile(r"\[(?:[^\]]*-)?(v\d+\.\d+\.\d+)(?:-[^\]]*)?\]$")


def operator_group(nodeid: str) -> str | None:
    """The xdist group of a cluster test, `kuberay-<version>`, from its node id (None: a test
    without an operator version)."""
    m = _OPERATOR_IN_ID.search(nodeid)
    return f"kuberay-{m.group(1)}" if m else None
