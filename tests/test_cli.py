"""The `meshray` command line: help texts, exit codes, and no traceback on any error."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from chart_support import CHART, EXAMPLES, REPO
from meshray.cli import build_parser, main

VERBS = ["validate", "render", "audit", "schema", "docs"]
MESHRAY = Path(sys.executable).parent / "meshray"
CLEAN = REPO / "tests" / "fixtures" / "audit" / "clean.yaml"


def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(MESHRAY), *args], capture_output=True, text=True, input=stdin,
                          timeout=60, check=False)


def test_console_script_help() -> None:
    res = run("--help")
    assert res.returncode == 0
    for verb in VERBS:
        assert f"    {verb} " in res.stdout
    assert "exit status" in res.stdout


@pytest.mark.parametrize("verb", VERBS)
def test_each_verb_has_help(verb: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main([verb, "--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    assert text.startswith(f"usage: meshray {verb}")
    # every option explains itself
    for action in build_parser()._subparsers._group_actions[0].choices[verb]._actions:  # type: ignore[union-attr]
        assert action.help, f"{verb} {action.option_strings or action.dest} has no help"


def test_no_command_is_a_usage_error() -> None:
    res = run()
    assert res.returncode == 2
    assert "Traceback" not in res.stderr and "usage: meshray" in res.stderr


@pytest.mark.parametrize(("args", "stdin", "needle"), [
    (["audit", "no/such/file.yaml"], None, "no such file"),
    (["audit", "-"], "a: [unclosed\n", "malformed YAML"),
    (["audit", "-", "-"], "", "stdin"),
    (["validate", "--chart", "/nonexistent"], None, "not a chart directory"),
    (["render", "--chart", "/nonexistent"], None, "not a chart directory"),
    (["schema", "--chart", "/tmp"], None, "not a chart directory"),
], ids=["missing-file", "malformed", "stdin-twice", "validate-chart", "render-chart",
        "schema-chart"])
def test_errors_are_one_line_without_traceback(args: list[str], stdin: str | None,
                                               needle: str) -> None:
    res = run(*args, stdin=stdin)
    assert res.returncode == 2, res.stderr
    assert "Traceback" not in res.stderr
    assert needle in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1


def test_malformed_yaml_names_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("kind: Service\nmetadata:\n  name: [x\n")
    res = run("audit", str(bad))
    assert res.returncode == 2
    assert f"{bad}:" in res.stderr and "malformed YAML" in res.stderr


def test_audit_clean_file_and_directory(tmp_path: Path) -> None:
    assert run("audit", str(CLEAN)).returncode == 0
    (tmp_path / "a.yaml").write_text(CLEAN.read_text())
    assert run("audit", str(tmp_path)).returncode == 0


def test_audit_json_and_min_severity(tmp_path: Path) -> None:
    import json

    broken = CLEAN.read_text().replace("publishNotReadyAddresses: true", "").replace(
        'networking.istio.io/exportTo: "."', "x: y")
    res = run("audit", "--format", "json", "-", stdin=broken)
    assert res.returncode == 1
    checks = {f["check"] for f in json.loads(res.stdout)["findings"]}
    assert checks == {"publish-not-ready-missing", "export-to-missing"}
    res = run("audit", "--min-severity", "error", "-", stdin=broken)
    assert res.stdout.splitlines()
    assert all(ln.startswith("error: ") for ln in res.stdout.splitlines())


def test_non_ray_input_is_fine() -> None:
    res = run("audit", "-", stdin="apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n")
    assert res.returncode == 0 and res.stdout == ""


def test_render_prints_manifests_and_port_table(capsys: pytest.CaptureFixture[str]) -> None:
    guide = next(p for p in EXAMPLES if p.stem == "kuberay-istio-guide")
    assert main(["render", "-f", str(guide), "--chart", str(CHART)]) == 0
    out = capsys.readouterr().out
    assert "kind: RayCluster" in out and "# Port table" not in out
    assert main(["render", "-f", str(guide), "--ports"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == ["CLUSTER", "PORT", "NAME", "PROTOCOL", "GROUPS", "SERVICE"]
    rows = {line.split()[1]: line for line in table[1:]}
    # the guide's ports, with their protocols from REFERENCE.md §1
    assert "http" in rows["6382"].split() and "runtime-env-agent-port" in rows["6382"]
    assert "grpc" in rows["6380"].split()
    assert "10002-10012" in rows and "11/11 declared" in rows["10002-10012"]
    assert "small-group" in rows["6380"] and "headgroup" in rows["6380"]


def test_render_ports_after_and_set(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["render", "--set", "ports.maxWorkerPort=10003", "--ports-after"]) == 0
    out = capsys.readouterr().out
    assert out.index("kind: RayCluster") < out.index("# Port table")
    assert "10002-10003" in out


def test_render_failure_is_clean() -> None:
    res = run("render", "--set", "ports.maxWorkerPort=10001")
    assert res.returncode == 1
    assert "Traceback" not in res.stderr
    assert "ports.maxWorkerPort" in res.stderr


def test_list_checks_names_every_check(capsys: pytest.CaptureFixture[str]) -> None:
    from meshray.audit import CHECKS

    assert main(["audit", "--list-checks"]) == 0
    rows = capsys.readouterr().out.splitlines()[2:]
    assert [r.split("`")[1] for r in rows] == list(CHECKS)
    assert all("<" not in r for r in rows)  # safe to paste into Markdown


def test_audit_without_input_is_a_usage_error() -> None:
    res = run("audit")
    assert res.returncode == 2 and "no input" in res.stderr and "Traceback" not in res.stderr
