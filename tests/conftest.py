"""Shared fixtures: where things are, and how to render the chart.

The helm binary comes from $MESHRAY_HELM (the Makefile points it at the pinned Helm 4; the
lint target reruns the render suite with the pinned Helm 3), else bin/helm.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from meshray.render import RenderRequest, render, render_text

REPO = Path(__file__).resolve().parents[1]
CHART = REPO / "charts" / "meshray"
SHARED = REPO.parent / "shared"
EXAMPLES_DIR = REPO / "values-examples"
# Values files at the top of values-examples/ (gitops/ holds Argo CD / Flux objects, not values).
EXAMPLES = sorted(EXAMPLES_DIR.glob("*.yaml"))


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


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


@pytest.fixture
def render_chart() -> Renderer:
    def _render(
        *values_files: Path | str,
        set_values: tuple[str, ...] = (),
        namespace: str = "default",
        release: str = "meshray",
    ) -> list[dict[str, Any]]:
        return render(
            RenderRequest(
                values_files=values_files,
                set_values=set_values,
                namespace=namespace,
                release=release,
                chart=CHART,
            )
        )

    return _render


@pytest.fixture
def render_chart_text() -> Callable[..., str]:
    def _render(*values_files: Path | str, set_values: tuple[str, ...] = ()) -> str:
        return render_text(
            RenderRequest(values_files=values_files, set_values=set_values, chart=CHART)
        )

    return _render
