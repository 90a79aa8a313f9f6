#!/usr/bin/env python3
"""Compare what the chart renders at a git revision with what the working tree's chart renders.

A restructuring of the templates (wrapping long lines, moving helpers between files, deriving
a list from the model instead of writing it out) must not change behaviour. This script
proves it: it renders the same inputs with both charts and reports every byte that differs.

Usage (from anywhere inside the checkout):

    tools/dev/compare_renders.py                 # the working tree's chart against HEAD's
    tools/dev/compare_renders.py origin/main     # ...against another revision
    tools/dev/compare_renders.py HEAD~3 --lines 80 --jobs 4
    tools/dev/compare_renders.py --only 'bad/ports/*' --only default

What it does:

1. checks REVISION (default HEAD) out into a temporary detached ``git worktree`` (removed
   again at the end, also on errors and Ctrl-C);
2. collects the inputs from the working tree: the chart defaults (no values file), every
   ``values-examples/*.yaml``, the meshray values embedded in ``values-examples/gitops/``
   (the Argo CD Application's ``spec.source.helm.valuesObject`` and the Flux HelmRelease's
   ``spec.values`` of the releases that install charts/meshray; the other GitOps objects are
   not values and are skipped), every ``charts/meshray/ci/*.yaml``, every
   ``tests/fixtures/values-corpus/good/*.yaml`` and every
   ``tests/fixtures/values-corpus/bad/**/*.yaml``;
3. runs ``helm template`` for each input with the revision's chart and with the working tree's
   chart (same release name and namespace, same values file), with the helm binary from
   ``$MESHRAY_HELM``, else ``bin/helm`` of the checkout; for every input both charts render,
   also ``helm install --dry-run=client --output json`` for the NOTES text (which ``helm
   template`` leaves out; Helm 3 needs a cluster for it, and the script then says the NOTES
   were not compared);
4. compares exit status, stdout (the manifests) and stderr (for the bad corpus: the refusal
   messages, which are behaviour too) and the NOTES byte for byte, prints a unified diff of
   each difference (its first ``--lines`` lines) and exits 1 if anything differs, 0 if
   everything is identical, 2 if it could not run (unknown revision, no helm).

``--same PATH`` (repeatable) copies the working tree's PATH into the revision's checkout
before rendering: a change to that file made by someone else in the same working tree is then
not reported, e.g. ``--same charts/meshray/templates/validate.yaml``.

Helm's schema validator names a random location for a ``propertyNames`` error (an invalid
label key, group name); the script masks that one location (``- at '<masked>': invalid
propertyName ...``) and compares the rest of the message.

Both charts get the same inputs, taken from the working tree, so a difference is always the
chart's. ``--only GLOB`` (repeatable) restricts the inputs to those whose label matches
(labels are ``default``, ``values-examples/NAME``, ``gitops/FILE#KIND/NAME``, ``ci/NAME``,
``good/NAME`` and ``bad/CATEGORY/NAME``).
"""

from __future__ import annotations

import argparse
import difflib
import fnmatch
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

# The checkout this script lives in: tools/dev/compare_renders.py -> the repository root.
REPO = Path(__file__).resolve().parents[2]
CHART_IN_REPO = Path("charts") / "meshray"
CORPUS = REPO / "tests" / "fixtures" / "values-corpus"
RELEASE = "meshray"
NAMESPACE = "ray"
# Helm's JSON-schema validator names a random instance location for a `propertyNames` error
# (the same chart and values file give '/gateway', then '/rayTls', ...: seen with Helm 3.22
# and 4.3), so that location is masked before comparing; the key and pattern stay compared.
UNSTABLE = re.compile(r"^(\s*- at )'[^']*'(: invalid propertyName )", re.MULTILINE)


@dataclass(frozen=True)
class Input:
    """One render input: a label for the report and the values file (None: chart defaults)."""

    label: str
    values: Path | None


@dataclass(frozen=True)
class Outcome:
    """What one `helm template` run produced."""

    returncode: int
    stdout: str
    stderr: str


@dataclass(frozen=True)
class Difference:
    """An input whose renders differ, with the diff lines to show."""

    label: str
    diff: list[str]


class CompareError(Exception):
    """The comparison could not run (bad revision, no helm, git failure)."""


def helm_binary() -> str:
    """The helm to run: $MESHRAY_HELM, else the checkout's bin/helm (what `make setup` builds)."""
    env = os.environ.get("MESHRAY_HELM")
    if env:
        return env
    local = REPO / "bin" / "helm"
    if local.exists():
        return str(local)
    raise CompareError("no helm: set MESHRAY_HELM or run `make setup` (it builds bin/helm)")


