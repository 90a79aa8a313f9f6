"""Measure the worker-port range Ray needs, with the e2e harness (real Ray, firewalled netns).

For each num-cpus value the chart's default values are installed with `helm install` on a local
control plane with the real KubeRay operator, with a worker range of R ports (the chart declares
exactly those in the headless Service, so the firewall built from the live EndpointSlices admits
them) and ``num-cpus`` on both nodes; each node starts from its Pod, and the sizing workload
runs: SPREAD tasks, tasks pinned to the worker,
K actors pinned to the worker (alive until the end), then a job submission with a runtime_env
whose entrypoint runs a task on the other node. A probe run with a wide range records the most
worker-range ports held at once on each node; a binary search then finds the smallest R with
which the whole run passes (no step failing, nothing listening outside the Services).

Usage: python tools/sizing/measure.py --venv .cache/ray-2.60.0 [--cpus 1 2 4] [--actors 8]
Writes a JSON report (default .cache/e2e/sizing.json) and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "e2e"))
sys.path.insert(0, str(REPO / "tools"))

from raynet.live import Deployment, LiveCluster, LocalCluster  # noqa: E402
from raynet.scenario import RunConfig, RunResult, run, venv_ray_version  # noqa: E402

MIN_PORT = 10002
CLUSTER: LocalCluster | None = None  # started in main()


def cluster_for(version: str, ports: int, cpus: int) -> LiveCluster:
    assert CLUSTER is not None
    dep = Deployment(
        f"sizing-{version.replace('.', '-')}-{cpus}cpu-{ports}p",
        sets=(
            f"ports.minWorkerPort={MIN_PORT}",
            f"ports.maxWorkerPort={MIN_PORT + ports - 1}",
            f"ports.maxWorkerPorts={max(ports, 200)}",
        ),
        string_sets=(
            f"ray.version={version}",
            f"head.rayStartParams.num-cpus={cpus}",
            f"workerDefaults.rayStartParams.num-cpus={cpus}",
        ),
    )
    return CLUSTER.read(dep, f"sizing:{ports}")


def trial(
    venv: Path,
    version: str,
    ports: int,
    cpus: int,
    actors: int,
    tasks: int,
    timeout: float,
    log: list[dict[str, Any]],
) -> RunResult:
    cfg = RunConfig(
        cluster=cluster_for(version, ports, cpus),
        venv=venv,
        label=f"sizing cpus={cpus} actors={actors} ports={ports}",
        profile="sizing",
        actors=actors,
        tasks=tasks,
        job=True,
        step_timeout=timeout,
    )
    result = run(cfg)
    failed = result.first_failure()
    entry = {
        "cpus": cpus,
        "actors": actors,
        "ports": ports,
        "ok": result.ok,
        "failed_step": failed.name if failed else None,
        "seconds": result.seconds,
        "peak": result.worker_ports_peak,
    }
    log.append(entry)
    print(json.dumps(entry), flush=True)
    return result


def measure(
    venv: Path,
    version: str,
    cpus: int,
    actors: int,
    tasks: int,
    probe: int,
    timeout: float,
    log: list[dict[str, Any]],
) -> dict[str, Any]:
    wide = trial(venv, version, probe, cpus, actors, tasks, timeout, log)
    if not wide.ok:
        return {"cpus": cpus, "actors": actors, "error": f"probe with {probe} ports failed"}
    peak = max(wide.worker_ports_peak.values())
    lo, hi = 1, peak  # invariant: hi passes (checked below), lo-1 is impossible
    passing: dict[int, bool] = {}
    r = trial(venv, version, hi, cpus, actors, tasks, timeout, log)
    passing[hi] = r.ok
    while not passing[hi]:  # the peak is a lower bound of what is needed when idle workers churn
        hi += max(2, hi // 4)
        passing[hi] = trial(venv, version, hi, cpus, actors, tasks, timeout, log).ok
    while lo < hi:
        mid = (lo + hi) // 2
        ok = trial(venv, version, mid, cpus, actors, tasks, timeout, log).ok
        passing[mid] = ok
        if ok:
            hi = mid
        else:
            lo = mid + 1
    return {
        "cpus": cpus,
        "actors": actors,
        "probe_ports": probe,
        "peak_held": wide.worker_ports_peak,
        "smallest_passing": hi,
        "trials": {str(k): v for k, v in sorted(passing.items())},
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--venv", type=Path, required=True)
    p.add_argument("--cpus", type=int, nargs="+", default=[1, 2, 4])
    p.add_argument("--actors", type=int, nargs="+", default=[8])
    p.add_argument("--tasks", type=int, default=2000)
    p.add_argument("--probe-ports", type=int, default=100)
    p.add_argument("--step-timeout", type=float, default=60)
    p.add_argument("--out", type=Path, default=REPO / ".cache" / "e2e" / "sizing.json")
    a = p.parse_args()
    version = venv_ray_version(a.venv)
    t0 = time.monotonic()
    log: list[dict[str, Any]] = []
    global CLUSTER
    CLUSTER = LocalCluster(REPO / ".cache" / "e2e" / f"sizing-cluster-{os.getpid()}").start()
    try:
        rows = [
            measure(a.venv, version, cpus, k, a.tasks, a.probe_ports, a.step_timeout, log)
            for cpus in a.cpus
            for k in a.actors
        ]
    finally:
        CLUSTER.stop()
    report = {
        "ray_version": version,
        "tasks": a.tasks,
        "rows": rows,
        "trials": log,
        "seconds": round(time.monotonic() - t0),
    }
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(report, indent=1))
    print(f"\nRay {version}: smallest worker range for {a.tasks} tasks + K actors + a job")
    print("| num-cpus | K actors | peak held (head/worker) | smallest passing range |")
    print("|---|---|---|---|")
    for row in rows:
        peak = row.get("peak_held", {})
        print(
            f"| {row['cpus']} | {row['actors']} | {peak.get('head')}/{peak.get('worker')} | "
            f"{row.get('smallest_passing', row.get('error'))} |"
        )
    print(f"({report['seconds']} s; {a.out})")


if __name__ == "__main__":
    main()
