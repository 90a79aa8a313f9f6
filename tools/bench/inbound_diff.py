"""Why meshray's Ray worker sidecar has a bigger inbound listener than the KubeRay guide's
(docs/mesh-cost-inbound.md). Not a test, not part of `make bench-mesh`.

Measures with the real istiod (the same local control plane, KubeRay operator and meshray-xds as
tools/bench/bench_mesh.py, whose functions it reuses): for each worker-port count, the guide's
YAML and meshray's chart (rayTls off, exportTo ".", 1 replica) with variants set by values
(`mesh.authorizationPolicy.enabled`, `mesh.sidecar.inbound`), applied by `helm upgrade` on the
same release (the RayCluster renders the same, so no Pod is replaced). Dumps each worker
sidecar's LDS/CDS/RDS/EDS to DIR/<name>.json and breaks its `virtualInbound` listener down per
filter chain.

    python tools/bench/inbound_diff.py run [--ports 11,50] [--experiments] [--dir DIR]
    python tools/bench/inbound_diff.py report --dir DIR [--detail]   # the table of saved dumps

`--experiments` adds, after the chart's variants, hand-written AuthorizationPolicies in place of
the chart's (EXPERIMENTS; the chart's policy off by values), to measure what a port list that
does not grow with the worker ports would cost. DIR defaults to .cache/inb-<pid>.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import bench_mesh  # noqa: E402

REPO = bench_mesh.REPO
NOAUTHZ = ["--set", "mesh.authorizationPolicy.enabled=false"]
VARIANTS: dict[str, tuple[list[str], list[dict[str, Any]] | None]] = {
    "meshray": ([], None),
    "meshray-noauthz": (NOAUTHZ, None),
    "meshray-nosidecar": (["--set", "mesh.sidecar.inbound=false"], None),
    "meshray-neither": ([*NOAUTHZ, "--set", "mesh.sidecar.inbound=false"], None),
}
# Experiments, not chart values: the chart's policy off, a hand-written one in its place that
# admits the same principal with a port list that does not grow with the worker ports.
SA = "cluster.local/ns/{ns}/sa/b-meshray-ray"
EXPERIMENTS: dict[str, tuple[list[str], list[dict[str, Any]] | None]] = {
    # every port but the dashboard and the Ray Client (what rule 0 lists today, as notPorts)
    "exp-notports": (NOAUTHZ, [{"from": [{"source": {"principals": [SA]}}],
                                "to": [{"operation": {"notPorts": ["8265", "10001"]}}]}]),
    # the cluster's principals to any port (a worker-only policy could say this)
    "exp-fromonly": (NOAUTHZ, [{"from": [{"source": {"principals": [SA]}}]}]),
}


def _size(x: Any) -> int:
    return len(json.dumps(x, separators=(",", ":")))


# ---- measuring -------------------------------------------------------------------------------

def worker_dump(bench: Any, ns: str) -> tuple[str, dict[str, Any]]:
    from kube import ray_pods, running, wait_for

    pods = wait_for(f"2 running pods in {ns}",
                    lambda: p if len(p := ray_pods(bench.core, ns)) == 2 and running(p) else None,
                    timeout=300)
    worker = next(p for p in pods if p.metadata.labels["ray.io/node-type"] == "worker")
    # settled on the sizes, as bench_mesh does: two full dumps never compare equal
    last: dict[str, Any] = {}

    def ask() -> dict[str, int]:
        last["dump"] = bench.mesh.sidecar_config(worker)
        return bench_mesh.sizes(last["dump"])

    bench_mesh.settled(ask)
    return worker.metadata.name, last["dump"]


def guide_dump(bench: Any, n: int, out: Path, t0: float) -> None:
    """The guide, as bench_mesh applies it, with `n` worker ports and 1 replica."""
    ns = f"inb-g-w{n}"
    bench.core.create_namespace({"metadata": {"name": ns}})
    try:
        for obj in bench_mesh.guide_objects(ns, n, 1):
            res = bench.dyn.resources.get(api_version=obj["apiVersion"], kind=obj["kind"])
            res.create(body=obj, namespace=ns)
        pod, dump = worker_dump(bench, ns)
        (out / f"guide-w{n}.json").write_text(json.dumps(dump))
        print(f"{time.monotonic() - t0:.0f}s guide w{n} {pod}", flush=True)
    finally:
        bench.drop(ns)


def run(ports: list[int], out: Path, variants: dict[str, Any], guide: bool = True) -> None:
    import xds_support
    from controlplane import with_operator
    from kube import HELMS, Helm
    from kubelet import Kubelet

    out.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    cp = with_operator(REPO / ".cache" / "cluster" / f"inb-{os.getpid()}", bench_mesh.OPERATOR)
    cp.start()
    kubelet = Kubelet(cp.api_client()).start()
    try:
        mesh = xds_support.Mesh(cp, cp.start_istiod())
        chart = bench_mesh.chart_at("HEAD", cp.workdir)
        bench = bench_mesh.Bench(mesh, Helm(HELMS["helm4"], cp.kubeconfig), chart,
                                 other_ns="inb-other")
        for n in ports:
            if guide:
                guide_dump(bench, n, out, t0)
            # meshray and its variants, one release
            ns = f"inb-m-w{n}"
            first = True
            try:
                for name, (extra, rules) in variants.items():
                    args = ["--set", f"ports.minWorkerPort={bench_mesh.MIN_WORKER_PORT}",
                            "--set", f"ports.maxWorkerPort={bench_mesh.MIN_WORKER_PORT + n - 1}",
                            "--set", "workerDefaults.replicas=1",
                            "--set", "workerDefaults.minReplicas=1",
                            "--set", "workerDefaults.maxReplicas=1",
                            "--set", "rayTls.enabled=false",
                            "--set-json", 'service.exportTo=["."]', *extra]
                    verb = ["install", "--create-namespace"] if first else ["upgrade"]
                    bench.helm.run(*verb, "b", str(chart), "-n", ns, *args)
                    first = False
                    ap = bench.dyn.resources.get(api_version="security.istio.io/v1",
                                                 kind="AuthorizationPolicy")
                    if rules:
                        ap.create(namespace=ns, body={
                            "apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
                            "metadata": {"name": "inb-exp", "namespace": ns},
                            "spec": {"selector": {"matchLabels": {"ray.io/cluster": "b-meshray"}},
                                     "action": "ALLOW",
                                     "rules": json.loads(json.dumps(rules).replace("{ns}", ns))}})
                    time.sleep(3)  # let istiod see the changed Sidecar / AuthorizationPolicy
                    pod, dump = worker_dump(bench, ns)
                    (out / f"{name}-w{n}.json").write_text(json.dumps(dump))
                    print(f"{time.monotonic() - t0:.0f}s {name} w{n} {pod}", flush=True)
                    if rules:
                        ap.delete(name="inb-exp", namespace=ns)
            finally:
                bench.drop(ns)
    finally:
        kubelet.stop()
        cp.stop()
    (out / "meta.json").write_text(json.dumps({
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "chart": bench_mesh.git_ref("HEAD"), "seconds": round(time.monotonic() - t0),
        "ports": ports}))


# ---- the breakdown ---------------------------------------------------------------------------

def chain_port(fc: dict[str, Any]) -> int | None:
    return (fc.get("filterChainMatch") or {}).get("destinationPort")


def chain_key(fc: dict[str, Any]) -> str:
    """The chain's match, short: transport / ALPNs (server names if any)."""
    m = fc.get("filterChainMatch") or {}
    key = m.get("transportProtocol", "*")
    if m.get("applicationProtocols"):
        key += "/" + ",".join(m["applicationProtocols"])
    if m.get("serverNames"):
        key += " sni=" + ",".join(m["serverNames"])
    if m.get("prefixRanges"):
        key += " ip=" + ",".join(r.get("addressPrefix", "") for r in m["prefixRanges"])
    return str(key)