def gitops_values(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """The meshray values embedded in a GitOps file, as (label suffix, values): the Argo CD
    Applications and Flux HelmReleases that install charts/meshray; every other object in the
    file (the KubeRay operator's release, repositories, ConfigMaps) is not this chart's values."""
    for doc in yaml.safe_load_all(path.read_text()):
        if not isinstance(doc, dict):
            continue
        kind = doc.get("kind")
        name = (doc.get("metadata") or {}).get("name", "")
        spec = doc.get("spec") or {}
        if kind == "Application":
            source = spec.get("source") or {}
            if str(source.get("path", "")).strip("./") == str(CHART_IN_REPO):
                yield f"{kind}/{name}", (source.get("helm") or {}).get("valuesObject") or {}
        elif kind == "HelmRelease":
            chart = ((spec.get("chart") or {}).get("spec") or {}).get("chart", "")
            if str(chart).strip("./") == str(CHART_IN_REPO):
                yield f"{kind}/{name}", spec.get("values") or {}


def collect_inputs(scratch: Path) -> list[Input]:
    """Every input to render, from the working tree; embedded GitOps values are written as
    files under scratch."""
    inputs = [Input("default", None)]
    examples = REPO / "values-examples"
    inputs += [Input(f"values-examples/{p.name}", p) for p in sorted(examples.glob("*.yaml"))]
    for path in sorted((examples / "gitops").glob("*.yaml")):
        for suffix, values in gitops_values(path):
            label = f"gitops/{path.name}#{suffix}"
            out = scratch / f"gitops-{len(inputs)}.yaml"
            out.write_text(yaml.safe_dump(values))
            inputs.append(Input(label, out))
    ci = REPO / CHART_IN_REPO / "ci"
    inputs += [Input(f"ci/{p.name}", p) for p in sorted(ci.glob("*.yaml"))]
    inputs += [Input(f"good/{p.name}", p) for p in sorted((CORPUS / "good").glob("*.yaml"))]
    bad = CORPUS / "bad"
    inputs += [
        Input(f"bad/{p.relative_to(bad).as_posix()}", p) for p in sorted(bad.rglob("*.yaml"))
    ]
    return inputs


def render(helm: str, chart: Path, values: Path | None) -> Outcome:
    """`helm template` of one chart with one values file (or none)."""
    cmd = [helm, "template", RELEASE, str(chart), "--namespace", NAMESPACE]
    if values is not None:
        cmd += ["-f", str(values)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    return Outcome(proc.returncode, proc.stdout, UNSTABLE.sub(r"\1'<masked>'\2", proc.stderr))


def notes(helm: str, chart: Path, values: Path | None) -> Outcome:
    """The NOTES.txt text of one chart with one values file, from a client-side dry-run install
    (`helm template` does not render NOTES); stdout is the notes, or the error on stderr."""
    cmd = [helm, "install", RELEASE, str(chart), "--namespace", NAMESPACE]
    cmd += ["--dry-run=client", "--output", "json"]
    if values is not None:
        cmd += ["-f", str(values)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        return Outcome(proc.returncode, "", proc.stderr)
    release: dict[str, Any] = json.loads(proc.stdout)
    return Outcome(0, str(release["info"].get("notes", "")), "")


def diff_outcomes(
    label: str, base: Outcome, work: Outcome, base_name: str, what: str = "template"
) -> list[str]:
    """Unified diff lines between two outcomes (exit status, stdout, stderr); empty if equal."""
    lines: list[str] = []
    if base.returncode != work.returncode:
        lines.append(
            f"helm {what} exit status: {base_name} {base.returncode}, "
            f"working tree {work.returncode}"
        )
    for stream in ("stdout", "stderr"):
        old: str = getattr(base, stream)
        new: str = getattr(work, stream)
        if old != new:
            lines += difflib.unified_diff(
                old.splitlines(keepends=True),
                new.splitlines(keepends=True),
                fromfile=f"{base_name}:{label} (helm {what} {stream})",
                tofile=f"working tree:{label} (helm {what} {stream})",
            )
    return [line.rstrip("\n") for line in lines]


@dataclass(frozen=True)
class Report:
    """The differences found, and the inputs whose NOTES could not be rendered on either side
    (a helm whose dry-run install needs a cluster, as Helm 3 does): those were not compared."""

    differences: list[Difference]
    notes_unavailable: list[str]


def compare(
    helm: str,
    base_chart: Path,
    work_chart: Path,
    inputs: Sequence[Input],
    base_name: str = "base",
    jobs: int = 2,
) -> Report:
    """Render every input with both charts (manifests or refusal, then NOTES for the inputs
    both charts render) and report the inputs whose outcomes differ."""

    def one(item: Input) -> tuple[Difference | None, bool]:
        base = render(helm, base_chart, item.values)
        work = render(helm, work_chart, item.values)
        diff = diff_outcomes(item.label, base, work, base_name)
        unavailable = False
        if base.returncode == 0 and work.returncode == 0:
            base_notes = notes(helm, base_chart, item.values)
            work_notes = notes(helm, work_chart, item.values)
            diff += diff_outcomes(item.label, base_notes, work_notes, base_name, "NOTES")
            unavailable = base_notes.returncode != 0 and work_notes.returncode != 0
        return (Difference(item.label, diff) if diff else None), unavailable

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        results = list(pool.map(one, inputs))
    return Report(
        [d for d, _ in results if d is not None],
        [item.label for item, (_, off) in zip(inputs, results, strict=True) if off],
    )


def git(*args: str) -> str:
    """Run git in the checkout; raise CompareError with git's message if it fails."""
    proc = subprocess.run(
        ["git", "-C", str(REPO), *args], capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        raise CompareError(f"git {' '.join(args)}: {proc.stderr.strip()}")
    return proc.stdout.strip()


@contextmanager
def worktree(revision: str, scratch: Path) -> Iterator[Path]:
    """A detached worktree of revision under scratch, removed (with its git metadata) after."""
    commit = git("rev-parse", "--verify", "--quiet", f"{revision}^{{commit}}")
    path = scratch / "base"
    git("worktree", "add", "--detach", "--quiet", str(path), commit)
    try:
        yield path
    finally:
        # --force: the render may leave nothing behind, but a worktree is removed even then.
        subprocess.run(
            ["git", "-C", str(REPO), "worktree", "remove", "--force", str(path)],
            capture_output=True,
            check=False,
        )


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Render the chart at REVISION and in the working tree and diff them.",
    )
    parser.add_argument("revision", nargs="?", default="HEAD", help="git revision (HEAD)")
    parser.add_argument(
        "--lines", type=int, default=40, help="diff lines shown per differing input (40)"
    )
    parser.add_argument(
        "--jobs", type=int, default=os.cpu_count() or 2, help="parallel helm runs (CPU count)"
    )
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="GLOB",
        help="only inputs whose label matches (repeatable), e.g. 'bad/ports/*'",
    )
    parser.add_argument(
        "--same",
        action="append",
        default=[],
        metavar="PATH",
        help="a file (relative to the checkout) taken from the working tree for both charts",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    scratch = Path(tempfile.mkdtemp(prefix="meshray-compare-"))
    try:
        helm = helm_binary()
        inputs = collect_inputs(scratch)
        if args.only:
            inputs = [i for i in inputs if any(fnmatch.fnmatch(i.label, g) for g in args.only)]
        if not inputs:
            raise CompareError(f"no input matches {args.only}")
        with worktree(args.revision, scratch) as base:
            for same in args.same:
                # The working tree's copy on both sides: a change that is not under test.
                shutil.copyfile(REPO / same, base / same)
            report = compare(
                helm,
                base / CHART_IN_REPO,
                REPO / CHART_IN_REPO,
                inputs,
                base_name=args.revision,
                jobs=args.jobs,
            )
    except CompareError as err:
        print(f"compare_renders: {err}", file=sys.stderr)
        return 2
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    diffs = report.differences
    for d in diffs:
        shown = d.diff[: args.lines]
        print(f"=== {d.label}: differs")
        print("\n".join(shown))
        if len(d.diff) > len(shown):
            print(f"... {len(d.diff) - len(shown)} more diff lines")
    if report.notes_unavailable:
        print(
            f"compare_renders: NOTES not compared for {len(report.notes_unavailable)} inputs "
            "(the dry-run install failed with both charts; Helm 3 needs a cluster for it)",
            file=sys.stderr,
        )
    print(
        f"compare_renders: {len(inputs)} inputs rendered with {args.revision} and the working "
        f"tree: {len(diffs)} differ" + ("" if diffs else ", all byte-identical"),
        file=sys.stderr,
    )
    return 1 if diffs else 0


if __name__ == "__main__":
    sys.exit(main())
