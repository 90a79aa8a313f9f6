"""The mesh cost `meshray validate` quotes (tools/meshray/meshcost.py) is the run of
`make bench-mesh` committed in docs/mesh-cost.json: each constant is recomputed here from that
run's rows with the benchmark's own slope function, and the committed docs/mesh-cost.md is what
the script generates from the JSON. A new run without new constants (or a hand-edited table)
fails here."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from meshray import meshcost

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tools" / "bench"))

import bench_mesh  # noqa: E402

DOC = json.loads((REPO / "docs" / "mesh-cost.json").read_text())


def test_constants_are_the_committed_run() -> None:
    r = bench_mesh.ratios(DOC["rows"])
    assert round(r["off"]["bytes_per_port"] / 1024, 1) == meshcost.KB_PER_WORKER_PORT, r
    per_listener = r["on"]["bytes_per_pod"] / r["on"]["listeners_per_pod"] / 1024
    assert round(per_listener, 1) == meshcost.KB_PER_TLS_LISTENER, r
    assert round(r["other"]["bytes_per_port"] / 1024, 1) == \
        meshcost.OTHER_KB_PER_WORKER_PORT_EXPORTED, r
    assert DOC["date"][:10] in meshcost.MEASURED


def test_the_run_is_the_full_matrix() -> None:
    """Worker ports 11/50/200 x replicas 1/10/30 x rayTls off/on x exportTo ./* for meshray,
    11/50/200 x 1/10/30 for the guide, each with both sidecars measured."""
    got = {(r["chart"], r["worker_ports"], r["replicas"], r["rayTls"], r["exportTo"])
           for r in DOC["rows"]}
    want = {("meshray", p, n, t, e) for p in (11, 50, 200) for n in (1, 10, 30)
            for t in (False, True) for e in (".", "*")}
    want |= {("guide", p, n, False, "(unset)") for p in (11, 50, 200) for n in (1, 10, 30)}
    assert got == want
    assert all(r["ray"]["total"] > 0 and r["other"]["total"] > 0 for r in DOC["rows"])


def test_committed_table_is_generated_from_the_json() -> None:
    assert (REPO / "docs" / "mesh-cost.md").read_text() == bench_mesh.markdown(DOC)


def test_readme_table_is_the_committed_run() -> None:
    assert bench_mesh.summary_table(DOC["rows"]) in (REPO / "README.md").read_text()
