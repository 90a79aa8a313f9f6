#!/usr/bin/env python3
"""Curated mutants: plant one realistic bug at a time and see whether the fast suite notices.

Each mutant in mutants.yaml names a file, an exact snippet of it, its replacement and the bug
it plants. The script copies the checkout (working tree, uncommitted changes included, without
.venv, bin, .cache and .git) into a temporary directory and works only there: /work/main's
files are never written. The copy reuses the checkout's .venv and bin (symlinks, read only) and
runs the copy's own `meshray` package (PYTHONPATH first, ahead of the editable install).

For each mutant: apply it alone to the pristine copy, check the snippet occurs exactly once
(else the mutant is stale: an error), run the test files it names with `pytest -x`, then, only
if they pass, the rest of the fast suite (the project's default markers); restore the file.
A mutant some test fails on is killed; one the whole suite passes is a survivor, reported but
not a failure. Exit status: 0 when every mutant ran, 1 when a mutant is stale or the
unmutated copy fails its own suite (the baseline), 2 on bad usage or a malformed mutant list.

Usage: tools/mutants/mutants.py [--only ID ...] [--check] [--list] [-n N] [--no-baseline]
                                [--tolerate-baseline-failures] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
MUTANTS_FILE = Path(__file__).resolve().with_name("mutants.yaml")
# Left out of the scratch copy: the tools (linked back instead), caches and version control.
SKIP_DIRS = {".venv", "bin", ".cache", ".git", "__pycache__", ".pytest_cache", ".ruff_cache",
             ".mypy_cache", ".hypothesis", "dist", ".kube"}
SKIP_SUFFIXES = (".egg-info",)
# Linked into the copy: the checkout's tools, read only (the copy's tests find them there).
LINKED = (".venv", "bin", ".cache")
PYTEST = ("-q", "-x", "-p", "no:cacheprovider")
# pytest exit codes that mean a test failed or could not be collected (the mutant broke it);
# 3 (internal error), 4 (usage) and 5 (nothing collected) are the script's problem instead.
KILLING_CODES = {1, 2}
# a failure in pytest's short summary: `FAILED tests/x.py::test[id] - message`
FAILED_LINE = re.compile(r"^(FAILED|ERROR) (?P<test>.+?)(?: - .*)?$")
# pytest's own -x off again (its last occurrence wins), for the baseline, which lists every
# test that fails without a mutant
NO_EXIT_FIRST = ("--maxfail=0",)


@dataclass(frozen=True)
class Mutant:
    id: str
    file: str
    original: str
    replacement: str
    bug: str
    tests: tuple[str, ...] = ()


@dataclass
class Result:
    mutant: Mutant
    status: str  # killed, survived, stale, timeout or error
    seconds: float = 0.0
    by: str = ""  # the first failing test, or why the mutant could not run
    stages: list[str] = field(default_factory=list)


class MutantListError(Exception):
    """mutants.yaml is malformed: the script cannot run it."""


def load(path: Path) -> list[Mutant]:
    """The mutants of ``path``, checked for shape and unique ids."""
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(raw, list):
        raise MutantListError(f"{path}: must be a list of mutants")
    out: list[Mutant] = []
    seen: set[str] = set()
    required = ("id", "file", "original", "replacement", "bug")
    for i, entry in enumerate(raw):
        if not isinstance(entry, dict):
            raise MutantListError(f"{path}: [{i}] must be a map")
        # every field a non-empty string, but the replacement, which may delete the snippet
        missing = [k for k in required if not isinstance(entry.get(k), str)
                   or (not entry[k] and k != "replacement")]
        unknown = sorted(set(entry) - {*required, "tests"})
        if missing or unknown:
            raise MutantListError(f"{path}: [{i}] ({entry.get('id')}): missing or empty "
                                  f"{missing}, unknown keys {unknown}")
        tests = entry.get("tests") or []
        if not isinstance(tests, list) or not all(isinstance(t, str) for t in tests):
            raise MutantListError(f"{path}: [{i}] ({entry['id']}): tests must be a list of paths")
        if entry["id"] in seen:
            raise MutantListError(f"{path}: [{i}]: id {entry['id']} is used twice")
        if entry["original"] == entry["replacement"]:
            raise MutantListError(f"{path}: [{i}] ({entry['id']}): replacement equals original")
        seen.add(entry["id"])
        out.append(Mutant(entry["id"], entry["file"], entry["original"], entry["replacement"],
                          entry["bug"], tuple(tests)))
    return out


def stale_reason(root: Path, m: Mutant) -> str:
    """Why ``m`` cannot be applied to the tree at ``root`` ('' when it can): its file is gone,
    or its snippet does not occur exactly once."""
    target = root / m.file
    if not target.is_file():
        return f"{m.file} does not exist"
    count = target.read_text(encoding="utf-8").count(m.original)
    if count != 1:
        return f"snippet found {count} times in {m.file} (must be exactly once)"
    missing = [t for t in m.tests if not (root / t.split("::", 1)[0]).exists()]
    if missing:
        return f"test files {missing} do not exist"
    return ""


def _skipped(directory: str, names: list[str]) -> set[str]:
    """shutil.copytree's ignore: the directories the copy leaves out."""
    return {n for n in names if n in SKIP_DIRS or n.endswith(SKIP_SUFFIXES)}


