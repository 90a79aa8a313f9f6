"""The values files every cluster test installs, and per-operator settings."""

from __future__ import annotations

import re
from pathlib import Path

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
    "v1.1.0": ("kuberay.upgradeStrategy=",),
}


def namespace(helm: str, case: str) -> str:
    return re.sub(r"[^a-z0-9-]", "-", f"{helm}-{case}".lower())[:63].strip("-")


def value_args(case: str, operator: str) -> list[str]:
    f = CASES[case]
    args = ["-f", str(f)] if f else []
    for s in OPERATOR_SETS.get(operator, ()):
        args += ["--set", s]
    return args
