"""Paths, versions and prerequisite checks shared by the e2e tests (pytest side)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
CACHE = Path(os.environ.get("MESHRAY_E2E_CACHE", REPO / ".cache"))
# The chart's default Ray version and the oldest it claims to support (mk/e2e.mk builds one
# venv per version under .cache/ and passes this list).
RAY_VERSIONS = os.environ.get("MESHRAY_E2E_RAY_VERSIONS", "2.60.0 2.10.0").split()
REPORT = Path(os.environ.get("MESHRAY_E2E_REPORT", CACHE / "e2e" / "report.json"))
LOG_DIR = CACHE / "e2e" / "logs"


def unavailable(reason: str) -> None:
    """Outside CI a machine without root/tools/venvs skips; in CI that is a failure."""
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"e2e prerequisites missing in CI: {reason}", pytrace=False)
    pytest.skip(f"{reason} (run `make e2e`)")


def venv_for(version: str) -> Path:
    venv = CACHE / f"ray-{version}"
    if not (venv / "bin" / "ray").exists():
        unavailable(f"no Ray {version} venv at {venv} (`make e2e-venvs`)")
    return venv
