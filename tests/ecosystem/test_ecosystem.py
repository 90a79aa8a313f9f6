"""Ecosystem checks: strict schemas, kubeconform and istioctl analyze over every render,
deterministic rendering under Helm 3 and Helm 4, chart packaging and metadata, chart-testing.

Each tool check is shown once to be able to fail (an unknown field, a missing schema, a broken
Istio reference, an incomplete Chart.yaml), so a green run means something.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
import tarfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from chart_support import skip_unless_ci
from ecosystem_support import (
    CHART,
    REPO,
    helm,
    helm3,
    helm_template,
    load_script,
    run,
    schemas_dir,
    tool,
)
from jsonschema import Draft202012Validator

# Needs the ecosystem tools `make lint-setup` installs; `make check` leaves it out.
pytestmark = pytest.mark.ecosystem

schemas = load_script("schemas")
checks = load_script("check_renders")
CASES = checks.render_cases()
SHARED_CRDS = REPO.parent / "shared" / "crds"
# The module that ships each KubeRay CRD set, for a clone without ../shared (as mk/lint.mk).
CRD_MODULES = {
    v: f"github.com/ray-project/kuberay/ray-operator@{v.removeprefix('kuberay-')}"
    for v in ("kuberay-v1.1.0", "kuberay-v1.7.0")
}


def crd_file(crds: str, name: str) -> Path:
    """A CRD file of a set: ../shared/crds/<set>/ where this workplace has it, else the file the
    set's Go module ships (a module proxy that refuses the version skips here, fails in CI)."""
    path = SHARED_CRDS / crds / name
    if path.is_file():
        return path
    res = subprocess.run(
        ["go", "mod", "download", "-json", CRD_MODULES[crds]],
        capture_output=True,
        text=True,
        cwd="/tmp",
        timeout=600,
        check=False,
    )
    if res.returncode != 0:
        skip_unless_ci(f"no {path}, and {CRD_MODULES[crds]} is not served: {res.stdout[-300:]}")
    return Path(json.loads(res.stdout)["Dir"]) / "config" / "crd" / "bases" / name


def docs_of(text: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(text) if isinstance(d, dict) and d]


def dump(docs: list[dict[str, Any]]) -> str:
    return "---\n".join(yaml.safe_dump(d, sort_keys=False) for d in docs)


def render_case(case: Any, binary: str | None = None) -> str:
    return helm_template(binary or helm(), case.values, namespace=checks.NAMESPACE)


# ---- schema converter (pure Python) ----------------------------------------------------------


def test_strictify_closes_objects_and_keeps_declared_escape_hatches() -> None:
    stats = schemas.Stats()
    raw = {
        "type": "object",
        "properties": {
            "port": {"x-kubernetes-int-or-string": True, "anyOf": [{"type": "integer"}]},
            "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
            "labels": {"type": "object", "additionalProperties": {"type": "string"}},
            "maybe": {"type": "string", "nullable": True},
            "embedded": {"type": "object", "x-kubernetes-embedded-resource": True},
        },
        "x-kubernetes-validations": [{"rule": "self.port != 0"}],
    }
    out = schemas.strictify(raw, stats)
    v = Draft202012Validator(out)
    assert v.is_valid({"port": 80, "free": {"anything": 1}, "labels": {"a": "b"}})
    assert v.is_valid({"port": "http", "maybe": None})
    assert v.is_valid({"embedded": {"apiVersion": "v1", "kind": "Pod", "metadata": {}}})
    assert not v.is_valid({"bogus": 1}), "unknown top-level field must be rejected"
    assert not v.is_valid({"labels": {"a": 1}})
    assert not v.is_valid({"embedded": {"bogus": 1}})
    assert stats.cel_rules == 1


