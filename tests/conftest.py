"""Shared fixtures: how to render the chart.

The helm binary comes from $MESHRAY_HELM (the Makefile points it at the pinned Helm 4; the
lint target reruns the render suite with the pinned Helm 3), else bin/helm. Paths and helpers
live in chart_support.py.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from chart_support import CHART, Renderer
from meshray.render import RenderRequest, render, render_text


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
