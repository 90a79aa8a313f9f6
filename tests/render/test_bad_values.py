"""The bad-values corpus (tests/fixtures/values-corpus/bad/): realistic mistakes, one file each,
grouped by category. Every file must be refused by `helm template` alone (the values schema or
the chart's single `fail`) AND by `meshray validate`, both naming the same key, never with a
template trace; `meshray validate` also shows the offending value. The good-but-unusual files
(values-corpus/good/) must render, validate and audit clean.

Each bad file says what it expects in its first comment lines:

    # key: ports.gcs          <- the dotted values key both tools must name
    # value: 15001            <- text of the offending value validate must show

helm's schema errors name the key as a JSON pointer (``at '/ports/gcs'``) and the rule, not
the value (the schema check runs before any template, so the chart cannot add it): for those the
value is required from validate only. The chart's `fail` messages must carry it too.

The oracle here reads helm's raw stderr and the CLI's output; it does not call the chart's
helpers or validate's internals.
"""

from __future__ import annotations

import os
import re
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from chart_support import CHART, REPO

CORPUS = REPO / "tests" / "fixtures" / "values-corpus"
BAD = sorted((CORPUS / "bad").rglob("*.yaml"))
GOOD = sorted((CORPUS / "good").rglob("*.yaml"))
# Mistakes YAML parses without a word and helm therefore cannot see (a key written twice, two
# documents in one file): `meshray validate` alone names them, as the README's troubleshooting
# table says.
CLI_ONLY = sorted((CORPUS / "cli-only").rglob("*.yaml"))
MESHRAY = Path(os.environ.get("VIRTUAL_ENV", REPO / ".venv")) / "bin" / "meshray"
# What a Go template trace looks like: a user must never see one.
TRACE = re.compile(r"error calling |executing \"|<\.Values|nil pointer|wrong type for value|"
                   r"can't evaluate field|template: meshray/templates/[^ ]*: ")
SCHEMA_ERROR = "values don't meet the specifications of the schema"
HEADER = re.compile(r"^#\s*(key|value|release):\s*(.*?)\s*$")


def helm() -> str:
    return os.environ.get("MESHRAY_HELM") or str(REPO / "bin" / "helm")


@dataclass(frozen=True)
class Case:
    path: Path
    key: str
    value: str
    release: str

    @property
    def id(self) -> str:
        return str(self.path.relative_to(CORPUS / "bad").with_suffix(""))


def read_case(path: Path) -> Case:
    fields: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        m = HEADER.match(line)
        if not m:
            break
        fields[m.group(1)] = m.group(2)
    assert "key" in fields and "value" in fields, f"{path}: needs '# key:' and '# value:' lines"
    return Case(path, fields["key"], fields["value"], fields.get("release", "meshray"))


CASES = [read_case(p) for p in BAD]
CLI_ONLY_CASES = [read_case(p) for p in CLI_ONLY]


def pointer_keys(stderr: str) -> set[str]:
    """The keys helm's schema report names (``- at '/a/b/0': ...`` -> ``a.b[0]`` and ``a.b.0``)."""
    out = set()
    for ptr, rest in re.findall(r"at '(/?[^']*)': (.*)", stderr):
        parts = [p.replace("~1", "/").replace("~0", "~") for p in ptr.strip("/").split("/") if p]
        # an unknown key is named beside its parent's pointer
        parts += re.findall(r"(?:additional|missing) propert(?:y|ies) '([^']+)'", rest)[:1]
        dotted = ".".join(parts)
        out |= {dotted, re.sub(r"\.(\d+)(?=\.|$)", r"[\1]", dotted)}
    return out


@pytest.fixture(scope="module")
def helm_runs() -> dict[Path, subprocess.CompletedProcess[str]]:
    """`helm template` of every bad file, run side by side."""

    def run(case: Case) -> subprocess.CompletedProcess[str]:
        return subprocess.run([helm(), "template", case.release, str(CHART), "-f",
                               str(case.path)], capture_output=True, text=True, timeout=120,
                              check=False)

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        return dict(zip((c.path for c in CASES), pool.map(run, CASES), strict=True))


@pytest.fixture(scope="module")
def validate_lines() -> dict[str, list[str]]:
    """`meshray validate` over the whole corpus in one run: file -> its output lines."""
    out: dict[str, list[str]] = {}
    for release in sorted({c.release for c in CASES}):
        files = [str(c.path) for c in CASES if c.release == release]
        res = subprocess.run([str(MESHRAY), "validate", "--release", release, *files],
                             capture_output=True, text=True, timeout=600, check=False)
        assert res.returncode == 1, res.stdout + res.stderr
        assert "Traceback" not in res.stderr, res.stderr
        for line in res.stdout.splitlines():
            out.setdefault(line.split(": ", 1)[0], []).append(line)
    return out


