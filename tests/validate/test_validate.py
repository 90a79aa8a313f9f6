"""`meshray validate`: every schema error path with its exact message, blame, chart `fail`
checks surfacing in the same format, and the risky-but-legal warnings.

The exact-message tests use a small chart of their own (schema + values written here), so each
yamale construct is exercised once and the expected lines are spelled out by hand.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from chart_support import CHART, EXAMPLES, REPO
from meshray import meshcost
from meshray.cli import main
from meshray.render import helm_executable

SCHEMA = """\
name: regex('^[a-z]+$', name='a lower-case word')
count: int(min=1, max=10)
ratio: num()
flag: bool()
mode: enum('A', 'B')
title: str(min=1)
labels: map(str(), key=str())
groups: map(include('group'), key=regex('^[a-z]+$', name='a group name'))
tags: list(str(), min=1)
either: any(int(), bool())
nested:
  inner: int()
  optional: str(required=False)
---
group:
  size: int(min=0)
  note: str(required=False)
  limits: map(str(), key=str(), min=1)
"""

VALUES = """\
# -- the name
name: abc
count: 3
ratio: 0.5
flag: true
mode: A
title: hello
labels: {}
groups: {}
tags: [x]
either: 1
nested:
  inner: 1
"""


@pytest.fixture
def chart(tmp_path: Path) -> Path:
    d = tmp_path / "chart"
    d.mkdir()
    (d / "Chart.yaml").write_text("apiVersion: v2\nname: t\nversion: 0.1.0\n")
    (d / "values.schema.yamale").write_text(SCHEMA)
    (d / "values.yaml").write_text(VALUES)
    return d


def validate(chart: Path, tmp_path: Path, body: str,
             capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str], str]:
    f = tmp_path / "v.yaml"
    f.write_text(body)
    code = main(["validate", "--no-render", "--chart", str(chart), str(f)])
    return code, capsys.readouterr().out.splitlines(), str(f)


CASES = [
    ("unknown key with suggestion", "cuont: 3\n",
     "cuont: unknown key (did you mean count?) (got 3)"),
    ("unknown key", "zzz: 1\n", 'zzz: unknown key (got 1)'),
    ("nested unknown key", "nested: {inner: 1, extra: x}\n", 'nested.extra: unknown key (got "x")'),
    ("required key deleted by null", "count: null\n", "count: required key missing"),
    ("wrong type int", "count: many\n", 'count: must be an integer between 1 and 10 (got "many")'),
    ("int below min", "count: 0\n", "count: must be an integer between 1 and 10 (got 0)"),
    ("int above max", "count: 11\n", "count: must be an integer between 1 and 10 (got 11)"),
    ("bool is not int", "count: true\n", "count: must be an integer between 1 and 10 (got true)"),
    ("number", "ratio: x\n", 'ratio: must be a number (got "x")'),
    ("bool", "flag: 'yes'\n", 'flag: must be true or false (got "yes")'),
    ("enum", "mode: C\n", 'mode: must be one of: A, B (got "C")'),
    ("regex with name", "name: ABC\n", 'name: must be a lower-case word (got "ABC")'),
    ("non-empty string", "title: ''\n", 'title: must be a non-empty string (got "")'),
    ("string type", "title: 5\n", "title: must be a non-empty string (got 5)"),
    ("map type", "labels: [a]\n", 'labels: must be a map (got ["a"])'),
    ("map value", "labels: {a: 1}\n", "labels.a: must be a string (got 1)"),
    ("map key", "groups: {Bad: {size: 1, limits: {a: b}}}\n",
     'groups.Bad: key must be a group name (got "Bad")'),
    ("include required", "groups: {web: {limits: {a: b}}}\n",
     "groups.web.size: required key missing"),
    ("include value", "groups: {web: {size: -1, limits: {a: b}}}\n",
     "groups.web.size: must be an integer >= 0 (got -1)"),
    ("include unknown key", "groups: {web: {size: 1, limits: {a: b}, sise: 2}}\n",
     "groups.web.sise: unknown key (did you mean size?) (got 2)"),
    ("map min entries", "groups: {web: {size: 1, limits: {}}}\n",
     "groups.web.limits: must be a map of at least 1 entry (got {})"),
    ("static map type", "nested: 3\n", "nested: must be a map (got 3)"),
    ("list type", "tags: x\n", 'tags: must be a list of at least 1 item (got "x")'),
    ("list min items", "tags: []\n", "tags: must be a list of at least 1 item (got [])"),
    ("list item", "tags: [x, 2]\n", "tags[1]: must be a string (got 2)"),
    ("any of", "either: x\n", 'either: must be an integer or true or false (got "x")'),
    ("optional may be null", "nested: {inner: 1, optional: null}\n", None),
    ("optional typed", "nested: {inner: 1, optional: 1}\n",
     "nested.optional: must be a string (got 1)"),
    ("root not a map", "- a\n", '(root): must be a map (got ["a"])'),
    ("malformed", "a: [b\n", None),
]


@pytest.mark.parametrize(("body", "expected"), [(b, e) for _, b, e in CASES],
                         ids=[n for n, _, _ in CASES])
def test_schema_error_messages(chart: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                               body: str, expected: str | None) -> None:
    code, lines, file = validate(chart, tmp_path, body, capsys)
    if body.startswith("a: [b"):
        assert code == 1
        assert len(lines) == 1 and lines[0].startswith(f"{file}: line 2: malformed YAML")
        return
    if expected is None:
        assert (code, lines) == (0, [])
        return
    assert lines == [f"{file}: {expected}"]
    assert code == 1


def test_every_problem_is_reported_not_just_the_first(chart: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    code, lines, file = validate(chart, tmp_path, "count: 0\nmode: C\nzzz: 1\n", capsys)
    assert code == 1
    assert sorted(lines) == sorted([
        f"{file}: zzz: unknown key (got 1)",
        f"{file}: count: must be an integer between 1 and 10 (got 0)",
        f'{file}: mode: must be one of: A, B (got "C")',
    ])


def test_problems_in_the_defaults_blame_the_chart(chart: Path, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    (chart / "values.yaml").write_text(VALUES.replace("count: 3", "count: 30"))
    code, lines, _ = validate(chart, tmp_path, "name: ok\n", capsys)
    assert code == 1
    assert lines == [f"{chart / 'values.yaml'}: count: must be an integer between 1 and 10 "
                     "(got 30)"]


def test_several_files_each_judged_alone(chart: Path, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    good, bad = tmp_path / "good.yaml", tmp_path / "bad.yaml"
    good.write_text("count: 5\n")
    bad.write_text("count: 50\n")
    assert main(["validate", "--no-render", "--chart", str(chart), str(good), str(bad)]) == 1
    assert capsys.readouterr().out.splitlines() == [
        f"{bad}: count: must be an integer between 1 and 10 (got 50)"]


# ------------------------------------------------------------------- the real chart


@pytest.mark.parametrize("values", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_examples_have_no_errors(values: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(values)]) == 0
    assert all(": warning: " in line for line in capsys.readouterr().out.splitlines())


def test_a_job_on_another_releases_cluster_passes_strict(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """The render of a RayJob on an existing cluster never holds that cluster (its own release
    renders it, NOTES says so): validate --strict passes, while the audit of the same render,
    which cannot know that, warns that the cluster is not among the manifests."""
    example = REPO / "values-examples" / "rayjob-existing-cluster.yaml"
    assert main(["validate", "--strict", "-o", str(tmp_path), str(example)]) == 0
    capsys.readouterr()
    assert main(["audit", str(tmp_path / "rayjob-existing-cluster.yaml")]) == 0
    assert "rayjob-cluster-not-found" in capsys.readouterr().out


def test_chart_defaults_validate(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate"]) == 0


def test_chart_typo_is_caught_by_the_schema(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "typo.yaml"
    f.write_text("ports:\n  maxWorkerPorst: 10\n")
    assert main(["validate", str(f)]) == 1
    [line] = capsys.readouterr().out.splitlines()
    assert line.startswith(f"{f}: ports.maxWorkerPorst: unknown key (did you mean maxWorkerPort")


def test_chart_fail_checks_surface_in_the_same_format(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # legal for the schema, refused by the chart's own cross-field check
    f = tmp_path / "range.yaml"
    f.write_text("ports:\n  minWorkerPort: 10010\n  maxWorkerPort: 10005\n")
    assert main(["validate", str(f)]) == 1
    [line] = capsys.readouterr().out.splitlines()
    assert line.startswith(f"{f}: ports.maxWorkerPort: ")
    assert "10005" in line and "Traceback" not in line


def test_render_is_skipped_when_the_schema_fails(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "both.yaml"
    f.write_text("ports:\n  gcs: 80\n  minWorkerPort: 10010\n  maxWorkerPort: 10005\n")
    assert main(["validate", str(f)]) == 1
    assert capsys.readouterr().out.splitlines() == [
        f"{f}: ports.gcs: must be an integer between 1024 and 65535 (got 80)"]


@pytest.mark.parametrize(("body", "key"), [
    ("mtls:\n  mode: PERMISSIVE\n", "mtls.mode"),
    ("mtls:\n  portLevelMtls:\n    - {port: 8080, mode: PERMISSIVE}\n",
     "mtls.portLevelMtls[0].mode"),
    ("ingress:\n  dashboard:\n    enabled: true\n    host: d.example.com\n"
     "    acknowledgeUnauthenticated: true\n", "ingress.dashboard.enabled"),
    # 4 worker ports per pod, 8 CPUs: far fewer than one per task worker
    ("ports:\n  maxWorkerPort: 10005\nworkerDefaults:\n  resources:\n"
     "    limits: {cpu: '8'}\n    requests: {cpu: '8'}\n", "ports.maxWorkerPort"),
    # DISABLE needs the AuthorizationPolicy off (its peers are mTLS identities)
    ("mesh:\n  authorizationPolicy:\n    enabled: false\nmtls:\n  mode: DISABLE\n", "mtls.mode"),
], ids=["permissive", "port-permissive", "dashboard", "worker-range", "disable"])
def test_risky_choices_warn_but_pass(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                     body: str, key: str) -> None:
    f = tmp_path / "risky.yaml"
    f.write_text(body)
    assert main(["validate", str(f)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert any(line.startswith(f"{f}: warning: {key}: ") for line in lines), lines


def test_defaults_do_not_warn(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate"]) == 0
    assert capsys.readouterr().out == ""


def test_validate_without_a_schema_file(tmp_path: Path) -> None:
    broken = tmp_path / "chart"
    shutil.copytree(CHART, broken)
    (broken / "values.schema.yamale").write_text("a: nosuch()\n")
    assert main(["validate", "--chart", str(broken)]) == 2


@pytest.mark.parametrize(("ports", "warns"), [(13, True), (14, False)])
def test_worker_range_warning_follows_the_measured_rule(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], ports: int, warns: bool) -> None:
    """make sizing measured num-cpus + live actors; planning 8 actors, 4 I/O workers and a
    driver, a 1-CPU pod needs 1 + 8 + 4 + 1 = 14 worker ports."""
    f = tmp_path / "range.yaml"
    f.write_text(f"ports:\n  minWorkerPort: 10002\n  maxWorkerPort: {10002 + ports - 1}\n"
                 "head:\n  rayStartParams:\n    num-cpus: '1'\n"
                 "workerDefaults:\n  rayStartParams:\n    num-cpus: '1'\n")
    assert main(["validate", str(f)]) == 0
    out = capsys.readouterr().out
    assert ("likely too few" in out) == warns, out


@pytest.mark.parametrize(("ports", "warns"), [(100, False), (101, True)])
def test_many_worker_ports_warn_with_the_measured_sidecar_cost(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], ports: int, warns: bool) -> None:
    """make bench-mesh measured the KB of every Ray sidecar's config per declared worker port
    (meshcost, docs/mesh-cost.md); above 100 worker ports validate says what they cost."""
    f = tmp_path / "ports.yaml"
    f.write_text(f"ports:\n  minWorkerPort: 10002\n  maxWorkerPort: {10002 + ports - 1}\n")
    assert main(["validate", str(f)]) == 0
    out = capsys.readouterr().out
    assert (f"ports.maxWorkerPort: {ports} worker ports: istiod sends every Ray sidecar" in out) \
        == warns, out
    if warns:
        assert f"{meshcost.KB_PER_WORKER_PORT} KB per declared port" in out, out
        assert meshcost.MEASURED in out, out


@pytest.mark.parametrize(("export_to", "warns"), [('["."]', False), ('["*"]', True),
                                                  ('[".", monitoring]', False)])
def test_export_to_every_namespace_warns_with_the_cost_for_every_sidecar(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], export_to: str, warns: bool) -> None:
    """With exportTo "*" every sidecar of the mesh gets the Ray Services (make bench-mesh: a
    plain Pod's sidecar in another namespace, per worker port)."""
    f = tmp_path / "export.yaml"
    f.write_text(f"service:\n  exportTo: {export_to}\n")
    assert main(["validate", str(f)]) == 0
    out = capsys.readouterr().out
    assert ("service.exportTo: the Ray Services are exported to every namespace" in out) \
        == warns, out
    if warns:
        kb = 50 * meshcost.OTHER_KB_PER_WORKER_PORT_EXPORTED
        assert f"about {kb:,.0f} KB of config for this cluster's 50 worker ports" in out, out


@pytest.mark.parametrize(("max_replicas", "tls", "limit", "warns"), [
    (4, True, None, False),    # (1 head + 4 workers) x 200 ports = 1000 listeners
    (5, True, None, True),     # 6 x 200 = 1200
    (9, True, None, True),     # 10 x 200 = 2000: the chart's default ceiling, still renders
    (10, True, 5000, True),    # 11 x 200 = 2200 with the ceiling raised
    (10, False, None, False),  # without Ray TLS the listeners do not grow with pods
])
def test_ray_tls_warns_when_listeners_grow_with_pods_times_ports(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], max_replicas: int, tls: bool,
        limit: int | None, warns: bool) -> None:
    """With rayTls istiod builds a listener per Ray pod and port (make bench-mesh): validate
    warns once pods x ports passes 1000, with the measured size and the chart's ceiling
    (rayTls.maxListeners; above it the chart refuses: tests/render/test_render_failures.py)."""
    f = tmp_path / "tls.yaml"
    f.write_text(f"rayTls:\n  enabled: {str(tls).lower()}\n"
                 + (f"  maxListeners: {limit}\n" if limit else "")
                 + "ports:\n  minWorkerPort: 10002\n  maxWorkerPort: 10201\n"
                 f"workerDefaults:\n  replicas: 1\n  maxReplicas: {max_replicas}\n")
    assert main(["validate", str(f)]) == 0
    out = capsys.readouterr().out
    assert ("rayTls.enabled: with Ray TLS" in out) == warns, out
    if warns:
        n = (1 + max_replicas) * 200
        assert f"up to {1 + max_replicas} pods x 200 ports is {n} listeners" in out, out
        assert f"{meshcost.KB_PER_TLS_LISTENER} KB per listener" in out, out
        assert f"rayTls.maxListeners={limit or 2000}" in out, out


