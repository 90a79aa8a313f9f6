"""The foreign-shapes corpus (tests/fixtures/foreign/): manifests shaped like other people's,
written by hand for this project (not copies of anyone's files): multi-document files, `kind:
List`, head-only clusters, Ray-native TLS, groups kept out of the mesh, KubeRay 1.7 fields
(networkPolicy, tlsOptions, authOptions), RayJob and RayService shapes, and inputs that are
not manifests at all.

Each file says what `meshray audit` must report in its first comment lines:

    # expect: port-missing, node-ip-missing   <- exactly these check ids (none: nothing)
    # exit: 1                                  <- the exit status
    # error: not a Kubernetes object           <- (optional) text of an input error line

The oracle is that header, written with the file from the shape's meaning (KubeRay's and
Istio's behaviour), not from the audit's output. Every finding line must also be printed in
the manifest's own spelling: no Python repr (`'true'`, `True`, `None`, `['...']`), no doubled
backslashes.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import pytest
from chart_support import FIXTURES
from meshray.cli import main

CORPUS = FIXTURES / "foreign"
FILES = sorted(CORPUS.glob("*.yaml"))
HEADER = re.compile(r"^#\s*(expect|exit|error):\s*(.*?)\s*$")
# what Python's spelling of a value looks like inside a printed line
# (``None`` alone is Kubernetes' own spelling too: clusterIP: None)
REPR = re.compile(r"'(True|False|None)'|\b(True|False)\b|\['|\{'|\\\\")
CHECK_ID = re.compile(r" \[([a-z0-9-]+)\] fix: ")


@dataclass(frozen=True)
class Expected:
    checks: frozenset[str]
    exit: int
    error: str


def expected(path: Path) -> Expected:
    fields: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        m = HEADER.match(line)
        if not m:
            break
        fields[m.group(1)] = m.group(2)
    assert "expect" in fields and "exit" in fields, f"{path}: needs '# expect:' and '# exit:'"
    checks = frozenset(c.strip() for c in fields["expect"].split(",") if c.strip())
    return Expected(checks, int(fields["exit"]), fields.get("error", ""))


def test_the_corpus_is_there() -> None:
    names = {p.stem for p in FILES}
    assert {"kind-list", "head-only", "ray-tls-passthrough", "inject-false-group",
            "kuberay-1-7-fields", "rayjob-embedded", "rayservice", "values-by-mistake",
            "top-level-list"} <= names, names


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_foreign_file(path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    want = expected(path)
    code = main(["audit", "--format", "json", str(path)])
    out = capsys.readouterr()
    data = json.loads(out.out)
    got = {f["check"] for f in data["findings"]}
    assert (sorted(got), code) == (sorted(want.checks), want.exit), out.out
    if want.error:
        assert any(want.error in e["message"] for e in data["errors"]), data["errors"]
    else:
        assert data["errors"] == []
    # the text format of the same run: the same findings, in the manifest's spelling
    code = main(["audit", str(path)])
    lines = capsys.readouterr().out.splitlines()
    assert code == want.exit
    assert sorted({m.group(1) for ln in lines if (m := CHECK_ID.search(ln))}
                  ) == sorted(want.checks)
    for line in lines:
        assert not REPR.search(line), line
