"""Where meshray's files are: the chart it renders, and the checkout it may run from.

The chart ships inside the package as ``meshray/chart/``: in a wheel it is a copy of
``charts/meshray`` (package data), in a checkout and an editable install
``tools/meshray/chart`` is a symlink to ``charts/meshray``. So :func:`chart_dir` has one
answer wherever the package is installed; ``$MESHRAY_CHART`` overrides it.
"""

from __future__ import annotations

import os
from pathlib import Path

CHART_ENV = "MESHRAY_CHART"
_PACKAGED_CHART = Path(__file__).resolve().parent / "chart"


def chart_dir() -> Path:
    """The chart meshray renders by default: ``$MESHRAY_CHART``, else the packaged chart."""
    env = os.environ.get(CHART_ENV)
    if env:
        return Path(env)
    return _PACKAGED_CHART.resolve()  # through the checkout's symlink to charts/meshray


def checkout_root(chart: Path | None = None) -> Path | None:
    """The repository a chart lives in (``<root>/charts/<name>``), or None for a chart that is
    not in a checkout, such as the copy inside an installed wheel. Without an argument: the
    checkout this package runs from (editable install), whatever ``$MESHRAY_CHART`` says."""
    chart = (chart or _PACKAGED_CHART).resolve()
    return chart.parent.parent if chart.parent.name == "charts" else None
