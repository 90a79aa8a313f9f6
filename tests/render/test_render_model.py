"""The chart's template layout: the shared render model stays private, and object names come
from the names helper.

The model (templates/_model.tpl) is the port map and the worker groups, computed once per
render and kept in .Values under a private key so every template reuses it. It must never
reach what helm prints: manifests, NOTES, or the values helm shows (`--debug`)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from chart_support import CHART, EXAMPLES, REPO, workload_kind

CI_VALUES = sorted((CHART / "ci").glob("*-values.yaml"))
CASES = [None, *EXAMPLES, *CI_VALUES]
CASE_IDS = ["defaults", *[p.stem for p in EXAMPLES], *[f"ci-{p.stem}" for p in CI_VALUES]]
TEMPLATES = CHART / "templates"


def helm() -> str:
    return os.environ.get("MESHRAY_HELM") or str(REPO / "bin" / "helm")


def helm4() -> str:
    """Helm 4 (bin/helm, from `make setup`): Helm 3's client-side dry run still asks a cluster
    for its version, so the install check below always runs Helm 4."""
    return str(REPO / "bin" / "helm")


def model_key() -> str:
    m = re.search(r'set \.Values "([^"]+)"', (TEMPLATES / "_model.tpl").read_text())
    assert m, "_model.tpl no longer stores the model in .Values"
    return m.group(1)


@pytest.mark.parametrize("values_file", CASES, ids=CASE_IDS)
def test_the_private_model_never_reaches_the_output(values_file: Path | None) -> None:
    """`helm template` prints the manifests; a client-side dry-run install prints what a user
    of `helm install` sees: the manifests, NOTES and, with --debug, the user-supplied and the
    computed values."""
    key = model_key()
    values = ["-f", str(values_file)] if values_file else []
    template = subprocess.run([helm(), "template", "meshray", str(CHART), *values],
                              capture_output=True, text=True, check=False)
    assert template.returncode == 0, template.stderr
    install = subprocess.run([helm4(), "install", "meshray", str(CHART), "--dry-run=client",
                              "--debug", "--namespace", "ray", *values],
                             capture_output=True, text=True, check=False)
    assert install.returncode == 0, install.stderr
    out = install.stdout + install.stderr
    assert "NOTES:" in out and "COMPUTED VALUES:" in out
    assert f"kind: {workload_kind(values_file)}" in out
    for text in (template.stdout + template.stderr, out):
        assert key not in text
        assert "meshraymodel" not in text.lower()  # nor any other spelling of it


def test_the_model_key_cannot_be_set_from_values(tmp_path: Path) -> None:
    """The schema refuses the private key, so a values file cannot inject a port map."""
    values = tmp_path / "inject.yaml"
    values.write_text(f"{model_key()}:\n  ports: []\n")
    proc = subprocess.run([helm(), "template", "meshray", str(CHART), "-f", str(values)],
                          capture_output=True, text=True, check=False)
    assert proc.returncode != 0
    assert model_key() in proc.stderr and "additional properties" in proc.stderr.lower()


# The metadata dict, either written into the include or bound to a variable first (a long
# dict goes on its own line) and that variable then passed to the include.
METADATA_NAME = re.compile(
    r'(?:include "meshray\.metadata" \(|\$(\w+) := )'
    r'dict\s+"ctx"\s+\S+\s+"name"\s+(\(include\s+"[^"]+"|\S+)')


def test_every_object_name_comes_from_the_names_helper() -> None:
    """Each rendered object's metadata.name is a define of _names.tpl (or a name the user
    wrote, for extra PeerAuthentications); no template builds a name inline."""
    defines = set(re.findall(r'define "([^"]+)"', (TEMPLATES / "_names.tpl").read_text()))
    for path in sorted(TEMPLATES.rglob("*.yaml")):
        text = path.read_text()
        matches = METADATA_NAME.findall(text)
        # A bound dict counts only when that variable is what meshray.metadata receives.
        for var, _ in matches:
            if var:
                assert f'include "meshray.metadata" ${var} ' in text, (path, var)
        found = [arg for _, arg in matches]
        # Every object's metadata goes through meshray.metadata, in the shape matched above.
        assert len(found) == text.count('include "meshray.metadata"'), path
        assert len(found) == len(re.findall(r"^kind: ", text, re.MULTILINE)), path
        for arg in found:
            if arg == ".name":  # mtls.extraPolicies[].name, as given
                continue
            helper = re.sub(r'^\(include\s+"', "", arg).rstrip('"')
            where = path.relative_to(CHART)
            assert helper in defines, f"{where}: name {arg} is not from _names.tpl"


def count_model_builds(tmp_path: Path, memoized: bool, *values: str) -> int:
    """Render a copy of the chart whose model builder counts its runs in .Values, and read the
    count from an extra template that renders after the others (Helm renders deeper paths
    first, then file names in reverse order, so a top-level name starting with '0' is last)."""
    chart = tmp_path / ("memo" if memoized else "no-memo") / "meshray"
    shutil.copytree(CHART, chart)
    model = chart / "templates" / "_model.tpl"
    text = model.read_text()
    start, guard = "{{- $m := dict -}}", f'{{{{- if not (hasKey .Values "{model_key()}") -}}}}'
    assert text.count(start) == 1 and text.count(guard) == 1
    text = text.replace(start, start + '\n{{- $_ := set .Values "builds" '
                        '(add1 (get .Values "builds" | default 0)) -}}')
    if not memoized:
        text = text.replace(guard, "{{- if true -}}")
    model.write_text(text)
    (chart / "templates" / "0-count.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: model-builds\n"
        "data:\n  builds: {{ .Values.builds | quote }}\n")
    sets = [arg for v in values for arg in ("--set", v)]
    proc = subprocess.run([helm(), "template", "meshray", str(chart), *sets],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    docs = [d for d in yaml.safe_load_all(proc.stdout) if d]
    return int(next(d for d in docs if d["kind"] == "ConfigMap")["data"]["builds"])


BIG = ("ports.minWorkerPort=11000", "ports.maxWorkerPort=11199",
       *(f"workerGroups.g{i}.replicas=1" for i in range(10)))
GATEWAY = ("gateway.enabled=true", "gateway.routes.dashboard.enabled=true",
           "gateway.routes.dashboard.host=ray.example.com",
           "gateway.acknowledgeUnauthenticated=true", "rayTls.enabled=true",
           "ingress.client.enabled=true", "ingress.client.host=c.example.com")


@pytest.mark.parametrize("values", [(), BIG, GATEWAY], ids=["defaults", "10x200", "gateway"])
def test_the_model_is_built_once_per_render(tmp_path: Path, values: tuple[str, ...]) -> None:
    """Every template that needs the port map reuses one build (the point of the model), and
    the harness does see rebuilds when the memo is switched off."""
    assert count_model_builds(tmp_path, True, *values) == 1
    assert count_model_builds(tmp_path, False, *values) > 3