def scratch_copy(root: Path) -> Path:
    """A copy of the working tree at ``root`` in a new temporary directory, laid out as the
    checkout is (``<tmp>/main``, beside a link to ``../shared``, which the tests read)."""
    base = Path(tempfile.mkdtemp(prefix="meshray-mutants-"))
    copy = base / root.name
    shutil.copytree(root, copy, symlinks=True, ignore=_skipped)
    for name in LINKED:
        if (root / name).exists():
            (copy / name).symlink_to(root / name)
    shared = root.parent / "shared"
    if shared.exists():
        (base / "shared").symlink_to(shared)
    return copy


def test_env(copy: Path) -> dict[str, str]:
    """The environment pytest runs in: the checkout's tools, the copy's meshray package."""
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(REPO / "bin"), str(REPO / ".venv" / "bin"),
                                   env.get("PATH", "")])
    env["VIRTUAL_ENV"] = str(REPO / ".venv")
    env["MESHRAY_HELM"] = str(REPO / "bin" / "helm")
    # the copy's package, ahead of the editable install's path entry (a .pth to REPO/tools)
    env["PYTHONPATH"] = os.pathsep.join([str(copy / "tools"), env.get("PYTHONPATH", "")])
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env.pop("MESHRAY_CHART", None)  # the chart is the copy's, found through its package
    return env


def python() -> str:
    venv = REPO / ".venv" / "bin" / "python"
    return str(venv) if venv.exists() else sys.executable


def check_isolation(copy: Path, env: dict[str, str]) -> None:
    """The copy's tests must import the copy's meshray and chart, or every mutant of the CLI
    would survive for the wrong reason."""
    code = "import meshray.paths as p; print(p.__file__); print(p.chart_dir())"
    out = subprocess.run([python(), "-c", code], cwd=copy, env=env, capture_output=True,
                         text=True, check=True).stdout.split()
    for line in out:
        if not Path(line).resolve().is_relative_to(copy.resolve()):
            raise RuntimeError(f"the scratch copy would use {line}, outside {copy}")


@dataclass
class Run:
    code: int
    seconds: float
    output: str
    timed_out: bool = False


