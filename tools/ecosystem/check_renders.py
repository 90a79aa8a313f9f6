#!/usr/bin/env python3
"""Validate every render of the chart with kubeconform (strict, offline) and istioctl analyze.

Render cases: the chart defaults, every ``values-examples/*.yaml`` and every
``charts/meshray/ci/*-values.yaml``. Each render is validated against every generated schema
set that applies to it (``make lint-schemas`` writes them under ``.cache/schemas``):

* Kubernetes built-ins: every ``k8s-*`` set (oldest and newest supported release);
* KubeRay: every ``kuberay-*`` set, unless ``KUBERAY_MIN_VERSION`` documents that a case uses
  a field only newer KubeRay releases have;
* Istio: renders whose Istio objects are all ``v1beta1`` against every ``istio-*`` set; a render
  with any ``v1`` Istio object only against the sets that serve ``v1`` for it (1.21 does not);
* Kubernetes Gateway API (``gatewayAPI.*``): every ``gateway-api-*`` set, beside each of the
  above (Gateway, HTTPRoute, GRPCRoute, TLSRoute, ReferenceGrant).

Then ``istioctl analyze --use-kube=false --all-namespaces`` on each render: zero errors, zero
warnings except those listed in ``EXPECTED_ISTIO_MESSAGES`` with the reason.

GitOps examples (``values-examples/gitops/*.yaml``) are validated against the Argo CD and Flux
CRD schema sets plus the newest Kubernetes set.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "meshray"
EXAMPLES = REPO / "values-examples"
GITOPS = EXAMPLES / "gitops"
LOCATION = "{{ .Group }}/{{ .ResourceKind }}_{{ .ResourceAPIVersion }}.json"
NAMESPACE = "ray"
RELEASE = "meshray"

# case name -> (minimum KubeRay schema set, why).
KUBERAY_MIN_VERSION: dict[str, tuple[str, str]] = {
    "example-rayjob": (
        "kuberay-v1.7.0",
        "rayJob.submitterConfig is a KubeRay 1.2 field; "
        "ci/rayjob-values.yaml covers the RayJob on v1.1.0",
    ),
}

# KubeRay before 1.6.0 has no spec.upgradeStrategy: its users set kuberay.upgradeStrategy=""
# and their kuberay.version (values.yaml says so), so renders checked against those schema sets
# carry both settings (the oldest set is v1.1.0).
KUBERAY_UPGRADE_STRATEGY_SINCE = "kuberay-v1.6.0"
OLD_KUBERAY_SETS = ("kuberay.upgradeStrategy=", "kuberay.version=1.1.0")

# (case name, istioctl message code) -> why the message is expected. Empty: none is.
EXPECTED_ISTIO_MESSAGES: dict[tuple[str, str], str] = {}

ISTIO_GROUPS = ("security.istio.io", "networking.istio.io", "telemetry.istio.io")


@dataclass(frozen=True)
class Case:
    """One render of the chart: a name and the values file (None: chart defaults)."""

    name: str
    values: Path | None

    def label(self) -> str:
        return self.name if self.values is None else str(self.values.relative_to(REPO))


@dataclass
class Finding:
    case: str
    tool: str
    message: str


@dataclass
class Report:
    findings: list[Finding] = field(default_factory=list)
    checks: list[str] = field(default_factory=list)

    def fail(self, case: str, tool: str, message: str) -> None:
        self.findings.append(Finding(case, tool, message))


def render_cases(repo: Path = REPO) -> list[Case]:
    cases = [Case("defaults", None)]
    for path in sorted((repo / "values-examples").glob("*.yaml")):
        cases.append(Case(f"example-{path.stem}", path))
    for path in sorted((repo / "charts" / "meshray" / "ci").glob("*-values.yaml")):
        cases.append(Case(f"ci-{path.name.removesuffix('-values.yaml')}", path))
    return cases


def helm_binary(explicit: str | None = None) -> str:
    return explicit or os.environ.get("MESHRAY_HELM") or str(REPO / "bin" / "helm")


def render(
    case: Case, helm: str, out_dir: Path, sets: Sequence[str] = (), suffix: str = ""
) -> Path:
    """Render one case with ``helm template`` into ``out_dir/<case><suffix>.yaml``."""
    args = [helm, "template", RELEASE, str(CHART), "--namespace", NAMESPACE]
    if case.values is not None:
        args += ["--values", str(case.values)]
    for s in sets:
        args += ["--set", s]
    proc = subprocess.run(args, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"helm template failed for {case.label()}: {proc.stderr.strip()}")
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{case.name}{suffix}.yaml"
    path.write_text(proc.stdout)
    return path


def documents(path: Path) -> list[dict[str, Any]]:
    with path.open() as fh:
        return [d for d in yaml.safe_load_all(fh) if isinstance(d, dict) and d]


# ---- schema sets -----------------------------------------------------------------------------


def _version_key(name: str) -> tuple[int, ...]:
    digits = name.rsplit("-", 1)[-1].lstrip("v")
    return tuple(int(p) for p in digits.split(".") if p.isdigit())


def schema_sets(schemas: Path, family: str) -> list[Path]:
    """Schema directories of one family (``k8s``, ``kuberay``, ``istio``...), oldest first."""
    found = [p for p in schemas.glob(f"{family}-*") if p.is_dir()]
    return sorted(found, key=lambda p: _version_key(p.name))


def has_schema(schema_set: Path, api_version: str, kind: str) -> bool:
    group, _, version = api_version.rpartition("/")
    path = schema_set / (group or version) / f"{kind.lower()}_{version}.json"
    return path.is_file()


def istio_sets_for(docs: Iterable[dict[str, Any]], sets: Sequence[Path]) -> list[Path]:
    """The Istio schema sets that serve every Istio apiVersion/kind in the render."""
    istio = [
        (d["apiVersion"], d["kind"])
        for d in docs
        if str(d.get("apiVersion", "")).split("/")[0] in ISTIO_GROUPS
    ]
    if not istio:
        return list(sets)
    return [s for s in sets if all(has_schema(s, av, k) for av, k in istio)]


def kuberay_sets_for(case: str, sets: Sequence[Path]) -> list[Path]:
    minimum = KUBERAY_MIN_VERSION.get(case)
    if minimum is None:
        return list(sets)
    return [s for s in sets if _version_key(s.name) >= _version_key(minimum[0])]


# ---- tools -----------------------------------------------------------------------------------


def kubeconform_all(
    binary: Path, files: Sequence[Path], locations: Sequence[Path]
) -> list[dict[str, Any]]:
    """Run kubeconform in strict mode against local schema sets only; return every resource
    it saw with its status (statusValid, statusInvalid, statusError, statusEmpty...)."""
    args = [str(binary), "-strict", "-output", "json", "-verbose"]
    for loc in locations:
        args += ["-schema-location", f"{loc}/{LOCATION}"]
    proc = subprocess.run([*args, *map(str, files)], capture_output=True, text=True, check=False)
    try:
        result: dict[str, Any] = json.loads(proc.stdout)
    except json.JSONDecodeError as exc:
        raise RuntimeError(f"kubeconform output is not JSON: {proc.stdout}{proc.stderr}") from exc
    resources: list[dict[str, Any]] = result.get("resources", [])
    if proc.returncode != 0 and all(r.get("status") == "statusValid" for r in resources):
        raise RuntimeError(f"kubeconform failed: {proc.stderr.strip()}")
    return resources


def kubeconform(
    binary: Path, files: Sequence[Path], locations: Sequence[Path]
) -> list[dict[str, Any]]:
    """The resources kubeconform did not find valid (invalid, error, or no schema)."""
    return [
        r
        for r in kubeconform_all(binary, files, locations)
        if r.get("status") not in ("statusValid", "statusEmpty")
    ]


def istioctl_analyze(binary: Path, path: Path) -> list[dict[str, Any]]:
    """Messages of ``istioctl analyze`` over one file, every namespace, no cluster."""
    proc = subprocess.run(
        [
            str(binary),
            "analyze",
            "--use-kube=false",
            "--all-namespaces",
            "--output",
            "json",
            "--output-threshold",
            "Info",
            "--failure-threshold",
            "Error",
            str(path),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    text = proc.stdout.strip()
    # istioctl prints the JSON list, then a human summary line on the same stream.
    end = text.rfind("]")
    try:
        messages: list[dict[str, Any]] = json.loads(text[: end + 1]) if end >= 0 else []
    except json.JSONDecodeError as exc:
        raise RuntimeError(f"istioctl analyze output not understood: {text}") from exc
    if proc.returncode not in (0, 79):  # 79: analyzers reported at or above the threshold
        raise RuntimeError(f"istioctl analyze failed ({proc.returncode}): {proc.stderr.strip()}")
    return messages


def describe(resource: dict[str, Any]) -> str:
    return f"{resource.get('kind')} {resource.get('name')}: {resource.get('msg')}"


# ---- driver ----------------------------------------------------------------------------------


def check_case(
    case: Case, path: Path, bindir: Path, schemas: Path, report: Report, analyze: bool = True
) -> None:
    docs = documents(path)
    k8s = schema_sets(schemas, "k8s")
    kuberay = kuberay_sets_for(case.name, schema_sets(schemas, "kuberay"))
    istio_all = schema_sets(schemas, "istio")
    istio = istio_sets_for(docs, istio_all)
    gateway_api = schema_sets(schemas, "gateway-api")
    if not k8s or not kuberay or not istio_all or not gateway_api:
        raise RuntimeError(f"schema sets missing under {schemas}: run `make lint-schemas`")
    if not istio:
        report.fail(case.name, "kubeconform", "no Istio schema set serves its Istio objects")
        return
    old_render: Path | None = None
    for k in k8s:
        for r in kuberay:
            target = path
            if _version_key(r.name) < _version_key(KUBERAY_UPGRADE_STRATEGY_SINCE):
                if old_render is None:
                    old_render = render(
                        case,
                        helm_binary(),
                        path.parent,
                        OLD_KUBERAY_SETS,
                        suffix=".kuberay-pre-1.6",
                    )
                target = old_render
            for i in istio:
                combo = f"{k.name}+{r.name}+{i.name}"
                sets = [k, r, i, *gateway_api]
                seen = kubeconform_all(bindir / "kubeconform", [target], sets)
                for res in seen:
                    if res.get("status") not in ("statusValid", "statusEmpty"):
                        report.fail(case.name, f"kubeconform[{combo}]", describe(res))
                valid = sum(res.get("status") == "statusValid" for res in seen)
                if len(seen) != len(docs):  # a document kubeconform never looked at
                    report.fail(
                        case.name,
                        f"kubeconform[{combo}]",
                        f"saw {len(seen)} resources, the render has {len(docs)}",
                    )
                report.checks.append(f"{case.name}: kubeconform {combo} ({valid} valid)")
    if not analyze:
        return
    for msg in istioctl_analyze(bindir / "istioctl", path):
        code = msg.get("code", "")
        level = msg.get("level", "")
        if level in ("Error", "Warning") and (case.name, code) not in EXPECTED_ISTIO_MESSAGES:
            report.fail(
                case.name,
                "istioctl",
                f"{level} {code} {msg.get('origin', '')}: {msg.get('message', '')}",
            )
    report.checks.append(f"{case.name}: istioctl analyze")


def check_gitops(bindir: Path, schemas: Path, report: Report, gitops: Path = GITOPS) -> None:
    files = sorted(gitops.glob("*.yaml"))
    sets = [
        *schema_sets(schemas, "k8s")[-1:],
        *schema_sets(schemas, "argocd"),
        *schema_sets(schemas, "fluxcd-helm"),
        *schema_sets(schemas, "fluxcd-source"),
    ]
    if len(sets) < 4:
        raise RuntimeError(f"GitOps schema sets missing under {schemas}: run `make lint-schemas`")
    if not files:
        report.fail("gitops", "kubeconform", f"no GitOps examples under {gitops}")
        return
    for bad in kubeconform(bindir / "kubeconform", files, sets):
        report.fail("gitops", "kubeconform", f"{bad.get('filename')}: {describe(bad)}")
    report.checks.append(f"gitops: kubeconform {'+'.join(s.name for s in sets)} ({len(files)})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--helm", help="helm binary (default $MESHRAY_HELM, then bin/helm)")
    parser.add_argument("--bin", type=Path, default=REPO / "bin")
    parser.add_argument("--schemas", type=Path, default=REPO / ".cache" / "schemas")
    parser.add_argument("--renders", type=Path, default=REPO / ".cache" / "renders")
    args = parser.parse_args(argv)

    helm = helm_binary(args.helm)
    report = Report()
    for case in render_cases():
        path = render(case, helm, args.renders)
        check_case(case, path, args.bin, args.schemas, report)
    check_gitops(args.bin, args.schemas, report)

    for line in report.checks:
        print(f"ok   {line}")
    for f in report.findings:
        print(f"FAIL {f.case} {f.tool}: {f.message}")
    for (name, code), why in sorted(EXPECTED_ISTIO_MESSAGES.items()):
        print(f"note {name}: istioctl {code} expected: {why}")
    for name, (minimum, why) in sorted(KUBERAY_MIN_VERSION.items()):
        print(f"note {name}: validated only against KubeRay >= {minimum}: {why}")
    print(f"check_renders: {len(report.checks)} passed, {len(report.findings)} failed")
    return 1 if report.findings else 0


if __name__ == "__main__":
    sys.exit(main())
