"""meshray/audit/findings.py: the text and JSON formats of findings."""

from __future__ import annotations

import json

from meshray.audit import Finding, at_least, summary, to_json
from test_audit_support import base, drop_port, run


def test_json_output_round_trips() -> None:
    docs = base()
    drop_port(docs, 6380)
    data = json.loads(to_json(run(docs)))
    assert data["counts"]["error"] == 1
    [f] = data["findings"]
    assert f["check"] == "port-missing" and f["value"] == 6380 and f["severity"] == "error"


def finding(severity: str, value: object = None) -> Finding:
    return Finding(severity=severity, check="port-missing", kind="RayCluster", namespace="ray",
                   name="demo", key="spec.x", value=value, message="msg", fix="do it")


def test_text_line_format() -> None:
    assert finding("error", 6380).line() == (
        "error: RayCluster/demo [ray] spec.x: msg (got 6380) [port-missing] fix: do it")
    assert finding("info").line() == "info: RayCluster/demo [ray] spec.x: msg [port-missing] " \
        "fix: do it"
    long = finding("warning", "x" * 500).line()
    assert '(got "xxx' in long and '...)' in long and len(long) < 300


def test_min_severity_and_summary() -> None:
    fs = [finding("error"), finding("warning"), finding("info"), finding("info")]
    assert [f.severity for f in at_least(fs, "warning")] == ["error", "warning"]
    assert at_least(fs, "info") == fs
    assert summary(fs, objects=7, clusters=1) == (
        "7 object(s), 1 RayCluster(s): 1 error(s), 1 warning(s), 2 info")