@pytest.mark.parametrize("crds", ["kuberay-v1.1.0", "kuberay-v1.7.0"])
def test_generated_raycluster_schema_rejects_unknown_pod_field(crds: str) -> None:
    path = crd_file(crds, "ray.io_rayclusters.yaml")
    generated = schemas.crd_schemas(yaml.safe_load_all(path.read_text()), schemas.Stats())
    v = Draft202012Validator(generated[("ray.io", "RayCluster", "v1")])
    good = {
        "apiVersion": "ray.io/v1",
        "kind": "RayCluster",
        "metadata": {"name": "r"},
        "spec": {
            "headGroupSpec": {
                "rayStartParams": {"port": "6379"},
                "template": {
                    "spec": {
                        "containers": [
                            {
                                "name": "ray-head",
                                "image": "rayproject/ray:2.60.0",
                                "resources": {"limits": {"cpu": 1, "memory": "2Gi"}},
                                "ports": [{"name": "gcs", "containerPort": 6379}],
                            }
                        ]
                    }
                },
            }
        },
    }
    assert v.is_valid(good), [e.message for e in v.iter_errors(good)]
    bad = copy.deepcopy(good)
    bad["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]["portz"] = []
    errors = [e.message for e in v.iter_errors(bad)]
    assert any("portz" in m for m in errors), errors
    wrong_kind = dict(good, apiVersion="ray.io/v2")
    assert not v.is_valid(wrong_kind)


# ---- kubeconform -----------------------------------------------------------------------------


def _kubeconform(files: list[Path], sets: list[Path]) -> list[dict[str, Any]]:
    bad: list[dict[str, Any]] = checks.kubeconform(tool("kubeconform"), files, sets)
    return bad


def test_kubeconform_rejects_unknown_fields_and_wrong_types(tmp_path: Path) -> None:
    root = schemas_dir()
    docs = docs_of(render_case(CASES[0]))
    for doc in docs:
        if doc["kind"] == "RayCluster":
            head = doc["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]
            head["bogusField"] = True
        if doc["kind"] == "Service":
            doc["spec"]["ports"][0]["port"] = "not-a-number"
        if doc["kind"] == "PeerAuthentication":
            doc["spec"]["mtls"]["mood"] = "STRICT"
    broken = tmp_path / "broken.yaml"
    broken.write_text(dump(docs))
    for k8s in checks.schema_sets(root, "k8s"):
        for kuberay in checks.schema_sets(root, "kuberay"):
            sets = [k8s, kuberay, checks.schema_sets(root, "istio")[-1]]
            bad = {r["kind"]: r["msg"] for r in _kubeconform([broken], sets)}
            assert "bogusField" in bad.get("RayCluster", ""), (k8s.name, kuberay.name, bad)
            assert "port" in bad.get("Service", ""), bad
            assert "mood" in bad.get("PeerAuthentication", ""), bad


def test_kubeconform_has_no_schema_for_v1_istio_objects_in_istio_121(tmp_path: Path) -> None:
    root = schemas_dir()
    old = [s for s in checks.schema_sets(root, "istio") if s.name == "istio-1.21.1"]
    if not old:
        skip_unless_ci("no istio-1.21.1 schema set")
    text = render_case(CASES[0])  # the defaults render security.istio.io/v1
    path = tmp_path / "v1.yaml"
    path.write_text(text)
    sets = [checks.schema_sets(root, "k8s")[-1], checks.schema_sets(root, "kuberay")[-1], old[0]]
    bad = _kubeconform([path], sets)
    # the defaults' v1 Istio objects: the PeerAuthentication and the two Sidecars
    assert sorted(r["kind"] for r in bad) == ["PeerAuthentication", "Sidecar", "Sidecar"]
    assert all("could not find schema" in r["msg"] for r in bad)
    # ...which is why the driver validates a v1 render only against Istio releases serving v1.
    assert [s.name for s in checks.istio_sets_for(docs_of(text), [old[0]])] == []


def test_v1beta1_render_is_checked_against_every_istio_release() -> None:
    root = schemas_dir()
    case = next(c for c in CASES if c.name == "ci-istio121")
    docs = docs_of(render_case(case))
    istio = checks.schema_sets(root, "istio")
    assert {d["apiVersion"] for d in docs if "istio.io" in d["apiVersion"]} == {
        "security.istio.io/v1beta1",
        "networking.istio.io/v1beta1",
    }
    assert checks.istio_sets_for(docs, istio) == istio


# ---- every render ----------------------------------------------------------------------------


def test_render_cases_cover_defaults_examples_and_ci_values() -> None:
    values = {c.values for c in CASES}
    assert None in values
    for path in [*(REPO / "values-examples").glob("*.yaml"), *(CHART / "ci").glob("*.yaml")]:
        assert path in values, f"{path} is not a render case"


def test_ci_values_cover_every_mode() -> None:
    """Each mode of the chart has a ct case (so ct lint and ct install exercise it)."""
    files = sorted((CHART / "ci").glob("*-values.yaml"))
    assert all(f.name.endswith("-values.yaml") for f in (CHART / "ci").iterdir())
    vals = [yaml.safe_load(f.read_text()) or {} for f in files]

    def any_case(pred: Any) -> bool:
        return any(pred(v) for v in vals)

    assert any_case(lambda v: v.get("mtls", {}).get("scope") == "namespace")
    assert any_case(lambda v: v.get("mtls", {}).get("portLevelMtls"))
    assert any_case(lambda v: v.get("mtls", {}).get("extraPolicies"))
    assert any_case(lambda v: len(v.get("workerGroups", {})) > 1)
    assert any_case(
        lambda v: (
            v.get("ingress", {}).get("client", {}).get("enabled")
            and v.get("rayTls", {}).get("enabled")
        )
    )
    assert any_case(
        lambda v: (
            v.get("ingress", {}).get("dashboard", {}).get("enabled")
            and v["ingress"]["dashboard"].get("auth", {}).get("type", "none") != "none"
            and v["ingress"]["dashboard"].get("tls", {}).get("enabled")
        )
    )
    assert any_case(lambda v: v.get("mesh", {}).get("sidecar", {}).get("enabled"))
    assert any_case(lambda v: v.get("istio", {}).get("apiVersion") == "v1beta1")


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_render_validates_with_kubeconform_and_istioctl(case: Any, tmp_path: Path) -> None:
    root = schemas_dir()
    tool("istioctl")
    path = checks.render(case, helm(), tmp_path)
    report = checks.Report()
    checks.check_case(case, path, tool("kubeconform").parent, root, report)
    assert report.findings == [], "\n".join(f"{f.tool}: {f.message}" for f in report.findings)
    k8s = checks.schema_sets(root, "k8s")
    kuberay = checks.kuberay_sets_for(case.name, checks.schema_sets(root, "kuberay"))
    assert kuberay and len(report.checks) >= len(k8s) * len(kuberay) + 1


def test_istioctl_analyze_reports_a_broken_reference_outside_default(tmp_path: Path) -> None:
    istioctl = tool("istioctl")
    text = render_case(CASES[0])
    broken = text + (
        "---\napiVersion: networking.istio.io/v1\nkind: VirtualService\n"
        f"metadata: {{name: dashboard, namespace: {checks.NAMESPACE}}}\n"
        "spec:\n  hosts: [ray.example.com]\n  gateways: [no-such-gateway]\n"
        "  http:\n  - route:\n    - destination: {host: meshray-head-svc}\n"
    )
    path = tmp_path / "broken.yaml"
    path.write_text(broken)
    codes = {(m["level"], m["code"]) for m in checks.istioctl_analyze(istioctl, path)}
    assert ("Error", "IST0101") in codes, codes
    clean = tmp_path / "clean.yaml"
    clean.write_text(text)
    assert checks.istioctl_analyze(istioctl, clean) == []


def test_expected_istioctl_messages_and_kuberay_exceptions_are_documented() -> None:
    for key, why in checks.EXPECTED_ISTIO_MESSAGES.items():
        assert len(why) > 20, key
    for case, (minimum, why) in checks.KUBERAY_MIN_VERSION.items():
        assert minimum.startswith("kuberay-v") and len(why) > 20, case


# ---- GitOps-safe rendering -------------------------------------------------------------------

FORBIDDEN = {
    r"\blookup\b": "lookup reads the live cluster: Argo CD renders offline (permanent diff)",
    r"\brand(Alpha|AlphaNum|Numeric|Ascii|Int|Bytes)\b": "random output changes on every render",
    r"\buuidv4\b": "random output changes on every render",
    r"\bnow\b": "time output changes on every render",
    r"\b(genCA|genPrivateKey|genSelfSignedCert|genSignedCert)\b": "random key material",
    r"\.Capabilities\b": "Argo CD's capabilities come from its settings; use explicit flags",
}


# (template, define) where a forbidden function is allowed, and why it cannot change the output.
ALLOWED = {
    (
        "cluster/_validate.tpl",
        "meshray.validate.upgrade",
        "lookup",
    ): "the upgrade rule only decides whether `helm upgrade` fails (validate.yaml renders "
    "nothing); offline (Argo CD, helm template) lookup is empty and the rule is silent",
}


def test_templates_use_no_lookup_random_time_or_capabilities() -> None:
    offenders = []
    templates = CHART / "templates"
    for path in sorted(templates.rglob("*")):
        if not path.is_file():
            continue
        define = ""
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if m := re.search(r'define "([^"]+)"', line):
                define = m.group(1)
            for pattern, why in FORBIDDEN.items():
                for action in re.findall(r"{{.*?}}", line):
                    name = pattern.replace(r"\b", "").split("(")[0]
                    key = (str(path.relative_to(templates)), define, name)
                    if re.search(pattern, action) and key not in ALLOWED:
                        offenders.append(f"{path.name}:{n}: {action.strip()} ({why})")
    assert offenders == []


def test_the_allowed_lookup_changes_no_output() -> None:
    """The upgrade rule's lookup may only ever fail a render: validate.yaml renders nothing."""
    text = (CHART / "templates" / "validate.yaml").read_text()
    actions = [
        a for a in re.findall(r"{{.*?}}", text, flags=re.S) if not a.startswith(("{{- /*", "{{/*"))
    ]
    assert all(a.startswith("{{-") and a.endswith("-}}") for a in actions), actions
    body = re.sub(r"{{.*?}}", "", text, flags=re.S)
    assert body.strip() == ""


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_render_is_byte_for_byte_deterministic(case: Any) -> None:
    assert render_case(case) == render_case(case)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_helm3_and_helm4_render_the_same_objects(case: Any) -> None:
    """Flux runs real helm (3 or 4) while Argo CD runs helm template: same objects either way.
    (Helm 4 keeps a blank line at the end of each document; Helm 3 drops it.)"""
    four = render_case(case, str(tool("helm")))
    three = render_case(case, helm3())
    assert docs_of(three) == docs_of(four)
    assert [ln for ln in three.splitlines() if ln.strip()] == [
        ln for ln in four.splitlines() if ln.strip()
    ]


def test_security_objects_do_not_depend_on_capabilities() -> None:
    """Rendering for a cluster that announces no Istio/KubeRay API, or an old Kubernetes,
    must not drop the PeerAuthentication (or anything else)."""
    case = next(c for c in CASES if c.name == "ci-port-exceptions")
    baseline = render_case(case)
    announced = helm_template(
        helm(),
        case.values,
        "--api-versions",
        "security.istio.io/v1",
        "--api-versions",
        "ray.io/v1",
        "--kube-version",
        "1.29.0",
    )
    assert announced == baseline
    assert sum(d["kind"] == "PeerAuthentication" for d in docs_of(baseline)) == 2


SYNC_WAVE = "argocd.argoproj.io/sync-wave"
BEFORE_RAYCLUSTER = {
    "Service",
    "PeerAuthentication",
    "Sidecar",
    "AuthorizationPolicy",
    "RequestAuthentication",
}


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_sync_waves_order_policies_cluster_then_ingress(case: Any) -> None:
    docs = docs_of(render_case(case))

    def wave(d: dict[str, Any]) -> int:
        return int((d["metadata"].get("annotations") or {}).get(SYNC_WAVE, "0"))

    # the workload: a RayCluster, or a RayJob (whose cluster the operator creates)
    cluster = [wave(d) for d in docs if d["kind"] in ("RayCluster", "RayJob")]
    assert len(cluster) == 1
    for d in docs:
        if d["kind"] in BEFORE_RAYCLUSTER:
            assert wave(d) < cluster[0], (d["kind"], d["metadata"]["name"])
        if d["kind"] == "Ingress":
            assert wave(d) > cluster[0], d["metadata"]["name"]


# ---- chart packaging and metadata ------------------------------------------------------------


def test_helm_package_produces_a_valid_archive(tmp_path: Path) -> None:
    binary = helm()
    proc = run([binary, "package", str(CHART), "--destination", str(tmp_path)])
    assert proc.returncode == 0, proc.stderr
    meta = yaml.safe_load((CHART / "Chart.yaml").read_text())
    archive = tmp_path / f"meshray-{meta['version']}.tgz"
    assert archive.is_file(), list(tmp_path.iterdir())
    with tarfile.open(archive) as tar:
        names = set(tar.getnames())
    for required in ("Chart.yaml", "values.yaml", "values.schema.json", "templates/NOTES.txt"):
        assert f"meshray/{required}" in names, required
    assert all(n.startswith("meshray/") for n in names)
    assert not any("/.cache/" in n or n.endswith(".pyc") for n in names)
    assert run([binary, "lint", "--strict", str(archive)]).returncode == 0
    shown = yaml.safe_load(run([binary, "show", "chart", str(archive)]).stdout)
    assert shown["version"] == meta["version"]
    packaged = run([binary, "template", "meshray", str(archive), "--namespace", "ray"])
    assert packaged.returncode == 0, packaged.stderr
    assert packaged.stdout == render_case(CASES[0], binary)


def test_chart_metadata_fit_for_a_public_repository() -> None:
    meta = yaml.safe_load((CHART / "Chart.yaml").read_text())
    for key in ("kubeVersion", "home", "icon", "description"):
        assert meta.get(key), key
    assert meta["sources"] and meta["keywords"] and meta["maintainers"]
    assert all(m.get("name") for m in meta["maintainers"])
    annotations = meta.get("annotations", {})

    def listed(key: str) -> list[dict[str, Any]]:
        value = yaml.safe_load(annotations.get(key, "[]"))
        assert isinstance(value, list) and value, key
        return value

    for link in listed("artifacthub.io/links"):
        assert link["name"] and link["url"].startswith("https://"), link
    images = listed("artifacthub.io/images")
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    ray_image = f"{values['ray']['image']['repository']}:{values['ray']['version']}"
    assert ray_image in [i["image"] for i in images]
    assert str(meta["appVersion"]) == values["ray"]["version"]
    # The prerequisite KubeRay operator (it owns the RayCluster CRD) is recommended.
    assert any("kuberay" in r["url"] for r in listed("artifacthub.io/recommendations"))
    assert any(c["kind"] == "RayCluster" for c in listed("artifacthub.io/crds"))


def _ct_env_path() -> str:
    venv_bin = REPO / ".venv" / "bin"
    return os.pathsep.join([str(Path(helm()).parent), str(venv_bin), os.environ["PATH"]])


def test_ct_lint_rejects_a_chart_yaml_without_public_metadata(tmp_path: Path) -> None:
    """ct lint with this repo's ct.yaml: passes on the real chart (see `make lint-ct`), fails
    on a copy whose Chart.yaml lost its icon."""
    ct = tool("ct")
    if shutil.which("yamale", path=str(REPO / ".venv" / "bin")) is None:
        skip_unless_ci("yamale not in .venv")
    work = tmp_path / "repo"
    shutil.copytree(CHART, work / "charts" / "meshray")
    shutil.copy(REPO / "ct.yaml", work / "ct.yaml")
    shutil.copytree(REPO / "tools" / "ct", work / "tools" / "ct")
    chart_yaml = work / "charts" / "meshray" / "Chart.yaml"
    meta = yaml.safe_load(chart_yaml.read_text())
    del meta["icon"]
    chart_yaml.write_text(yaml.safe_dump(meta, sort_keys=False))
    shutil.rmtree(work / "charts" / "meshray" / "ci")  # one lint pass is enough here
    env = dict(os.environ, PATH=_ct_env_path())
    subprocess.run(["git", "init", "-q", "-b", "main"], cwd=work, check=True)
    proc = subprocess.run(
        [str(ct), "lint", "--config", "ct.yaml", "--all"],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode != 0
    assert "icon" in proc.stdout + proc.stderr
