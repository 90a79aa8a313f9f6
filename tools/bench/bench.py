#!/usr/bin/env python3
"""Benchmark: `meshray validate` + `render` + `audit` over every example, against a bare
`helm template` of the same files as the baseline.

Not a test: it prints timings. Run it from the repository root after `make setup`:

    .venv/bin/python tools/bench/bench.py [--repeat N]

Each timing is the wall clock of the real commands (separate processes, as a user or CI runs
them), best of N repeats, so Python start-up and helm start-up are both included.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "meshray"
MESHRAY = Path(sys.executable).parent / "meshray"


def helm() -> str:
    return os.environ.get("MESHRAY_HELM") or str(ROOT / "bin" / "helm")


def run(cmd: list[str], expect: set[int] | None = None) -> str:
    res = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if res.returncode not in (expect or {0}):
        raise SystemExit(f"failed ({res.returncode}): {' '.join(cmd)}\n{res.stderr}")
    return res.stdout


def baseline(examples: list[Path], _: Path) -> None:
    for ex in examples:
        run([helm(), "template", "meshray", str(CHART), "-f", str(ex)])


def meshray(examples: list[Path], work: Path) -> None:
    run([str(MESHRAY), "validate", *map(str, examples)])
    rendered = []
    for ex in examples:
        out = work / f"{ex.stem}.yaml"
        out.write_text(run([str(MESHRAY), "render", "-f", str(ex)]))
        rendered.append(str(out))
    run([str(MESHRAY), "audit", "--min-severity", "error", *rendered])


def in_process(examples: list[Path], work: Path) -> None:
    """The same three steps through the Python API in one process (how the test suite runs
    them): shows the cost of meshray's own work without per-command start-up."""
    from meshray import audit, manifests, schema, validate, valuesfile
    from meshray.render import RenderRequest, render_text

    opts = validate.Options(chart=CHART, schema=schema.load(CHART / schema.YAMALE_FILE),
                            defaults=valuesfile.load_defaults(CHART / schema.VALUES_FILE))
    for ex in examples:
        if any(p.severity == validate.ERROR for p in validate.validate_file(str(ex), opts)):
            raise SystemExit(f"{ex}: validate failed")
        text = render_text(RenderRequest(values_files=[ex], chart=CHART))
        if any(f.severity == audit.ERROR for f in audit.audit(manifests.parse_stream(text, "r"))):
            raise SystemExit(f"{ex}: audit failed")


def measure(fn: Callable[[list[Path], Path], None], examples: list[Path],
            repeat: int) -> list[float]:
    times = []
    for _ in range(repeat):
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            fn(examples, Path(tmp))
            times.append(time.perf_counter() - start)
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="repeats (best is reported)")
    parser.add_argument("examples", nargs="*", type=Path,
                        default=sorted((ROOT / "values-examples").glob("*.yaml")))
    args = parser.parse_args()
    examples: list[Path] = args.examples
    base = measure(baseline, examples, args.repeat)
    ours = measure(meshray, examples, args.repeat)
    api = measure(in_process, examples, args.repeat)
    print(f"examples: {len(examples)} ({', '.join(p.stem for p in examples)})")
    print(f"helm template (baseline):   best {min(base):.2f}s  median "
          f"{statistics.median(base):.2f}s")
    print(f"meshray validate+render+audit: best {min(ours):.2f}s  median "
          f"{statistics.median(ours):.2f}s")
    print(f"same through the API, one process: best {min(api):.2f}s  median "
          f"{statistics.median(api):.2f}s")
    print(f"ratio CLI/baseline (best/best): {min(ours) / min(base):.1f}x  "
          f"(meshray renders each file twice: once in validate, once in render)")
    print(f"ratio API/baseline (best/best): {min(api) / min(base):.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
