"""The `meshray` command line: help texts, exit codes, and no traceback on any error."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
from chart_support import CHART, EXAMPLES, REPO
from meshray.cli import build_parser, main
from meshray.render import helm_executable

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


def test_validate_help_states_its_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    """`validate --help` says when it exits 0, 1 and 2, and that --strict fails on warnings."""
    with pytest.raises(SystemExit):
        main(["validate", "--help"])
    text = capsys.readouterr().out
    status = text[text.index("exit status:"):].splitlines()
    codes = [line.split()[0] for line in status[1:] if line.startswith("  ") and
             line.split()[0].isdigit()]
    assert codes == ["0", "1", "2"], status
    block = "\n".join(status)
    one = block[block.index("\n  1 "):block.index("\n  2 ")]  # exit 1, over its lines
    assert "--strict" in one and "warning" in one, one
    assert "  --strict " in text


def test_validate_strict_exit_status_from_the_console_script(tmp_path: Path) -> None:
    """The installed `meshray validate` exits 0 on a warning and 1 with --strict, and says how
    many warnings it found on stderr."""
    f = tmp_path / "permissive.yaml"
    f.write_text("mtls:\n  mode: PERMISSIVE\n")
    plain = run("validate", str(f))
    assert plain.returncode == 0, plain.stdout + plain.stderr
    assert "[peerauth-permissive]" not in plain.stdout  # validate's format, not audit's
    assert "audit peerauth-permissive on PeerAuthentication/" in plain.stdout
    strict = run("validate", "--strict", str(f))
    assert strict.returncode == 1, strict.stdout + strict.stderr
    assert strict.stdout == plain.stdout
    assert "0 error(s), 2 warning(s)" in strict.stderr


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
    [line] = res.stderr.strip().splitlines()  # one line, naming the verb and the cause
    assert line.startswith(f"meshray {args[0]}: ") and needle in line


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


def broken_clean() -> str:
    """clean.yaml with one error finding: the headless Service's publishNotReadyAddresses."""
    return CLEAN.read_text().replace("publishNotReadyAddresses: true", "")


def test_one_unreadable_file_does_not_hide_the_others(tmp_path: Path) -> None:
    """A missing file and a malformed one next to a readable one: the readable one is audited
    and its finding printed (text and JSON), each unreadable one is named, and the exit
    status is 2 (could not audit everything), not 1."""
    import json

    good = tmp_path / "good.yaml"
    good.write_text(broken_clean())
    bad = tmp_path / "bad.yaml"
    bad.write_text("kind: Service\nmetadata:\n  name: [x\n")
    missing = tmp_path / "missing.yaml"
    res = run("audit", str(bad), str(good), str(missing))
    assert res.returncode == 2, res.stderr
    [line] = res.stdout.splitlines()
    assert line.startswith("error: Service/demo-headless-svc [ray] ")
    assert "[publish-not-ready-missing]" in line
    assert re.search(rf"^meshray audit: {re.escape(str(bad))}:\d+: malformed YAML: ", res.stderr,
                     re.MULTILINE), res.stderr
    assert f"meshray audit: {missing}: no such file" in res.stderr
    assert "2 input(s) not audited" in res.stderr and "Traceback" not in res.stderr

    res = run("audit", "--format", "json", str(bad), str(good), str(missing))
    assert res.returncode == 2, res.stderr
    data = json.loads(res.stdout)
    assert [(f["check"], f["source"]) for f in data["findings"]] == [
        ("publish-not-ready-missing", f"{good}#1")]
    assert [(e["source"].rsplit(":", 1)[0], e["message"].split(":")[0])
            for e in data["errors"]] == [(str(bad), "malformed YAML"),
                                         (str(missing), "no such file")]


@pytest.mark.parametrize(("text", "where", "what"), [
    ("- apiVersion: v1\n  kind: Service\n  metadata: {name: x}\n", "#0 (line 1)",
     "a YAML list at top level"),
    ("# my values\nclusterName: demo\nworkers: {cpu: {replicas: 2}}\n", "#0 (line 2)",
     "a mapping without apiVersion and kind"),
    ("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\njust text\n", "#1 (line 5)",
     "a YAML str at top level"),
    ("kind: Service\nmetadata: {name: a}\n", "#0 (line 1)", "a mapping without apiVersion"),
], ids=["top-level-list", "values-file", "scalar-document", "no-apiVersion"])
def test_input_that_is_not_manifests_exits_2(tmp_path: Path, text: str, where: str,
                                             what: str) -> None:
    """`audit --help` promises exit 2 for input that is not manifests: a line names the file
    and the document that is not a Kubernetes object."""
    f = tmp_path / "input.yaml"
    f.write_text(text)
    res = run("audit", str(f))
    assert res.returncode == 2, res.stdout + res.stderr
    assert f"meshray audit: {f}{where}: {what}" in res.stderr, res.stderr
    assert "exit status: 1 when any finding is an error, 2 when any input could not be " \
        "audited" in run("audit", "--help").stdout


def test_the_chart_values_file_is_not_manifests() -> None:
    values = CHART / "values.yaml"
    res = run("audit", str(values))
    assert res.returncode == 2
    assert f"{values}#0 (line " in res.stderr and "not a Kubernetes object" in res.stderr