def test_the_corpus_is_large_and_covers_every_category() -> None:
    assert len(CASES) >= 150, len(CASES)
    categories = {p.relative_to(CORPUS / "bad").parts[0] for p in BAD}
    assert len(categories) >= 10, categories
    assert len(GOOD) >= 10, len(GOOD)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_helm_alone_refuses_and_names_the_key(
        case: Case, helm_runs: dict[Path, subprocess.CompletedProcess[str]]) -> None:
    res = helm_runs[case.path]
    assert res.returncode != 0, f"{case.id}: helm rendered it"
    assert res.stdout == "", "a refused render must not print a partial manifest"
    assert not TRACE.search(res.stderr), res.stderr
    if "failed to parse" in res.stderr:  # not a values map at all: helm names the file
        assert str(case.path) in res.stderr, res.stderr
    elif SCHEMA_ERROR in res.stderr:
        named = pointer_keys(res.stderr)
        # helm's pointer for a map key that fails its pattern is unreliable (it names an
        # unrelated sibling); the message still quotes the offending key itself
        named |= {f"{case.key}.{k}" for k in re.findall(r"invalid propertyName '([^']+)'",
                                                        res.stderr) if k == case.value}
        assert any(k == case.key or k.startswith(case.key + ".") or
                   k.startswith(case.key + "[") for k in named), (case.key, res.stderr)
    else:
        assert "execution error at (meshray/templates/validate.yaml" in res.stderr, res.stderr
        assert case.key in res.stderr and case.value in res.stderr, (case, res.stderr)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_validate_refuses_with_the_same_key_and_the_value(
        case: Case, validate_lines: dict[str, list[str]]) -> None:
    lines = [ln for ln in validate_lines.get(str(case.path), []) if ": warning: " not in ln]
    assert lines, f"{case.id}: meshray validate reported no error"
    hits = [ln for ln in lines if ln.startswith(f"{case.path}: {case.key}")
            or ln.startswith(f"{CHART / 'values.yaml'}: {case.key}")]
    assert hits, (case.key, lines)
    assert any(case.value in ln for ln in hits), (case.value, hits)


@pytest.mark.parametrize("path", GOOD, ids=[p.stem for p in GOOD])
def test_unusual_but_good_values_render_validate_and_audit_clean(path: Path,
                                                                  tmp_path: Path) -> None:
    res = subprocess.run([str(MESHRAY), "validate", "-o", str(tmp_path), str(path)],
                         capture_output=True, text=True, timeout=120, check=False)
    assert res.returncode == 0, res.stdout + res.stderr
    rendered = tmp_path / f"{path.stem}.yaml"
    kinds = {d["kind"] for d in yaml.safe_load_all(rendered.read_text()) if d}
    # the workload the values ask for (a RayCluster, or a RayJob the operator makes one for)
    workload = (yaml.safe_load(path.read_text()).get("workload") or {}).get("kind", "RayCluster")
    assert {workload, "Service"} <= kinds
    audit = subprocess.run([str(MESHRAY), "audit", str(rendered)], capture_output=True,
                           text=True, timeout=120, check=False)
    assert audit.returncode == 0, audit.stdout + audit.stderr


def _helm_template(path: Path, release: str = "meshray") -> subprocess.CompletedProcess[str]:
    return subprocess.run([helm(), "template", release, str(CHART), "-f", str(path)],
                          capture_output=True, text=True, timeout=120, check=False)


@pytest.mark.parametrize("case", CLI_ONLY_CASES, ids=[c.path.stem for c in CLI_ONLY_CASES])
def test_what_helm_cannot_see_validate_names(case: Case) -> None:
    """helm renders these files (the data loss happens in YAML parsing, before the chart runs),
    and `meshray validate` refuses each, naming the key (or the file) and where."""
    assert _helm_template(case.path, case.release).returncode == 0, (
        f"{case.path.stem}: helm now refuses it; move it to bad/")
    res = subprocess.run([str(MESHRAY), "validate", "--release", case.release, str(case.path)],
                         capture_output=True, text=True, timeout=120, check=False)
    assert res.returncode == 1, res.stdout + res.stderr
    hits = [ln for ln in res.stdout.splitlines() if ln.startswith(f"{case.path}: {case.key}: ")]
    assert hits and any(case.value in ln for ln in hits), (case, res.stdout)


def test_helm_and_validate_agree_on_every_case(
        helm_runs: dict[Path, subprocess.CompletedProcess[str]],
        validate_lines: dict[str, list[str]]) -> None:
    """The chart and the CLI take the same decision on every file of the corpus: both refuse
    each bad file, both accept each good one. The only files they disagree on are the cli-only
    ones, which helm cannot see by construction (checked above)."""
    disagree = []
    for case in CASES:
        helm_refuses = helm_runs[case.path].returncode != 0
        cli_refuses = any(": warning: " not in ln for ln in validate_lines.get(str(case.path), []))
        if helm_refuses != cli_refuses:
            disagree.append(f"bad/{case.id}: helm refuses={helm_refuses}, validate={cli_refuses}")
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        good_helm = dict(zip(GOOD, pool.map(_helm_template, GOOD), strict=True))
    good_cli = subprocess.run([str(MESHRAY), "validate", *map(str, GOOD)], capture_output=True,
                              text=True, timeout=600, check=False)
    refused_by_cli = {ln.split(": ", 1)[0] for ln in good_cli.stdout.splitlines()
                      if ": warning: " not in ln and ": " in ln}
    for path in GOOD:
        helm_refuses = good_helm[path].returncode != 0
        cli_refuses = str(path) in refused_by_cli
        if helm_refuses or cli_refuses:
            disagree.append(f"good/{path.stem}: helm refuses={helm_refuses}, "
                            f"validate={cli_refuses}")
    assert not disagree, "\n".join(disagree)