def parts(fc: dict[str, Any]) -> dict[str, int]:
    """Bytes of a chain by part: each network filter (HCM split into its http filters and the
    rest), the transport socket, the match and the remaining fields."""
    out: dict[str, int] = defaultdict(int)
    rest = dict(fc)
    for f in rest.pop("filters", []) or []:
        name = f["name"].replace("envoy.filters.network.", "net.").replace("istio.", "istio.")
        if f["name"] == "envoy.filters.network.http_connection_manager":
            cfg = dict(f.get("typedConfig") or {})
            for hf in cfg.pop("httpFilters", []) or []:
                out["http." + hf["name"].replace("envoy.filters.http.", "")] += _size(hf)
            out["net.hcm (rest)"] += _size({**f, "typedConfig": cfg})
        else:
            out[name] += _size(f)
    if "transportSocket" in rest:
        out["transportSocket"] += _size(rest.pop("transportSocket"))
    if "filterChainMatch" in rest:
        out["match"] += _size(rest.pop("filterChainMatch"))
    out["(name, metadata)"] += _size(rest)
    return dict(out)


def rbac_ports(fc: dict[str, Any]) -> list[int]:
    """How many destinationPort entries each RBAC filter of the chain carries."""
    counts = []

    def walk(x: Any) -> int:
        if isinstance(x, dict):
            return ("destinationPort" in x) + sum(walk(v) for v in x.values())
        if isinstance(x, list):
            return sum(walk(v) for v in x)
        return 0

    for f in fc.get("filters") or []:
        if f["name"] == "envoy.filters.network.rbac":
            counts.append(walk(f))
        if f["name"] == "envoy.filters.network.http_connection_manager":
            for hf in (f.get("typedConfig") or {}).get("httpFilters") or []:
                if hf["name"] == "envoy.filters.http.rbac":
                    counts.append(walk(hf))
    return counts