def test_list_wrappers_and_empty_documents_still_work(tmp_path: Path) -> None:
    import yaml

    docs = [d for d in yaml.safe_load_all(broken_clean()) if d]
    text = "---\n# nothing here\n---\n" + yaml.safe_dump(
        {"apiVersion": "v1", "kind": "List", "items": docs}) + "---\n{}\n---\n"
    f = tmp_path / "list.yaml"
    f.write_text(text)
    res = run("audit", str(f))
    assert res.returncode == 1, res.stderr  # the error finding, nothing unreadable
    assert [ln.split(" [")[0] for ln in res.stdout.splitlines()] == [
        "error: Service/demo-headless-svc"]
    assert "not audited" not in res.stderr


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


def test_every_user_error_shares_the_base_class() -> None:
    from meshray.docs import DocsError
    from meshray.errors import MeshrayError, UsageError
    from meshray.manifests import ManifestError
    from meshray.render import HelmNotFound, RenderError
    from meshray.schema import SchemaError

    for cls in (DocsError, UsageError, ManifestError, RenderError, HelmNotFound, SchemaError):
        assert issubclass(cls, MeshrayError), cls
    # a render the chart refuses is a problem with the values (1); no helm: could not run (2)
    assert (RenderError.exit_code, HelmNotFound.exit_code, SchemaError.exit_code) == (1, 2, 2)


def test_audit_without_input_is_a_usage_error() -> None:
    res = run("audit")
    assert res.returncode == 2 and "no input" in res.stderr and "Traceback" not in res.stderr


# ------------------------------------------------------------- installed outside the checkout


def copy_sources(dest: Path) -> Path:
    """What `pip install <repo>` builds from, copied so the build leaves nothing in the
    shared checkout (setuptools writes build/ and *.egg-info next to the sources)."""
    skip = shutil.ignore_patterns("__pycache__", "*.egg-info")
    dest.mkdir()
    shutil.copy2(REPO / "pyproject.toml", dest)
    shutil.copytree(REPO / "tools" / "meshray", dest / "tools" / "meshray", symlinks=True,
                    ignore=skip)
    shutil.copytree(CHART, dest / "charts" / "meshray", ignore=skip)
    return dest


def test_installed_package_finds_its_chart_anywhere(tmp_path: Path) -> None:
    """A non-editable `pip install` into a fresh venv, sources deleted afterwards: `meshray
    render`, run from a directory outside the repository, renders the chart shipped inside the
    package, byte for byte what helm renders from the checkout's chart. Only the build backend
    comes from the package index (pip's build isolation); the runtime deps are this test
    environment's, through a .pth file (--no-deps)."""
    src = copy_sources(tmp_path / "src")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    res = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install",
                          "--quiet", "--no-deps", str(src)],
                         capture_output=True, text=True, timeout=300, check=False)
    assert res.returncode == 0, res.stdout + res.stderr
    shutil.rmtree(src)
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()"
                           "['purelib'])"], capture_output=True, text=True, check=True)
    deps = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (Path(site.stdout.strip()) / "_meshray_test_deps.pth").write_text("\n".join(sorted(deps)))

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    helm = str(Path(helm_executable()).resolve())
    env = {k: v for k, v in os.environ.items() if k not in {"MESHRAY_CHART", "PYTHONPATH"}}
    env["MESHRAY_HELM"] = helm

    def meshray(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(venv / "bin" / "meshray"), *args], cwd=elsewhere, env=env,
                              capture_output=True, text=True, timeout=120, check=False)

    where = subprocess.run(
        [str(python), "-c", "import meshray.paths as p; print(p.chart_dir()); "
         "print(p.checkout_root())"], cwd=elsewhere, env=env, capture_output=True, text=True,
        check=True).stdout.split()
    assert Path(where[0]).is_relative_to(venv), where
    assert where[1] == "None"

    rendered = meshray("render")
    assert rendered.returncode == 0, rendered.stderr
    expected = subprocess.run([helm, "template", "meshray", str(CHART), "--namespace",
                               "default"], capture_output=True, text=True, check=True).stdout
    assert rendered.stdout == expected
    assert "kind: RayCluster" in rendered.stdout
    assert meshray("validate").returncode == 0
    assert meshray("schema", "--check").returncode == 0

    # outside a checkout there is no bin/helm to fall back on: a clean "could not run"
    env = {k: v for k, v in env.items() if k != "MESHRAY_HELM"}
    env["PATH"] = str(venv / "bin")
    no_helm = meshray("render")
    assert no_helm.returncode == 2
    assert no_helm.stderr.startswith("meshray render: no helm binary found")
    assert "Traceback" not in no_helm.stderr


def test_chart_env_overrides_the_packaged_chart(tmp_path: Path) -> None:
    elsewhere = tmp_path / "no-chart-here"
    env = {**os.environ, "MESHRAY_CHART": str(elsewhere)}
    res = subprocess.run([str(MESHRAY), "render"], env=env, capture_output=True, text=True,
                         timeout=60, check=False)
    assert res.returncode == 2
    assert f"{elsewhere}: not a chart directory" in res.stderr
