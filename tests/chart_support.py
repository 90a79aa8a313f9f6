"""Shared test support: where things are, and how values files combine.

A module of its own (not conftest.py) so that `from chart_support import ...` names one file
whichever conftest.py pytest has loaded (tests/e2e has its own).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
CHART = REPO / "charts" / "meshray"
SHARED = REPO.parent / "shared"
EXAMPLES_DIR = REPO / "values-examples"
# Test data the suites in every tests/ folder share (fixtures/README-style notes live beside it).
FIXTURES = REPO / "tests" / "fixtures"
# Values files at the top of values-examples/ (gitops/ holds Argo CD / Flux objects, not values).
EXAMPLES = sorted(EXAMPLES_DIR.glob("*.yaml"))


def workload_kind(values_file: Path | None) -> str:
    """The workload a values file renders (workload.kind; RayCluster by default)."""
    if values_file is None:
        return "RayCluster"
    values = yaml.safe_load(Path(values_file).read_text()) or {}
    return str((values.get("workload") or {}).get("kind") or "RayCluster")


# Examples that render a RayCluster: the suites that read a RayCluster's spec run over these;
# a RayJob's embedded cluster spec is checked equal to the RayCluster the same values render
# (tests/render/test_render_rayjob.py), so what holds for one holds for the other.
RAYCLUSTER_EXAMPLES = [p for p in EXAMPLES if workload_kind(p) == "RayCluster"]
RAYJOB_EXAMPLES = [p for p in EXAMPLES if workload_kind(p) == "RayJob"]


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def skip_unless_ci(message: str) -> None:
    """A prerequisite is missing: skip on a developer's machine, fail in CI (CI=true), where
    every prerequisite is installed and a skipped check would pass without checking."""
    if in_ci():
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def merge_values(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Helm's coalescing of a values file over the chart defaults: maps merge recursively,
    anything else replaces, null deletes the key."""
    out = dict(base)
    for key, value in override.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge_values(out[key], value)
        else:
            out[key] = value
    return out


def effective_values(values_file: Path | None) -> dict[str, Any]:
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())
    if values_file is None:
        return defaults
    return merge_values(defaults, yaml.safe_load(values_file.read_text()) or {})


Renderer = Callable[..., list[dict[str, Any]]]


def helm_run(values: dict[str, Any], tmp_path: Path,
             *sets: str) -> subprocess.CompletedProcess[str]:
    """Raw `helm template m` (release namespace default) of the chart with one values file and
    --set values: for oracles that read helm's own output and exit code."""
    f = tmp_path / "values.yaml"
    f.write_text(yaml.safe_dump(values))
    helm = os.environ.get("MESHRAY_HELM") or str(REPO / "bin" / "helm")
    args = [a for s in sets for a in ("--set", s)]
    return subprocess.run([helm, "template", "m", str(CHART), "-f", str(f), *args],
                          capture_output=True, text=True, timeout=120, check=False)