def test_ambient_has_no_ray_sidecar_cost_to_warn_about(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The worker-port and rayTls warnings are about Ray's own sidecars; ambient runs none. The
    same values with the sidecar dataplane warn (the control)."""
    body = ("rayTls:\n  enabled: true\nports:\n  minWorkerPort: 10002\n  maxWorkerPort: 10201\n"
            "workerDefaults:\n  replicas: 1\n  maxReplicas: 8\n")
    for dataplane, warns in (("sidecar", True), ("ambient", False)):
        f = tmp_path / f"{dataplane}.yaml"
        f.write_text(body + f"mesh:\n  dataplane: {dataplane}\n")
        assert main(["validate", str(f)]) == 0
        out = capsys.readouterr().out
        assert ("rayTls.enabled: with Ray TLS" in out) == warns, out
        assert ("200 worker ports: istiod sends every Ray sidecar" in out) == warns, out


def test_ray_tls_above_the_ceiling_is_refused(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "tls.yaml"
    f.write_text("rayTls:\n  enabled: true\nports:\n  minWorkerPort: 10002\n"
                 "  maxWorkerPort: 10201\nworkerDefaults:\n  replicas: 1\n  maxReplicas: 10\n")
    assert main(["validate", str(f)]) != 0
    out = capsys.readouterr().out
    assert "rayTls.maxListeners" in out and "2200 listeners" in out, out


# ------------------------------------------------------------- render once, keep the render


@pytest.fixture
def counting_helm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """$MESHRAY_HELM becomes a wrapper that logs each helm call, then runs the real helm.
    Returns (the log, the real helm)."""
    real = Path(helm_executable()).resolve()
    log = tmp_path / "helm-calls.log"
    wrapper = tmp_path / "helm"
    wrapper.write_text(f'#!/bin/sh\necho "$*" >> {log}\nexec {real} "$@"\n')
    wrapper.chmod(0o755)
    monkeypatch.setenv("MESHRAY_HELM", str(wrapper))
    return log, real


def test_output_dir_keeps_the_one_render_validate_judged(
        tmp_path: Path, counting_helm: tuple[Path, Path],
        capsys: pytest.CaptureFixture[str]) -> None:
    log, real_helm = counting_helm
    examples = [p for p in EXAMPLES if p.stem in {"multi-group", "ray-serve"}]
    out = tmp_path / "rendered"
    assert main(["validate", "--output-dir", str(out), *map(str, examples)]) == 0
    assert len(log.read_text().splitlines()) == len(examples)  # one helm run per file
    for ex in examples:
        helm = subprocess.run([str(real_helm), "template", "meshray", str(CHART),
                               "--namespace", "default", "--values", str(ex)],
                              capture_output=True, text=True, check=True)
        assert (out / f"{ex.stem}.yaml").read_text() == helm.stdout
    capsys.readouterr()
    assert main(["audit", "--min-severity", "error", str(out)]) == 0  # no helm: reads the files
    assert len(log.read_text().splitlines()) == len(examples)


def test_several_files_render_side_by_side_and_report_in_order(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """validate runs one helm per file, up to one per CPU at once, and still reports (and
    keeps renders) in the order the files were given, whichever helm finishes first."""
    real = Path(helm_executable()).resolve()
    log = tmp_path / "helm-calls.log"
    wrapper = tmp_path / "helm"
    # the first file's helm is the slowest, so it finishes last
    wrapper.write_text(f'#!/bin/sh\necho "start $*" >> {log}\n'
                       f'case "$*" in *first*) sleep 4;; *) sleep 0.2;; esac\n'
                       f'"{real}" "$@"; rc=$?\n'
                       f'echo "end $*" >> {log}\nexit $rc\n')
    wrapper.chmod(0o755)
    monkeypatch.setenv("MESHRAY_HELM", str(wrapper))
    monkeypatch.setattr("meshray.render.default_jobs", lambda: 2)
    first, bad, last = tmp_path / "first.yaml", tmp_path / "bad.yaml", tmp_path / "last.yaml"
    first.write_text("mtls:\n  mode: PERMISSIVE\n")  # a warning, blamed on first.yaml
    bad.write_text("ingress:\n  dashboard:\n    enabled: true\n    host: ''\n")
    last.write_text("mtls:\n  mode: DISABLE\nmesh:\n  authorizationPolicy:\n    enabled: false\n")
    out = tmp_path / "rendered"
    assert main(["validate", "-o", str(out), str(first), str(bad), str(last)]) == 1
    lines = capsys.readouterr().out.splitlines()
    blamed = [ln.split(":", 1)[0] for ln in lines]
    assert blamed == sorted(blamed, key=[str(first), str(bad), str(last)].index), lines
    assert {str(first), str(bad), str(last)} <= set(blamed), lines
    events = log.read_text().split("\n")
    ends = [i for i, e in enumerate(events) if e.startswith("end")]
    starts = [i for i, e in enumerate(events) if e.startswith("start")]
    assert len(starts) == len(ends) == 3
    assert starts[1] < ends[0], events  # a second helm started before the first one ended
    assert "first.yaml" in events[ends[-1]], events  # the slow first file finished last
    assert (out / "first.yaml").is_file() and (out / "last.yaml").is_file()
    assert not (out / "bad.yaml").exists()


def test_output_dir_drops_the_render_of_a_failing_file(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "rendered"
    out.mkdir()
    stale = out / "range.yaml"
    stale.write_text("kind: RayCluster\n")  # from an earlier run that passed
    f = tmp_path / "range.yaml"
    f.write_text("ports:\n  minWorkerPort: 10010\n  maxWorkerPort: 10005\n")
    assert main(["validate", "-o", str(out), str(f)]) == 1
    assert not stale.exists()


@pytest.mark.parametrize(("args", "needle"), [
    (["--no-render"], "drop --no-render"),
    (["a/x.yaml", "b/x.yaml"], "would both render to"),
], ids=["no-render", "same-stem"])
def test_output_dir_usage_errors(tmp_path: Path, args: list[str], needle: str,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", "-o", str(tmp_path / "out"), *args]) == 2
    assert needle in capsys.readouterr().err


def test_prerequisites_are_notes_on_stderr(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    """What the cluster must provide is said apart from problems: STRICT needs the operator's
    init container injection off (tests/cluster/test_negative.py shows what the default does);
    Recreate needs KubeRay 1.6.0."""
    not_native = tmp_path / "not-native.yaml"
    not_native.write_text("mesh:\n  nativeSidecar: false\n")
    assert main(["validate", str(not_native)]) == 0
    err = capsys.readouterr().err
    assert "note: mtls.mode STRICT: run the KubeRay operator with " \
           "ENABLE_INIT_CONTAINER_INJECTION=false" in err
    assert "wait-gcs-ready" in err
    assert "note: kuberay.upgradeStrategy Recreate needs KubeRay 1.6.0" in err
    f = tmp_path / "permissive.yaml"
    f.write_text("mtls:\n  mode: PERMISSIVE\nkuberay:\n  upgradeStrategy: ''\n")
    assert main(["validate", str(f)]) == 0
    notes = [ln for ln in capsys.readouterr().err.splitlines() if "note:" in ln]
    # only the Pod Security note is left: every sidecar-mode render gets it
    assert len(notes) == 1 and "note: Pod Security:" in notes[0], notes


def test_pod_security_note_for_sidecars_only(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    """Istio's injected istio-init breaks baseline and restricted unless Istio runs with
    istio-cni (tests/mesh/test_injection.py, the real API server's admission): validate and
    NOTES say so for sidecar mode; ambient pods get no sidecar, so neither does there."""
    for dataplane, said in (("sidecar", True), ("ambient", False)):
        f = tmp_path / f"{dataplane}.yaml"
        f.write_text(f"mesh:\n  dataplane: {dataplane}\n")
        assert main(["validate", str(f)]) == 0
        assert ("istio-cni (istioctl install --set components.cni.enabled=true)"
                in capsys.readouterr().err) is said
        notes = subprocess.run([str(REPO / "bin" / "helm"), "install", "r", str(CHART),
                                "--dry-run=client", "-f", str(f)],
                               capture_output=True, text=True, check=False)
        assert notes.returncode == 0, notes.stderr
        assert ("Pod Security baseline or restricted, Istio needs istio-cni"
                in notes.stdout) is said


NATIVE = 'sidecar.istio.io/nativeSidecar: "{}"'


OFF = "mesh:\n  nativeSidecar: false\n"


@pytest.mark.parametrize(("values", "needed"), [
    ("", False),  # mesh.nativeSidecar: true by default
    (OFF, True),
    (f"{OFF}workerDefaults:\n  annotations:\n    {NATIVE.format('true')}\n", False),
    (f"{OFF}head:\n  annotations:\n    {NATIVE.format('true')}\n", True),  # workers decide
    (f"workerDefaults:\n  annotations:\n    {NATIVE.format('true')}\n"
     f"workerGroups:\n  a: {{}}\n  b:\n    annotations:\n      {NATIVE.format('false')}\n",
     True),
    (f"workerDefaults:\n  annotations:\n    {NATIVE.format('false')}\n", True),
], ids=["defaults", "knob-off", "native-workers", "native-head-only", "one-group-not-native",
        "not-native"])
def test_init_container_prerequisite_unless_every_worker_is_native(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], values: str, needed: bool) -> None:
    """Istio's injector starts a native istio-proxy before KubeRay's wait-gcs-ready (the
    operator adds it to worker pods only; tests/mesh/test_injection.py): with the annotation on
    every worker group, neither validate's note nor the chart's NOTES ask for
    ENABLE_INIT_CONTAINER_INJECTION=false; otherwise both do, and say how to avoid it."""
    f = tmp_path / "values.yaml"
    f.write_text(values or "{}\n")
    assert main(["validate", str(f)]) == 0
    err = capsys.readouterr().err
    assert ("ENABLE_INIT_CONTAINER_INJECTION=false" in err) is needed
    # Helm 4 (bin/helm): Helm 3's client-side dry run still asks a cluster.
    notes = subprocess.run([str(REPO / "bin" / "helm"), "install", "r", str(CHART),
                            "--dry-run=client", "-f", str(f)],
                           capture_output=True, text=True, check=False)
    assert notes.returncode == 0, notes.stderr
    assert ("with ENABLE_INIT_CONTAINER_INJECTION=false" in notes.stdout) is needed
    assert "sidecar.istio.io/nativeSidecar" in notes.stdout
    if needed:
        assert "workerDefaults.annotations.sidecar.istio.io/nativeSidecar" in err
        assert "ENABLE_NATIVE_SIDECARS=true" in err
        assert "ENABLE_NATIVE_SIDECARS=true" in notes.stdout
    else:
        assert "can stay" in notes.stdout


def test_ambient_needs_no_init_container_prerequisite(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Ambient pods have no sidecar (the render carries no injection label or annotation), so
    neither validate nor NOTES ask for ENABLE_INIT_CONTAINER_INJECTION=false or injection,
    even with native sidecars off; NOTES ask for ambient mode instead."""
    f = tmp_path / "values.yaml"
    f.write_text("mesh:\n  dataplane: ambient\n  nativeSidecar: false\n")
    assert main(["validate", str(f)]) == 0
    assert "ENABLE_INIT_CONTAINER_INJECTION" not in capsys.readouterr().err
    notes = subprocess.run([str(REPO / "bin" / "helm"), "install", "r", str(CHART),
                            "--dry-run=client", "-f", str(f)],
                           capture_output=True, text=True, check=False)
    assert notes.returncode == 0, notes.stderr
    assert "ENABLE_INIT_CONTAINER_INJECTION" not in notes.stdout
    assert "istio-injection=enabled" in notes.stdout  # only as "do not also label"
    assert "sidecar.istio.io/inject" not in notes.stdout
    assert "Istio in ambient mode" in notes.stdout


def test_every_chart_problem_is_its_own_line(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    """The chart reports all its problems in one fail, one per line; validate keeps them
    apart, each blamed on its own key."""
    f = tmp_path / "two.yaml"
    f.write_text("ports:\n  objectManager: 6380\n  maxWorkerPort: 10002\n")
    assert main(["validate", str(f)]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert [ln.split(": ")[1] for ln in lines] == ["ports.maxWorkerPort", "ports.objectManager"]


# ------------------------------------------------------- the audit's warnings and --strict

# Ambient pods run no sidecar, so validate's own worker-port warning stays quiet; the audit
# still warns about a range above its 1000-port limit: the only warnings come from the audit.
AUDIT_ONLY_WARNING = ("mesh:\n  dataplane: ambient\nports:\n  maxWorkerPorts: 1100\n"
                      "  maxWorkerPort: 11051\n")


def test_audit_warnings_on_the_render_reach_the_user(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A render the audit warns about (and validate's own checks do not) shows each finding as
    a warning naming its check and object; it exits 0, and 1 with --strict, which also keeps
    no --output-dir render of it."""
    f = tmp_path / "wide.yaml"
    f.write_text(AUDIT_ONLY_WARNING)
    out = tmp_path / "rendered"
    assert main(["validate", "-o", str(out), str(f)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines, "the audit's worker-range-large warning was dropped"
    prefix = f"{f}: warning: (render): audit worker-range-large on RayCluster/meshray "
    assert all(line.startswith(prefix) for line in lines), lines
    assert {line[len(prefix):].split(":")[0] for line in lines} == {
        "spec.headGroupSpec.rayStartParams.max-worker-port",
        "spec.workerGroupSpecs[0].rayStartParams.max-worker-port"}, lines
    assert all(line.endswith("(got 1050)") for line in lines), lines
    # the same findings as `meshray audit` on the render validate judged
    assert main(["audit", "--min-severity", "warning", str(out)]) == 0
    audited = capsys.readouterr().out.splitlines()
    assert len(audited) == len(lines)
    assert all("[worker-range-large]" in line for line in audited), audited

    assert main(["validate", "--strict", "-o", str(out), str(f)]) == 1
    assert capsys.readouterr().out.splitlines() == lines
    assert not (out / "wide.yaml").exists()  # it fails now: no render left for kubectl apply


def test_audit_warning_beside_validates_own(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    """A PERMISSIVE port exception warns twice: on the values key, and as the audit's
    peerauth-permissive finding on the PeerAuthentication the chart renders for it."""
    f = tmp_path / "exception.yaml"
    f.write_text("mtls:\n  portLevelMtls:\n    - {port: 8080, mode: PERMISSIVE}\n")
    assert main(["validate", str(f)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(": ")[2] for line in lines] == ["mtls.portLevelMtls[0].mode", "(render)"]
    assert lines[1].startswith(f"{f}: warning: (render): audit peerauth-permissive on "
                               "PeerAuthentication/meshray spec.portLevelMtls.8080.mode: ")
    assert lines[1].endswith('(got "PERMISSIVE")'), lines


def test_strict_fails_on_validates_own_warnings_too(tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """Too few worker ports for 8 CPUs is validate's warning alone (the audit has no sizing
    check): exit 0, and 1 with --strict."""
    f = tmp_path / "small.yaml"
    f.write_text("ports:\n  maxWorkerPort: 10005\nworkerDefaults:\n  resources:\n"
                 "    limits: {cpu: '8'}\n    requests: {cpu: '8'}\n")
    assert main(["validate", str(f)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines and all(line.startswith(f"{f}: warning: ports.maxWorkerPort: ")
                         for line in lines), lines
    assert main(["validate", "--strict", str(f)]) == 1
    assert capsys.readouterr().out.splitlines() == lines


def test_strict_passes_a_clean_file_and_hides_audit_info(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The chart defaults, and values whose render gets only an info finding (mtls off: no
    PeerAuthentication applies, peerauth-none), print nothing and exit 0 even with --strict."""
    assert main(["validate", "--strict"]) == 0
    assert capsys.readouterr().out == ""
    f = tmp_path / "no-mtls.yaml"
    f.write_text("mtls:\n  enabled: false\n")
    out = tmp_path / "rendered"
    assert main(["validate", "--strict", "-o", str(out), str(f)]) == 0
    assert capsys.readouterr().out == ""
    # the info finding is there, in the render validate judged; validate only hides it
    assert main(["audit", str(out)]) == 0
    assert "[peerauth-none]" in capsys.readouterr().out


def test_any_audit_warning_passes_through(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    """validate passes on every error and warning finding, whatever its check (checks added
    later included), with the finding's own severity, and no info finding."""
    from meshray import audit

    def findings(*_: object, **__: object) -> list[audit.Finding]:
        return [audit.Finding(severity, f"new-{severity}-check", "Service", "default", "svc",
                              "spec.ports[0]", value, f"{severity} message", "a fix")
                for severity, value in ((audit.WARNING, 7), (audit.INFO, 8),
                                        (audit.ERROR, None))]

    monkeypatch.setattr(audit, "audit", findings)
    f = tmp_path / "v.yaml"
    f.write_text("{}\n")
    assert main(["validate", str(f)]) == 1
    assert capsys.readouterr().out.splitlines() == [
        f"{f}: warning: (render): audit new-warning-check on Service/svc spec.ports[0]: "
        "warning message (got 7)",
        f"{f}: (render): audit new-error-check on Service/svc spec.ports[0]: error message"]


# --------------------------------------------- acknowledged protections: who else is admitted
@pytest.mark.parametrize(("body", "principals"), [
    ("serviceAccount:\n  create: false\n  name: billing\n  acknowledgeShared: true\n",
     ["ns/default/sa/billing"]),
    ("serviceAccount:\n  create: false\n  acknowledgeShared: true\n", ["ns/default/sa/default"]),
    ("serviceAccount:\n  acknowledgeShared: true\nworkerGroups:\n  gpu:\n"
     "    serviceAccountName: gpu-runner\n", ["ns/default/sa/gpu-runner",
                                              "ns/default/sa/meshray-ray"]),
])
def test_shared_identity_names_who_else_the_policy_admits(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], body: str,
        principals: list[str]) -> None:
    """With serviceAccount.acknowledgeShared the chart renders, and validate warns, for each
    ServiceAccount the rendered Ray pods run as, that the policy admits its principal to the
    GCS and raylets and so every other Pod running as it; --strict fails on it."""
    f = tmp_path / "shared.yaml"
    f.write_text(body)
    assert main(["validate", str(f)]) == 0
    lines = [ln for ln in capsys.readouterr().out.splitlines()
             if ": warning: serviceAccount.acknowledgeShared: " in ln]
    assert [p for p in principals if any(f"admits {p} to the GCS" in ln for ln in lines)] == (
        principals), lines
    assert main(["validate", "--strict", str(f)]) == 1


def test_shared_identity_is_refused_without_acknowledgement_and_quiet_when_own(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Controls: without the acknowledgement the chart refuses the shared account (validate
    exits 1 naming the key); with it but the chart's own account, nothing is shared and
    nothing warns."""
    f = tmp_path / "shared.yaml"
    f.write_text("serviceAccount:\n  create: false\n  name: billing\n")
    assert main(["validate", str(f)]) == 1
    assert f"{f}: serviceAccount.name: " in capsys.readouterr().out
    f.write_text("serviceAccount:\n  acknowledgeShared: true\n")
    assert main(["validate", "--strict", str(f)]) == 0
    assert "acknowledgeShared" not in capsys.readouterr().out


@pytest.mark.parametrize(("values", "warned"), [
    ("ray:\n  version: 2.61.0\n", True),
    ("ray:\n  version: 2.61.0\nrayAuth:\n  enabled: true\n", False),
    ("ray:\n  version: 2.60.0\n", False),
], ids=["2.61-without", "2.61-with", "2.60"])
def test_ray_2_61_without_token_auth_is_warned(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                               values: str, warned: bool) -> None:
    """Ray 2.61 turns token auth on for every cluster: without rayAuth KubeRay gives the head
    no token, so validate warns, naming rayAuth.enabled; --strict fails on it."""
    f = tmp_path / "values.yaml"
    f.write_text(values)
    assert main(["validate", str(f)]) == 0
    said = "".join(capsys.readouterr())
    assert ("rayAuth.enabled" in said and "Ray 2.61 turns token" in said) is warned, said
    assert main(["validate", "--strict", str(f)]) == (1 if warned else 0)