def inbound(dump: dict[str, Any]) -> dict[str, Any]:
    li = next(x for x in dump["listeners"] if x["name"] == "virtualInbound")
    chains = li.get("filterChains") or []
    return {"listener": li, "chains": chains, "size": _size(li),
            "overhead": _size({k: v for k, v in li.items() if k != "filterChains"})}


def summarize(name: str, dump: dict[str, Any], worker_ports: range) -> dict[str, Any]:
    ib = inbound(dump)
    by_port: dict[Any, list[dict[str, Any]]] = defaultdict(list)
    for fc in ib["chains"]:
        by_port[chain_port(fc)].append(fc)
    wp = [p for p in by_port if p in worker_ports]
    fixed = [p for p in by_port if p is not None and p not in worker_ports]
    sample = by_port[worker_ports[len(worker_ports) // 2]]
    return {
        "name": name,
        "total": sizes_total(dump),
        "inbound": ib["size"],
        "listener_overhead": ib["overhead"],
        "n_chains": len(ib["chains"]),
        "portless_chains": [(chain_key(fc), _size(fc)) for fc in by_port.get(None, [])],
        "portless_bytes": sum(_size(fc) for fc in by_port.get(None, [])),
        "fixed_ports": sorted(fixed),
        "fixed_bytes": sum(_size(fc) for p in fixed for fc in by_port[p]),
        "fixed_chains": sum(len(by_port[p]) for p in fixed),
        "worker_ports": len(wp),
        "worker_bytes": sum(_size(fc) for p in wp for fc in by_port[p]),
        "worker_chains": sum(len(by_port[p]) for p in wp),
        "sample_port": worker_ports[len(worker_ports) // 2],
        "sample": [{"match": chain_key(fc), "bytes": _size(fc), "parts": parts(fc),
                    "filters": [f["name"] for f in fc.get("filters") or []],
                    "rbac_port_entries": rbac_ports(fc)} for fc in sample],
    }


def sizes_total(dump: dict[str, Any]) -> int:
    return int(bench_mesh.sizes(dump)["total"])


def rbac_bytes(chains: list[dict[str, Any]]) -> int:
    return sum(p.get("http.rbac", 0) + p.get("net.rbac", 0) for p in map(parts, chains))


def report(d: Path, detail: bool = False) -> str:
    """A Markdown table of the saved dumps (and, with `detail`, the per-chain breakdown of a
    worker port's chain as JSON)."""
    meta = json.loads((d / "meta.json").read_text()) if (d / "meta.json").exists() else {}
    lines = [f"inbound breakdown of {d}: {meta}", "",
             "| worker ports | config | sidecar total B | inbound B | chains | bytes of a worker "
             "port's chain | of which RBAC B (port entries) | RBAC B, all chains |",
             "|---|---|---|---|---|---|---|---|"]
    details = []
    order = ["guide", *VARIANTS, *EXPERIMENTS]
    files = sorted(d.glob("*-w*.json"), key=lambda f: (int(f.stem.rsplit("-w", 1)[1]),
                                                     order.index(f.stem.rsplit("-w", 1)[0])))
    for f in files:
        name, n = f.stem.rsplit("-w", 1)
        wr = range(bench_mesh.MIN_WORKER_PORT, bench_mesh.MIN_WORKER_PORT + int(n))
        dump = json.loads(f.read_text())
        s = summarize(f.stem, dump, wr)
        sample = s["sample"][0]
        lines.append(
            f"| {n} | {name} | {s['total']:,} | {s['inbound']:,} | {s['n_chains']} | "
            f"{sample['bytes']:,} | {sample['parts'].get('http.rbac', 0):,} "
            f"({','.join(map(str, sample['rbac_port_entries'])) or '-'}) | "
            f"{rbac_bytes(inbound(dump)['chains']):,} |")
        details.append(json.dumps(s, indent=1))
    return "\n".join(lines + (["", *details] if detail else []))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("cmd", choices=["run", "report"])
    ap.add_argument("--ports", default="11,50")
    ap.add_argument("--experiments", action="store_true",
                    help="also the hand-written policies (EXPERIMENTS) after the chart variants")
    ap.add_argument("--detail", action="store_true", help="also the per-chain breakdown")
    ap.add_argument("--dir", type=Path, default=REPO / ".cache" / f"inb-{os.getpid()}")
    a = ap.parse_args()
    if a.cmd == "run":
        ports = [int(x) for x in a.ports.split(",") if x]
        run(ports, a.dir, {**VARIANTS, **EXPERIMENTS} if a.experiments else VARIANTS)
    print(report(a.dir, a.detail))


if __name__ == "__main__":
    main()
