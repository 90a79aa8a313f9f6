"""Smoke test of `make bench-mesh` (tools/bench/bench_mesh.py) against the real istiod: its
measurement and its table on the smallest configuration, and the claim the benchmark makes
about exportTo, which is not a model but what istiod sends:

- with `service.exportTo: ["."]` (the chart's default) a sidecar in another namespace gets
  nothing of the Ray cluster: as many listeners and clusters as before the install;
- with `["*"]` it gets the Ray Services: more listeners, clusters and bytes.

The full matrix is the script's job (minutes); this runs one install, two steps.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import pytest
from chart_support import skip_unless_ci
from kube import HELMS, Helm

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tools" / "bench"))

import bench_mesh  # noqa: E402


@pytest.fixture(scope="module")
def smoke(mesh: Any) -> dict[str, Any]:
    bench = bench_mesh.Bench(mesh, Helm(HELMS["helm4"], mesh.kubeconfig),
                             REPO / "charts" / "meshray", other_ns="bench-smoke-other")
    before = bench_mesh.settled(lambda: bench_mesh.sizes(mesh.sidecar_config(bench.other)))
    rows = bench.meshray(11, False, [(1, "."), (1, "*")], ns="bench-smoke")
    return {"before": before, "rows": rows}


def test_export_to_dot_keeps_the_other_namespace_sidecar_free_of_ray(
        smoke: dict[str, Any]) -> None:
    dot = next(r for r in smoke["rows"] if r["exportTo"] == ".")
    before = smoke["before"]
    assert (dot["other"]["n_listeners"], dot["other"]["n_clusters"]) == \
        (before["n_listeners"], before["n_clusters"]), (before, dot["other"])


def test_export_to_star_puts_the_ray_services_in_every_sidecar(smoke: dict[str, Any]) -> None:
    dot = next(r for r in smoke["rows"] if r["exportTo"] == ".")
    star = next(r for r in smoke["rows"] if r["exportTo"] == "*")
    # 11 worker ports + the pinned Ray ports: each a listener and a cluster more, at least
    assert star["other"]["n_listeners"] >= dot["other"]["n_listeners"] + 11, (dot, star)
    assert star["other"]["n_clusters"] >= dot["other"]["n_clusters"] + 11, (dot, star)
    assert star["other"]["total"] > dot["other"]["total"], (dot, star)
    # the Ray pod's own sidecar sees its own namespace either way
    assert star["ray"]["n_listeners"] == dot["ray"]["n_listeners"], (dot, star)
    assert dot["ray"]["n_listeners"] > 11


def test_table_and_docs_carry_every_measurement(smoke: dict[str, Any], tmp_path: Path) -> None:
    doc = {"date": "smoke", "host": "test", "operator": bench_mesh.OPERATOR, "seconds": 0,
           "chart": "working tree", "conf": {}, "rows": smoke["rows"]}
    bench_mesh.write_docs(doc, tmp_path, with_plot=False)
    md = (tmp_path / "mesh-cost.md").read_text()
    body = [line for line in md.splitlines() if line.startswith("| meshray ")]
    assert len(body) == len(smoke["rows"]), md
    for r in smoke["rows"]:
        cells = next(
            [c.strip() for c in line.strip("|").split("|")] for line in body
            if f"`{r['exportTo']}`" in line
        )
        assert cells[3] == str(r["worker_ports"]) and cells[4] == str(r["replicas"]), cells
        assert int(cells[5].replace(",", "")) == r["ray"]["n_listeners"], cells
        assert int(cells[9].replace(",", "")) == r["other"]["n_listeners"], cells
        assert abs(float(cells[11].replace(",", "")) - r["other"]["total"] / 1024) <= 0.5, cells
    # the JSON the docs come from reproduces the same Markdown
    again = tmp_path / "again"
    bench_mesh.write_docs(bench_mesh.json.loads((tmp_path / "mesh-cost.json").read_text()),
                          again, with_plot=False)
    assert (again / "mesh-cost.md").read_text() == md
    assert re.search(r"\| meshray \| off \| `\*` \| 11 \| 1 \|", md), md


def test_plot_is_a_png(smoke: dict[str, Any], tmp_path: Path) -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        # CI installs the extra: a missing plot there is a failure
        skip_unless_ci("the plot needs the bench extra: run `make mesh-e2e` (it installs it)")
    bench_mesh.plot(smoke["rows"], tmp_path / "p.png")
    assert (tmp_path / "p.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