def pytest(copy: Path, env: dict[str, str], args: Sequence[str], timeout: float) -> Run:
    """One pytest run in the copy; a hung run is killed with its whole process group."""
    start = time.monotonic()
    proc = subprocess.Popen([python(), "-m", "pytest", *PYTEST, *args], cwd=copy, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        return Run(-1, time.monotonic() - start, out, timed_out=True)
    return Run(proc.returncode, time.monotonic() - start, out)


def parallel(workers: int) -> list[str]:
    """pytest-xdist options for ``workers`` processes (none for one)."""
    return ["-n", str(workers)] if workers > 1 else []


def all_failures(output: str) -> list[str]:
    """Every failing test (or uncollectable file) in pytest's short summary."""
    return list(dict.fromkeys(m["test"] for m in map(FAILED_LINE.match, output.splitlines())
                              if m))


def first_failure(output: str) -> str:
    failures = all_failures(output)
    if failures:
        return failures[0]
    tail = [ln for ln in output.splitlines() if ln.strip()]
    return tail[-1] if tail else ""


def run_mutant(copy: Path, env: dict[str, str], m: Mutant, workers: int, timeout: float,
               skip: Sequence[str] = ()) -> Result:
    """Apply ``m`` alone to the copy, run its tests then the rest, and restore the file;
    ``skip`` holds pytest options that leave out what fails without any mutant."""
    reason = stale_reason(copy, m)
    if reason:
        return Result(m, "stale", by=reason)
    target = copy / m.file
    pristine = target.read_text(encoding="utf-8")
    target.write_text(pristine.replace(m.original, m.replacement, 1), encoding="utf-8")
    result = Result(m, "survived")
    try:
        stages: list[tuple[str, list[str]]] = []
        if m.tests:
            stages.append(("named", [*m.tests, *skip]))
        files = {t.split("::", 1)[0] for t in m.tests}
        stages.append(("rest", [*parallel(workers), *skip,
                                *(f"--ignore={f}" for f in sorted(files))]))
        for name, args in stages:
            run = pytest(copy, env, args, timeout)
            result.seconds += run.seconds
            result.stages.append(f"{name} {run.seconds:.0f}s")
            if run.timed_out:
                result.status, result.by = "timeout", f"{name} tests ran over {timeout:.0f}s"
                break
            if run.code in KILLING_CODES:
                result.status, result.by = "killed", first_failure(run.output)
                break
            if run.code != 0:
                result.status = "error"
                result.by = f"pytest exited {run.code} ({name}): {first_failure(run.output)}"
                break
    finally:
        target.write_text(pristine, encoding="utf-8")
    return result


def report(results: list[Result], out: Any = sys.stdout) -> None:
    width = max((len(r.mutant.id) for r in results), default=10)
    for r in results:
        print(f"{r.status:9} {r.mutant.id:{width}} {r.seconds:6.0f}s  {r.by}", file=out)
    ran = [r for r in results if r.status in {"killed", "survived", "timeout"}]
    killed = [r for r in ran if r.status != "survived"]
    print(f"\nscore: {len(killed)}/{len(ran)} killed", file=out)
    survivors = [r for r in results if r.status == "survived"]
    if survivors:
        print("survivors (no fast test fails on these bugs):", file=out)
        for r in survivors:
            print(f"  {r.mutant.id}: {r.mutant.bug} ({r.mutant.file})", file=out)
    broken = [r for r in results if r.status in {"stale", "error"}]
    if broken:
        print("stale or broken mutants (fix mutants.yaml):", file=out)
        for r in broken:
            print(f"  {r.mutant.id}: {r.by}", file=out)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--file", type=Path, default=MUTANTS_FILE, help="the mutant list (YAML)")
    p.add_argument("--only", nargs="+", metavar="ID", default=[],
                   help="run only these mutants (ids from the list)")
    p.add_argument("--list", action="store_true", help="print the mutants and exit")
    p.add_argument("--check", action="store_true",
                   help="only check that every snippet still matches the checkout exactly once")
    p.add_argument("-n", "--workers", type=int, default=2,
                   help="pytest-xdist workers for the rest of the suite (default: %(default)s)")
    p.add_argument("--no-baseline", action="store_true",
                   help="skip the run of the whole suite on the unmutated copy")
    p.add_argument("--tolerate-baseline-failures", action="store_true",
                   help="when the unmutated copy fails some tests (work in progress), leave "
                   "them out of every mutant's runs instead of stopping")
    p.add_argument("--timeout", type=float, default=1800,
                   help="seconds one pytest run may take (default: %(default)s)")
    p.add_argument("--keep", action="store_true", help="keep the scratch copy")
    p.add_argument("--json", type=Path, help="also write the results as JSON here")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        mutants = load(args.file)
    except (OSError, yaml.YAMLError, MutantListError) as exc:
        print(f"mutants: {exc}", file=sys.stderr)
        return 2
    unknown = sorted(set(args.only) - {m.id for m in mutants})
    if unknown:
        print(f"mutants: unknown ids {unknown}", file=sys.stderr)
        return 2
    chosen = [m for m in mutants if not args.only or m.id in args.only]
    if args.list:
        for m in chosen:
            print(f"{m.id}  {m.file}\n    {m.bug}")
        return 0
    stale = [(m, why) for m in chosen if (why := stale_reason(REPO, m))]
    for m, why in stale:
        print(f"stale: {m.id}: {why}", file=sys.stderr)
    if args.check:
        print(f"{len(chosen) - len(stale)}/{len(chosen)} mutants apply", file=sys.stderr)
        return 1 if stale else 0

    copy = scratch_copy(REPO)
    print(f"scratch copy: {copy}", file=sys.stderr)
    env = test_env(copy)
    started = time.monotonic()
    try:
        check_isolation(copy, env)
        skip: list[str] = []
        if not args.no_baseline:
            base = pytest(copy, env, [*parallel(args.workers), *NO_EXIT_FIRST], args.timeout)
            failing = all_failures(base.output)
            print(f"baseline: the unmutated suite took {base.seconds:.0f}s, "
                  f"{len(failing)} failing", file=sys.stderr)
            if base.code != 0 and not (failing and args.tolerate_baseline_failures):
                print(base.output[-4000:], file=sys.stderr)
                print("mutants: the unmutated copy fails its own suite, so no mutant result "
                      "would mean anything (--tolerate-baseline-failures leaves those tests "
                      "out of every run)", file=sys.stderr)
                return 1
            for test in failing:
                print(f"baseline: left out of every run: {test}", file=sys.stderr)
                skip.append(f"--deselect={test}" if "::" in test else f"--ignore={test}")
        results = []
        for i, m in enumerate(chosen, 1):
            r = run_mutant(copy, env, m, args.workers, args.timeout, skip)
            print(f"[{i}/{len(chosen)}] {r.status} {m.id} ({r.seconds:.0f}s; "
                  f"{', '.join(r.stages)}) {r.by}", file=sys.stderr, flush=True)
            results.append(r)
    finally:
        if not args.keep:
            shutil.rmtree(copy.parent, ignore_errors=True)
    print(f"total: {time.monotonic() - started:.0f}s for {len(chosen)} mutants", file=sys.stderr)
    report(results)
    if args.json:
        args.json.write_text(json.dumps(
            [{"id": r.mutant.id, "file": r.mutant.file, "status": r.status,
              "seconds": round(r.seconds, 1), "by": r.by, "stages": r.stages}
             for r in results], indent=2) + "\n", encoding="utf-8")
    return 1 if any(r.status in {"stale", "error"} for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
