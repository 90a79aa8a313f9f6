"""`make bench-mesh`: what a Ray pod's sidecar costs in Istio config, measured with the real
istiod (issue 10). Not a test: it prints a table and ratios.

One local control plane (tools/cluster/controlplane.py) with the real KubeRay operator v1.6.2
and the real istiod (pilot-discovery built from the pinned Istio module). For each worker-port
count x worker replicas x rayTls, the chart is `helm install`ed in its own namespace
(`exportTo: "."`, the default), the kubelet stand-in gives every Pod an IP, and
`bin/meshray-xds` asks istiod for exactly the LDS, CDS, RDS and EDS it sends one worker Pod's
sidecar (as istio-agent identifies itself). Sizes are the bytes of that config as protojson
(what meshray-xds prints, compact), a stand-in for the wire size, with the count of listeners
and clusters. Each namespace is uninstalled after its measurement.

    python tools/bench/bench_mesh.py [--ports 11,50,200] [--replicas 1,10] [--json out.json]
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
sys.path.insert(0, str(REPO / "tools" / "cluster"))
sys.path.insert(0, str(REPO / "tests" / "cluster"))
sys.path.insert(0, str(REPO / "tests" / "mesh"))

from controlplane import with_operator  # noqa: E402
from kube import HELMS, Helm, ray_pods, running, wait_for  # noqa: E402
from kubelet import Kubelet  # noqa: E402
from kubernetes import client  # noqa: E402
from xds_support import Mesh  # noqa: E402

OPERATOR = "v1.6.2"
KINDS = ("listeners", "clusters", "routes", "endpoints")


def sizes(dump: dict[str, Any]) -> dict[str, int]:
    out = {k: len(json.dumps(dump.get(k) or [], separators=(",", ":"))) for k in KINDS}
    out["total"] = sum(out[k] for k in KINDS)
    out["n_listeners"] = len(dump.get("listeners") or [])
    out["n_clusters"] = len(dump.get("clusters") or [])
    return out


def measure(mesh: Mesh, helm: Helm, ports: int, replicas: int, tls: bool) -> dict[str, Any]:
    ns = f"bench-w{ports}-r{replicas}-{'tls' if tls else 'plain'}"
    args = [
        "--set", f"ports.minWorkerPort={10002}",
        "--set", f"ports.maxWorkerPort={10002 + ports - 1}",
        "--set", f"workerDefaults.replicas={replicas}",
        "--set", f"workerDefaults.minReplicas={replicas}",
        "--set", f"workerDefaults.maxReplicas={replicas}",
        "--set", f"rayTls.enabled={'true' if tls else 'false'}",
    ]
    helm.run("install", "b", str(REPO / "charts" / "meshray"), "-n", ns, "--create-namespace",
             *args)
    core = client.CoreV1Api(mesh.api)
    pods = wait_for(
        f"{replicas + 1} running pods in {ns}",
        lambda: p if len(p := ray_pods(core, ns)) == replicas + 1 and running(p) else None,
        timeout=180,
    )
    worker = next(p for p in pods if p.metadata.labels["ray.io/node-type"] == "worker")
    # istiod learns Pods and EndpointSlices from its informers: ask until two answers agree.
    last: dict[str, int] = {}
    deadline = time.monotonic() + 60
    while True:
        got = sizes(mesh.sidecar_config(worker))
        if got == last or time.monotonic() > deadline:
            break
        last = got
        time.sleep(2)
    helm.run("uninstall", "b", "-n", ns, "--wait", "--timeout", "120s", check=False)
    return {"worker_ports": ports, "replicas": replicas, "rayTls": tls, **got}


def table(rows: list[dict[str, Any]]) -> str:
    out = [
        "| worker ports | worker replicas | rayTls | listeners | clusters | LDS KB | CDS KB "
        "| RDS KB | EDS KB | total KB |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        kb = [f"{r[k] / 1024:.0f}" for k in (*KINDS, "total")]
        out.append(
            f"| {r['worker_ports']} | {r['replicas']} | {'on' if r['rayTls'] else 'off'} | "
            f"{r['n_listeners']} | {r['n_clusters']} | " + " | ".join(kb) + " |"
        )
    return "\n".join(out)


def _slope(a: dict[str, Any], b: dict[str, Any], value: str, along: str) -> float:
    """How much `value` grows per unit of `along` between two measured rows."""
    return float(b[value] - a[value]) / (b[along] - a[along])


def ratios(rows: list[dict[str, Any]]) -> list[str]:
    """Bytes per declared worker port (at the fewest replicas) and per added pod (at the
    most ports), per rayTls setting, from the measured rows."""
    out = []
    for tls in (False, True):
        rs = [r for r in rows if r["rayTls"] == tls]
        if not rs:
            continue
        lo_r = min(r["replicas"] for r in rs)
        by_ports = sorted((r for r in rs if r["replicas"] == lo_r),
                          key=lambda r: r["worker_ports"])
        if len(by_ports) >= 2:
            a, b = by_ports[0], by_ports[-1]
            per_port = _slope(a, b, "total", "worker_ports")
            out.append(f"rayTls {'on' if tls else 'off'}: {per_port / 1024:.1f} KB per worker port "
                       f"({a['worker_ports']}->{b['worker_ports']} ports, {lo_r} replicas)")
        hi_p = max(r["worker_ports"] for r in rs)
        by_pods = sorted((r for r in rs if r["worker_ports"] == hi_p),
                         key=lambda r: r["replicas"])
        if len(by_pods) >= 2:
            a, b = by_pods[0], by_pods[-1]
            per_pod = _slope(a, b, "total", "replicas")
            per_li = _slope(a, b, "n_listeners", "replicas")
            out.append(f"rayTls {'on' if tls else 'off'}: {per_pod / 1024:.1f} KB and "
                       f"{per_li:.0f} listeners per added worker pod ({hi_p} worker ports)")
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--ports", default="11,50,200")
    ap.add_argument("--replicas", default="1,10")
    ap.add_argument("--json", type=Path, default=REPO / ".cache" / "bench-mesh.json")
    a = ap.parse_args()
    cp = with_operator(REPO / ".cache" / "cluster" / f"bench-mesh-{os.getpid()}", OPERATOR)
    t0 = time.monotonic()
    cp.start()
    kubelet = Kubelet(cp.api_client()).start()
    rows: list[dict[str, Any]] = []
    try:
        mesh = Mesh(cp, cp.start_istiod())
        helm = Helm(HELMS["helm4"], cp.kubeconfig)
        for tls in (False, True):
            for ports in (int(x) for x in a.ports.split(",")):
                for replicas in (int(x) for x in a.replicas.split(",")):
                    rows.append(measure(mesh, helm, ports, replicas, tls))
                    print(json.dumps(rows[-1]), flush=True)
    finally:
        kubelet.stop()
        cp.stop()
    print(table(rows))
    for line in ratios(rows):
        print(line)
    print(f"bench-mesh: {len(rows)} installs in {time.monotonic() - t0:.0f}s")
    a.json.parent.mkdir(parents=True, exist_ok=True)
    a.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
