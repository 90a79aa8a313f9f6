#!/usr/bin/env python3
"""Benchmark: meshray's render speed against KubeRay's own ray-cluster chart, and `meshray
validate` + `render` + `audit` against a bare `helm template` of the same files.

Not a test: it prints timings and ratios, and never fails on them (a busy machine would make
any limit flaky). Run it from the repository root after `make setup` (`make bench`):

    .venv/bin/python tools/bench/bench.py [--repeat N] [--baseline DIR] [examples...]

1. Chart render: `helm template` of KubeRay's ray-cluster chart 1.7.0 with its default values
   against meshray's defaults, 10 worker groups, and 10 worker groups x 200 worker ports. Goals:
   defaults <= 1.5x the baseline with meshray's strict values schema, 10 groups x 200 worker
   ports <= 2x. The baseline chart is not in this repository: --baseline DIR (or
   MESHRAY_BENCH_BASELINE) names it; get it with `helm pull ray-cluster --version 1.7.0 --untar
   --repo https://ray-project.github.io/kuberay-helm/ -d DIR` (then DIR/ray-cluster). Where
   ../shared/baselines/kuberay-ray-cluster-1.7.0 exists (this project's workplace), it is the
   default. The defaults once more with --skip-schema-validation
   (no goal) show the share of helm's values-schema compile, which it redoes on every render.
2. Tooling: validate + render + audit over every example, against a bare `helm template` of
   the same files (helm runs one after another): `meshray validate -o DIR` (one helm run per
   file, up to one per CPU at once; goal <= 1.5x), the same as three commands (validate,
   render, audit), and through the Python API in one process.

Each timing is the wall clock of real processes, so helm's (and Python's) start-up is included,
as a user or Argo CD pays it. Every case runs once per round, rounds interleave the cases (so
a load change on the machine hits them alike), one warm-up round is discarded, and each case
reports the median of --repeat rounds with the min-max spread; ratios are of medians. The CPU
time (user + system, of helm or meshray and of bench itself for the in-process case) is printed
beside: on a busy machine it moves far less than the wall clock, so it tells load from cost.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "meshray"
BASELINE = Path(os.environ.get("MESHRAY_BENCH_BASELINE")
                or ROOT.parent / "shared" / "baselines" / "kuberay-ray-cluster-1.7.0")
GET_BASELINE = ("helm pull ray-cluster --version 1.7.0 --untar "
                "--repo https://ray-project.github.io/kuberay-helm/ -d DIR")
MESHRAY = Path(sys.executable).parent / "meshray"
GROUPS = 10
WORKER_PORTS = 200


def helm() -> str:
    return os.environ.get("MESHRAY_HELM") or str(ROOT / "bin" / "helm")


def run(cmd: Sequence[str], expect: set[int] | None = None) -> str:
    res = subprocess.run(list(cmd), capture_output=True, text=True, check=False)
    if res.returncode not in (expect or {0}):
        raise SystemExit(f"failed ({res.returncode}): {' '.join(cmd)}\n{res.stderr}")
    return res.stdout


def cpu_seconds() -> float:
    """CPU time used so far by this process and its finished children (user + system)."""
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


@dataclass
class Case:
    label: str
    fn: Callable[[Path], None]
    times: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)

    def measure(self, work: Path) -> tuple[float, float]:
        cpu, start = cpu_seconds(), time.perf_counter()
        self.fn(work)
        return time.perf_counter() - start, cpu_seconds() - cpu

    @property
    def median(self) -> float:
        return statistics.median(self.times)

    def line(self, width: int) -> str:
        return (f"  {self.label:<{width}}  median {self.median * 1000:7.1f} ms"
                f"  (min-max {min(self.times) * 1000:.1f}-{max(self.times) * 1000:.1f})"
                f"  cpu {statistics.median(self.cpu) * 1000:7.1f} ms")


def rounds(cases: list[Case], repeat: int) -> None:
    """Run every case once per round, interleaved; the first round only warms caches."""
    for i in range(repeat + 1):
        for case in cases:
            with tempfile.TemporaryDirectory() as tmp:
                elapsed, cpu = case.measure(Path(tmp))
            if i:
                case.times.append(elapsed)
                case.cpu.append(cpu)


def ratio_line(case: Case, base: Case, goal: float | None, width: int) -> str:
    r = case.median / base.median
    spread = f"min/min {min(case.times) / min(base.times):.2f}x"
    cpu = f"cpu {statistics.median(case.cpu) / statistics.median(base.cpu):.2f}x"
    verdict = "" if goal is None else (
        f"  goal <= {goal:g}x: {'met' if r <= goal else 'NOT met'}")
    return f"  {case.label:<{width}}  {r:5.2f}x  ({spread}, {cpu}){verdict}"


def report(title: str, cases: list[Case], repeat: int, base_name: str,
           goals: dict[str, float]) -> None:
    """Time the cases, then print each one and its ratio to the first (the baseline)."""
    rounds(cases, repeat)
    width = max(len(c.label) for c in cases)
    print(title)
    for case in cases:
        print(case.line(width))
    print(f"   ratio to {base_name} (median/median):")
    for case in cases[1:]:
        print(ratio_line(case, cases[0], goals.get(case.label), width))


# ------------------------------------------------------------------- 1. chart render speed


def groups_values(groups: int, worker_ports: int | None) -> dict[str, object]:
    """Values with `groups` worker groups (every key from workerDefaults) and, if given, a
    worker range of exactly `worker_ports` ports (at the default ceiling ports.maxWorkerPorts)."""
    values: dict[str, object] = {"workerGroups": {f"group-{i:02d}": {"replicas": 1}
                                                  for i in range(groups)}}
    if worker_ports:
        values["ports"] = {"minWorkerPort": 10002, "maxWorkerPort": 10002 + worker_ports - 1,
                           "maxWorkerPorts": max(200, worker_ports)}
    return values


def template(chart: Path, *values: Path, flags: Sequence[str] = ()) -> Callable[[Path], None]:
    cmd = [helm(), "template", "bench", str(chart), *flags]
    for v in values:
        cmd += ["--values", str(v)]

    def fn(_: Path) -> None:
        run(cmd)

    return fn


def chart_render(repeat: int, baseline: Path, work: Path) -> None:
    ten = work / "groups.yaml"
    ten.write_text(yaml.safe_dump(groups_values(GROUPS, None)))
    big = work / "groups-ports.yaml"
    big.write_text(yaml.safe_dump(groups_values(GROUPS, WORKER_PORTS)))
    base = Case(f"baseline: {baseline.name}, its defaults", template(baseline))
    cases = [
        base,
        Case("meshray defaults", template(CHART)),
        Case(f"meshray {GROUPS} worker groups", template(CHART, ten)),
        Case(f"meshray {GROUPS} worker groups x {WORKER_PORTS} worker ports",
             template(CHART, big)),
        # no goal: shows what helm's compile of values.schema.json costs of the defaults' time
        Case("meshray defaults, --skip-schema-validation",
             template(CHART, flags=["--skip-schema-validation"])),
    ]
    goals = {cases[1].label: 1.5, cases[3].label: 2.0}
    for case in cases:  # a broken render must fail loudly, not be timed
        case.fn(work)
    report(f"1. helm template ({Path(helm()).name} "
           f"{run([helm(), 'version', '--short']).strip()}), {repeat} rounds",
           cases, repeat, "the baseline", goals)


# --------------------------------------------- 2. validate + render + audit vs bare helm


def bare_helm(examples: list[Path]) -> Callable[[Path], None]:
    def fn(_: Path) -> None:
        for ex in examples:
            run([helm(), "template", "meshray", str(CHART), "-f", str(ex)])

    return fn


def meshray_cli(examples: list[Path]) -> Callable[[Path], None]:
    """What a user or CI runs: `meshray validate -o DIR` checks each file (schema, chart
    checks, audit) with one helm run per file and keeps that render in DIR."""

    def fn(work: Path) -> None:
        run([str(MESHRAY), "validate", "--output-dir", str(work), *map(str, examples)])
        missing = [ex.stem for ex in examples if not (work / f"{ex.stem}.yaml").is_file()]
        if missing:
            raise SystemExit(f"validate -o wrote no render for {missing}")

    return fn


def meshray_cli_steps(examples: list[Path]) -> Callable[[Path], None]:
    """The same as three commands (validate, render each file, audit the renders): helm runs
    twice per file, once in validate and once in render."""

    def fn(work: Path) -> None:
        run([str(MESHRAY), "validate", *map(str, examples)])
        rendered = []
        for ex in examples:
            out = work / f"{ex.stem}.yaml"
            out.write_text(run([str(MESHRAY), "render", "-f", str(ex)]))
            rendered.append(str(out))
        run([str(MESHRAY), "audit", "--min-severity", "error", *rendered])

    return fn


def meshray_api(examples: list[Path]) -> Callable[[Path], None]:
    """The same through the Python API in one process (how the test suite runs it): shows the
    cost of meshray's own work without per-command start-up. check_files validates each
    file, renders them side by side (one helm per CPU) and audits each render once."""

    def fn(_: Path) -> None:
        from meshray import schema, validate, valuesfile

        opts = validate.Options(chart=CHART, schema=schema.load(CHART / schema.YAMALE_FILE),
                                defaults=valuesfile.load_defaults(CHART / schema.VALUES_FILE))
        for ex, checked in zip(examples, validate.check_files(list(map(str, examples)), opts),
                               strict=True):
            if any(p.severity == validate.ERROR for p in checked.problems):
                raise SystemExit(f"{ex}: validate failed")
            if not checked.rendered:
                raise SystemExit(f"{ex}: no render kept")

    return fn


def tooling(repeat: int, examples: list[Path]) -> None:
    base = Case("helm template (bare)", bare_helm(examples))
    cli = Case("meshray validate -o (validate+render+audit)", meshray_cli(examples))
    steps = Case("meshray validate; render; audit (3 commands)", meshray_cli_steps(examples))
    api = Case("validate+render+audit through the API", meshray_api(examples))
    cases = [base, cli, steps, api]
    report(f"2. {len(examples)} examples ({', '.join(p.stem for p in examples)}), "
           f"{repeat} rounds", cases, repeat, "bare helm template", {cli.label: 1.5})


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7,
                        help="measured rounds per case (median and min-max reported)")
    parser.add_argument("--baseline", type=Path, default=BASELINE,
                        help="the chart to compare renders with (rendered with its defaults)")
    parser.add_argument("--only", choices=("render", "tooling"),
                        help="run one part only")
    parser.add_argument("examples", nargs="*", type=Path,
                        default=sorted((ROOT / "values-examples").glob("*.yaml")))
    args = parser.parse_args()
    if args.only != "tooling":
        if not (args.baseline / "Chart.yaml").is_file():
            raise SystemExit(f"no baseline chart at {args.baseline}: get KubeRay's ray-cluster "
                             f"chart 1.7.0 with `{GET_BASELINE}` and pass --baseline "
                             "DIR/ray-cluster (or set MESHRAY_BENCH_BASELINE); --only tooling "
                             "needs none")
        with tempfile.TemporaryDirectory() as tmp:
            chart_render(args.repeat, args.baseline, Path(tmp))
    if args.only != "render":
        tooling(args.repeat, args.examples)
    return 0


if __name__ == "__main__":
    sys.exit(main())
