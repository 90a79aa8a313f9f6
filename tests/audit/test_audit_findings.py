"""meshray/audit/findings.py: the text and JSON formats of findings."""

from __future__ import annotations

import json

import pytest
import yaml
from audit_support import base, drop_port, run
from meshray.audit import Finding, at_least, summary, to_json
from meshray.audit.findings import quoted, yaml_text


def test_json_output_round_trips() -> None:
    docs = base()
    drop_port(docs, 6380)
    data = json.loads(to_json(run(docs)))
    [f] = data["findings"]
    assert f["check"] == "port-missing" and f["value"] == 6380 and f["severity"] == "error"
    assert f["key"] == "spec.headGroupSpec.rayStartParams.node-manager-port"
    assert (f["kind"], f["name"], f["namespace"]) == ("RayCluster", "demo", "ray")
    # the counts are those of the findings listed
    assert data["counts"] == {s: [g["severity"] for g in data["findings"]].count(s)
                              for s in ("error", "warning", "info")}
    assert data["errors"] == []


def test_json_lists_inputs_that_could_not_be_audited() -> None:
    data = json.loads(to_json([], [("a.yaml:3", "malformed YAML: x")]))
    assert data["errors"] == [{"source": "a.yaml:3", "message": "malformed YAML: x"}]


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
    assert summary(fs, objects=7, clusters=1, unreadable=2).endswith(
        "2 info; 2 input(s) not audited (see above)")


@pytest.mark.parametrize(("value", "typed"), [
    # what Ray's own samples and guides write: a shell pipeline with regex escapes
    ("$(hostname -I | awk '{print $1}' | sed 's/\\./-/g')",
     "\"$(hostname -I | awk '{print $1}' | sed 's/\\./-/g')\""),
    ("C:\\ray\\tmp", "\"C:\\ray\\tmp\""),
    (True, "true"), (False, "false"), (["NET_ADMIN", "SYS_TIME"], "[NET_ADMIN, SYS_TIME]"),
    ({"ray.io/cluster": "demo"}, "{ray.io/cluster: demo}"), (6380, "6380"),
])
def test_values_print_as_the_user_typed_them(value: object, typed: str) -> None:
    """The text format shows a value as it is written in the manifest: backslashes single (a
    copied command works), booleans, lists and mappings in YAML spelling, not Python's."""
    assert finding("error", value).line() == (
        f"error: RayCluster/demo [ray] spec.x: msg (got {typed}) [port-missing] fix: do it")


def test_a_line_break_stays_on_one_line() -> None:
    assert "(got \"a\\nb\")" in finding("error", "a\nb").line()


@pytest.mark.parametrize(("value", "want"), [
    (True, '"true"'), (None, '"null"'), (6379, '"6379"'), ("x", '"x"'),
    ("a\\b", "'a\\b'"), ('say "hi"', "'say \"hi\"'"), ("it's \\", "'it''s \\'"),
])
def test_quoted_is_a_yaml_string(value: object, want: str) -> None:
    """A hint's quoted value reads back, as YAML, as the string Kubernetes wants."""
    assert quoted(value) == want
    assert yaml.safe_load(f"k: {want}") == {"k": yaml_text(value)}


def test_text_output_of_a_real_finding_keeps_backslashes() -> None:
    """End to end: a node-ip-address built with sed's escaped dot prints as written."""
    value = "$(hostname -I | sed 's/\\./-/g').demo-headless-svc.ray.svc.cluster.local"
    docs = base()
    docs[0]["spec"]["headGroupSpec"]["rayStartParams"]["node-ip-address"] = value
    lines = [f.line() for f in run(docs) if f.check == "node-ip-hostname-i"]
    assert lines and all(f'(got "{value}")' in line for line in lines), lines
    assert not any("\\\\" in line for line in lines)
