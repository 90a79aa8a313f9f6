"""`make bench-mesh`: what Ray costs in Istio sidecar config, measured with the real istiod
(issue 10). Not a test: it writes a JSON of measurements, a Markdown table and a plot.

One local control plane (tools/controlplane/controlplane.py) with the real KubeRay operator v1.6.2
and the real istiod (pilot-discovery built from the pinned Istio module). Two sidecars are
measured per configuration, each by asking istiod with `bin/meshray-xds` for exactly the LDS,
CDS, RDS and EDS it sends that Pod's sidecar (as istio-agent identifies itself):

- `ray`: one worker Pod of the RayCluster;
- `other`: a plain Pod in namespace `bench-other` that has nothing to do with Ray, the cost
  every other sidecar of the mesh pays for the Ray Services it can see (`exportTo`).

Sizes are the bytes of that config as protojson (what meshray-xds prints, compact), a stand-in
for the wire size, with the count of listeners and clusters.

Configurations, for meshray (the chart, `helm install`/`upgrade`) and for the KubeRay guide's
hand-written YAML (tools/bench/kuberay-guide.yaml, applied as the guide does):
worker ports x worker replicas x rayTls x exportTo. For meshray, one install per worker ports x
rayTls, then `helm upgrade`s that set the replicas and exportTo of each step (KubeRay's
Recreate hash leaves replicas out, so no Pod is replaced; the operator only scales up). The
guide has no rayTls and no exportTo (Istio's default, every namespace); its worker-port count
is changed the way the guide says (list every port in the Service, set `max-worker-port`), its
replicas by patching the RayCluster. Each namespace is deleted, and gone, before the next one,
so the other-namespace sidecar sees one Ray cluster at a time.

    python tools/bench/bench_mesh.py [--quick] [--ports 11,50,200] [--replicas 1,10,30]
        [--tls off,on] [--export-to .,*] [--guide-ports 11,50,200] [--json out.json]
        [--docs DIR]
    python tools/bench/bench_mesh.py --from-json docs/mesh-cost.json --docs docs

`--docs DIR` writes DIR/mesh-cost.md (the table) and DIR/mesh-cost.png (the plot; needs the
`bench` extra: pip install -e '.[bench]').
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tools" / "controlplane"))
sys.path.insert(0, str(REPO / "tests" / "cluster"))
sys.path.insert(0, str(REPO / "tests" / "mesh"))

import yaml  # noqa: E402

OPERATOR = "v1.6.2"
KINDS = ("listeners", "clusters", "routes", "endpoints")
GUIDE = Path(__file__).with_name("kuberay-guide.yaml")
OTHER_NS = "bench-other"
MIN_WORKER_PORT = 10002
FULL = {"ports": "11,50,200", "replicas": "1,10,30", "tls": "off,on", "export_to": ".,*",
        "guide_ports": "11,50,200"}
QUICK = {"ports": "11,50", "replicas": "1,10", "tls": "off,on", "export_to": ".,*",
         "guide_ports": "11"}


def sizes(dump: dict[str, Any]) -> dict[str, int]:
    out = {k: len(json.dumps(dump.get(k) or [], separators=(",", ":"))) for k in KINDS}
    out["total"] = sum(out[k] for k in KINDS)
    out["n_listeners"] = len(dump.get("listeners") or [])
    out["n_clusters"] = len(dump.get("clusters") or [])
    # the inbound listener alone: its filter chains (one set per port) carry the policies
    inbound = [li for li in dump.get("listeners") or [] if li.get("name") == "virtualInbound"]
    out["inbound"] = sum(len(json.dumps(li, separators=(",", ":"))) for li in inbound)
    return out


def settled(ask: Callable[[], dict[str, Any]], timeout: float = 120.0,
            pause: float = 2.0) -> dict[str, Any]:
    """istiod learns Pods, Services and EndpointSlices from its informers and debounces pushes:
    ask until two answers `pause` seconds apart agree (or `timeout` passes)."""
    last: dict[str, Any] | None = None
    deadline = time.monotonic() + timeout
    while True:
        got = ask()
        if got == last or time.monotonic() > deadline:
            return got
        last = got
        time.sleep(pause)


# ---- the KubeRay guide's manifests ----------------------------------------------------------

def guide_objects(ns: str, worker_ports: int, replicas: int) -> list[dict[str, Any]]:
    """The guide's PeerAuthentication, headless Service and RayCluster in namespace `ns`, with
    `worker_ports` worker ports (10002 on, each listed in the Service as `pNNNNN` grpc, and
    `max-worker-port` set) and `replicas` workers."""
    docs = [d for d in yaml.safe_load_all(GUIDE.read_text()) if d]
    top = MIN_WORKER_PORT + worker_ports - 1
    for d in docs:
        d["metadata"]["namespace"] = ns
        if d["kind"] == "Service":
            fixed = [p for p in d["spec"]["ports"] if not p["name"].startswith("p1")]
            d["spec"]["ports"] = fixed + [
                {"name": f"p{p}", "port": p, "appProtocol": "grpc"}
                for p in range(MIN_WORKER_PORT, top + 1)
            ]
        if d["kind"] == "RayCluster":
            groups = [d["spec"]["headGroupSpec"], *d["spec"]["workerGroupSpecs"]]
            for g in groups:
                rsp = g["rayStartParams"]
                rsp["max-worker-port"] = str(top)
                fqdn = rsp["node-ip-address"]
                rsp["node-ip-address"] = fqdn.replace(".default.svc", f".{ns}.svc")
            for g in d["spec"]["workerGroupSpecs"]:
                g["replicas"] = g["minReplicas"] = g["maxReplicas"] = replicas
    return docs


class Bench:
    def __init__(self, mesh: Any, helm: Any, chart: Path, other_ns: str = OTHER_NS) -> None:
        from kube import dyn
        from kubernetes import client

        self.mesh = mesh
        self.helm = helm
        self.chart = chart
        self.core = client.CoreV1Api(mesh.api)
        self.dyn = dyn(mesh.api)
        self.other = self._other_pod(other_ns)

    # -- the unrelated Pod in another namespace
    def _other_pod(self, ns: str) -> Any:
        from kube import wait_for

        self.core.create_namespace({"metadata": {"name": ns, "labels": {
            "istio-injection": "enabled"}}})
        self.core.create_namespaced_pod(ns, {
            "metadata": {"name": "app", "labels": {"app": "other"}},
            "spec": {"containers": [{"name": "app", "image": "registry.k8s.io/pause:3.10"}]},
        })
        return wait_for(
            f"an IP for {ns}/app",
            lambda: p if (p := self.core.read_namespaced_pod("app", ns)).status.pod_ip else None,
            timeout=60,
        )

    # -- one measurement: both sidecars, settled together
    def measure(self, ns: str, replicas: int) -> dict[str, Any]:
        from kube import ray_pods, running, wait_for

        pods = wait_for(
            f"{replicas + 1} running pods in {ns}",
            lambda: p if len(p := ray_pods(self.core, ns)) == replicas + 1 and running(p)
            else None,
            timeout=300,
        )
        worker = sorted((p for p in pods if p.metadata.labels["ray.io/node-type"] == "worker"),
                        key=lambda p: p.metadata.name)[0]
        got = settled(lambda: {"ray": sizes(self.mesh.sidecar_config(worker)),
                               "other": sizes(self.mesh.sidecar_config(self.other))})
        return got

    def drop(self, ns: str) -> None:
        from kube import wait_for
        from kubernetes.client.rest import ApiException

        self.helm.run("uninstall", "b", "-n", ns, "--timeout", "120s", check=False)
        try:
            self.core.delete_namespace(ns)
        except ApiException as e:
            if e.status != 404:
                raise

        def gone() -> bool:
            try:
                self.core.read_namespace(ns)
            except ApiException as e:
                return bool(e.status == 404)
            return False

        wait_for(f"namespace {ns} gone", lambda: gone() or None, timeout=300)

    # -- meshray: one install, then an upgrade per (replicas, exportTo) step
    def meshray(self, ports: int, tls: bool, steps: Iterable[tuple[int, str]],
                ns: str | None = None) -> list[dict[str, Any]]:
        ns = ns or f"bench-m-w{ports}-{'tls' if tls else 'plain'}"
        rows = []
        first = True
        try:
            for replicas, export_to in steps:
                args = [
                    "--set", f"ports.minWorkerPort={MIN_WORKER_PORT}",
                    "--set", f"ports.maxWorkerPort={MIN_WORKER_PORT + ports - 1}",
                    "--set", f"workerDefaults.replicas={replicas}",
                    "--set", f"workerDefaults.minReplicas={replicas}",
                    "--set", f"workerDefaults.maxReplicas={replicas}",
                    "--set", f"rayTls.enabled={'true' if tls else 'false'}",
                    "--set-json", f"service.exportTo={json.dumps([export_to])}",
                ]
                if tls and "maxListeners" in (self.chart / "values.yaml").read_text():
                    # this run measures the cost the chart's rayTls limit is about
                    args += ["--set", f"rayTls.maxListeners={(replicas + 1) * ports}"]
                verb = ["install", "--create-namespace"] if first else ["upgrade"]
                self.helm.run(*verb, "b", str(self.chart), "-n", ns, *args)
                first = False
                m = self.measure(ns, replicas)
                rows.append({"chart": "meshray", "worker_ports": ports, "replicas": replicas,
                             "rayTls": tls, "exportTo": export_to, **m})
                print(json.dumps(rows[-1]), flush=True)
        finally:
            self.drop(ns)
        return rows

    # -- the guide: applied as written (scaled), replicas by patch
    def guide(self, ports: int, replicas_steps: Iterable[int],
              ns: str | None = None) -> list[dict[str, Any]]:
        ns = ns or f"bench-g-w{ports}"
        rows = []
        self.core.create_namespace({"metadata": {"name": ns}})
        try:
            first = True
            for replicas in replicas_steps:
                if first:
                    for obj in guide_objects(ns, ports, replicas):
                        res = self.dyn.resources.get(api_version=obj["apiVersion"],
                                                     kind=obj["kind"])
                        res.create(body=obj, namespace=ns)
                    first = False
                else:
                    rc = self.dyn.resources.get(api_version="ray.io/v1", kind="RayCluster")
                    rc.patch(
                        name="raycluster-istio", namespace=ns,
                        content_type="application/json-patch+json",
                        body=[{"op": "replace", "path": f"/spec/workerGroupSpecs/0/{k}",
                               "value": replicas}
                              for k in ("maxReplicas", "replicas", "minReplicas")],
                    )
                m = self.measure(ns, replicas)
                rows.append({"chart": "guide", "worker_ports": ports, "replicas": replicas,
                             "rayTls": False, "exportTo": "(unset)", **m})
                print(json.dumps(rows[-1]), flush=True)
        finally:
            self.drop(ns)
        return rows


def steps(replicas: list[int], export_to: list[str]) -> list[tuple[int, str]]:
    """Every (replicas, exportTo), replicas only growing, exportTo alternating so that each
    replicas step changes one thing at a time."""
    out: list[tuple[int, str]] = []
    order = list(export_to)
    for r in sorted(replicas):
        out += [(r, e) for e in order]
        order.reverse()
    return out


# ---- the table and the plot ------------------------------------------------------------------

def _kb(n: int) -> str:
    return f"{n / 1024:,.0f}"


def _key(r: dict[str, Any]) -> tuple[Any, ...]:
    return (r["chart"] != "meshray", r["rayTls"], r["exportTo"] != ".", r["worker_ports"],
            r["replicas"])


def table(rows: list[dict[str, Any]]) -> str:
    out = [
        "| chart | rayTls | exportTo | worker ports | worker replicas | Ray sidecar: listeners "
        "| clusters | total KB | of which inbound KB | other namespace: listeners | clusters "
        "| total KB |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in sorted(rows, key=_key):
        ray, oth = r["ray"], r["other"]
        out.append(
            f"| {r['chart']} | {'on' if r['rayTls'] else 'off'} | `{r['exportTo']}` | "
            f"{r['worker_ports']} | {r['replicas']} | {ray['n_listeners']:,} | "
            f"{ray['n_clusters']:,} | {_kb(ray['total'])} | {_kb(ray.get('inbound', 0))} | "
            f"{oth['n_listeners']:,} | "
            f"{oth['n_clusters']:,} | {_kb(oth['total'])} |"
        )
    return "\n".join(out)


def summary_table(rows: list[dict[str, Any]]) -> str:
    """The README's short table: per worker ports x replicas (the fewest and the most), the Ray
    sidecar with rayTls off and on, the other namespace's sidecar with exportTo "." and "*"
    (rayTls off), and the guide's two sidecars."""
    by = {(r["chart"], r["worker_ports"], r["replicas"], r["rayTls"], r["exportTo"]): r
          for r in rows}
    reps = sorted({r["replicas"] for r in rows})
    out = [
        "| worker ports | worker replicas | Ray sidecar KB (listeners), rayTls off | ... rayTls on "
        "| other namespace's sidecar KB, exportTo `.` / `*` | KubeRay guide: Ray sidecar KB / "
        "other namespace KB |",
        "|---|---|---|---|---|---|",
    ]
    for p in sorted({r["worker_ports"] for r in rows}):
        for n in (reps[0], reps[-1]):
            off, on = by.get(("meshray", p, n, False, ".")), by.get(("meshray", p, n, True, "."))
            star = by.get(("meshray", p, n, False, "*"))
            guide = by.get(("guide", p, n, False, "(unset)"))
            if not (off and on and star and guide):
                continue
            out.append(
                f"| {p} | {n} | {_kb(off['ray']['total'])} ({off['ray']['n_listeners']:,}) | "
                f"{_kb(on['ray']['total'])} ({on['ray']['n_listeners']:,}) | "
                f"{_kb(off['other']['total'])} / {_kb(star['other']['total'])} | "
                f"{_kb(guide['ray']['total'])} / {_kb(guide['other']['total'])} |"
            )
    return "\n".join(out)


def _slope(a: dict[str, Any], b: dict[str, Any], value: str, along: str) -> float:
    """How much `value` grows per unit of `along` between two measured rows."""
    return float(b[value] - a[value]) / float(b[along] - a[along])


def ratios(rows: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Per rayTls setting (meshray, exportTo "."), from the Ray sidecar: bytes per declared worker
    port (fewest replicas, fewest -> most ports) and bytes and listeners per added worker pod
    (most ports, fewest -> most replicas)."""
    out: dict[str, dict[str, float]] = {}
    for tls in (False, True):
        rs = [{**r["ray"], "worker_ports": r["worker_ports"], "replicas": r["replicas"]}
              for r in rows if r["chart"] == "meshray" and r["rayTls"] == tls
              and r["exportTo"] == "."]
        if not rs:
            continue
        got: dict[str, float] = {}
        lo_r = min(r["replicas"] for r in rs)
        by_ports = sorted((r for r in rs if r["replicas"] == lo_r), key=lambda r: r["worker_ports"])
        if len(by_ports) >= 2 and by_ports[0]["worker_ports"] != by_ports[-1]["worker_ports"]:
            got["bytes_per_port"] = _slope(by_ports[0], by_ports[-1], "total", "worker_ports")
        hi_p = max(r["worker_ports"] for r in rs)
        by_pods = sorted((r for r in rs if r["worker_ports"] == hi_p), key=lambda r: r["replicas"])
        if len(by_pods) >= 2 and by_pods[0]["replicas"] != by_pods[-1]["replicas"]:
            got["bytes_per_pod"] = _slope(by_pods[0], by_pods[-1], "total", "replicas")
            got["listeners_per_pod"] = _slope(by_pods[0], by_pods[-1], "n_listeners", "replicas")
            got["at_ports"] = hi_p
        out["on" if tls else "off"] = got
    star = sorted(({**r["other"], "worker_ports": r["worker_ports"]} for r in rows
                   if r["chart"] == "meshray" and not r["rayTls"] and r["exportTo"] == "*"
                   and r["replicas"] == min(x["replicas"] for x in rows)),
                  key=lambda r: r["worker_ports"])
    if len(star) >= 2 and star[0]["worker_ports"] != star[-1]["worker_ports"]:
        out["other"] = {"bytes_per_port": _slope(star[0], star[-1], "total", "worker_ports")}
    return out


def ratio_lines(rows: list[dict[str, Any]]) -> list[str]:
    out = []
    for tls, g in ratios(rows).items():
        if tls == "other":
            out.append(f"exportTo *: {g['bytes_per_port'] / 1024:.1f} KB per worker port in a "
                       "sidecar of another namespace")
            continue
        if "bytes_per_port" in g:
            out.append(f"rayTls {tls}: {g['bytes_per_port'] / 1024:.1f} KB per worker port")
        if "bytes_per_pod" in g:
            out.append(f"rayTls {tls}: {g['bytes_per_pod'] / 1024:.1f} KB and "
                       f"{g['listeners_per_pod']:.0f} listeners per added worker pod "
                       f"({g['at_ports']:.0f} worker ports)")
    return out


def markdown(doc: dict[str, Any]) -> str:
    rows = doc["rows"]
    lines = [
        "# Mesh cost: what the real istiod sends a sidecar",
        "",
        "<!-- generated by tools/bench/bench_mesh.py from mesh-cost.json; do not edit -->",
        "",
        f"One run of `make bench-mesh` on {doc['date']} ({doc['seconds'] / 60:.0f} min, "
        f"{doc['host']}, chart at {doc.get('chart', '?')}): KubeRay {doc['operator']}, "
        "istiod built from the pinned Istio module, "
        "STRICT mTLS. Sizes are LDS + CDS + RDS + EDS as compact protojson (a stand-in for the "
        "wire size); *inbound*: the Ray sidecar's `virtualInbound` listener alone. "
        "*Ray sidecar*: one worker Pod of the cluster. *Other namespace*: a plain "
        f"Pod in namespace `{OTHER_NS}` with nothing to do with Ray. `guide`: the KubeRay guide's "
        "hand-written Service + RayCluster ([tools/bench/kuberay-guide.yaml]"
        "(../tools/bench/kuberay-guide.yaml)), its worker ports and replicas scaled the way the "
        "guide says; it sets no `exportTo`, so Istio exports its Services to every namespace.",
        "",
        "![xDS bytes vs worker ports](mesh-cost.png)",
        "",
        table(rows),
        "",
        "Slopes (meshray, rayTls off and on, exportTo `.`, the Ray sidecar; and with exportTo `*`, "
        "the other namespace's sidecar):",
        "",
        *[f"- {x}" for x in ratio_lines(rows)],
        "",
    ]
    return "\n".join(lines)


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    fig, axes = plt.subplots(1, 2, figsize=(13, 5.5))
    series: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for r in rows:
        series.setdefault((r["chart"], r["rayTls"], r["exportTo"], r["replicas"]), []).append(r)
    colors = {1: "tab:blue", 10: "tab:orange", 30: "tab:red"}
    widths = {1: 4.0, 10: 2.5, 30: 1.2}  # equal lines stay visible: thin over thick
    for ax, side, title in (
            (axes[0], "ray", "a Ray worker Pod's sidecar (meshray: exportTo '.'; '*' within 0.3%)"),
            (axes[1], "other", f"a plain Pod's sidecar in namespace {OTHER_NS}")):
        for (chart, tls, exp, rep), rs in sorted(series.items(), key=lambda kv: str(kv[0])):
            if side == "ray" and exp == "*":
                continue
            rs = sorted(rs, key=lambda r: r["worker_ports"])
            style = ":" if chart == "guide" else ("--" if tls else "-")
            marker = "o" if exp == "." else ("s" if exp == "*" else "^")
            label = (f"guide, {rep} rep." if chart == "guide"
                     else f"rayTls {'on' if tls else 'off'}, exportTo {exp}, {rep} rep.")
            ax.plot([r["worker_ports"] for r in rs], [r[side]["total"] / 1024 for r in rs],
                    style, marker=marker, color=colors.get(rep, "tab:gray"), label=label,
                    linewidth=widths.get(rep, 1.5), markersize=3 + widths.get(rep, 1.5))
        ax.set_xscale("log")
        ax.set_xticks(sorted({r["worker_ports"] for r in rows}))
        ax.get_xaxis().set_major_formatter(matplotlib.ticker.ScalarFormatter())
        ax.set_xlabel("worker ports")
        ax.set_ylabel("xDS KB (LDS+CDS+RDS+EDS, protojson)")
        ax.set_yscale("log")
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=6.5, ncol=2, loc="best")
    fig.suptitle("Istio config per sidecar, real istiod (solid: meshray, dashed: meshray rayTls, "
                 "dotted: KubeRay guide; o exportTo '.', s '*', ^ unset)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_docs(doc: dict[str, Any], out: Path, with_plot: bool = True) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "mesh-cost.json").write_text(json.dumps(doc, indent=1) + "\n")
    (out / "mesh-cost.md").write_text(markdown(doc))
    if with_plot:
        plot(doc["rows"], out / "mesh-cost.png")


def _csv(s: str) -> list[str]:
    return [x for x in s.split(",") if x]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help=f"a subset: {QUICK}")
    ap.add_argument("--ports")
    ap.add_argument("--replicas")
    ap.add_argument("--tls", help="off,on")
    ap.add_argument("--export-to", dest="export_to", help='.,* (meshray only)')
    ap.add_argument("--guide-ports", dest="guide_ports", help="'' for no guide")
    ap.add_argument("--json", type=Path, default=REPO / ".cache" / "bench-mesh.json")
    ap.add_argument("--docs", type=Path, help="write mesh-cost.{json,md,png} into this directory")
    ap.add_argument("--from-json", dest="from_json", type=Path,
                    help="no measuring: the table (and --docs) from a JSON this script wrote")
    ap.add_argument("--chart-ref", dest="chart_ref", default="HEAD",
                    help="install the chart as committed at this git ref ('': the working tree)")
    ap.add_argument("--xds", type=Path, help="the meshray-xds binary (default bin/meshray-xds)")
    a = ap.parse_args()
    if a.from_json:
        doc = json.loads(a.from_json.read_text())
    else:
        base = QUICK if a.quick else FULL
        conf = {k: getattr(a, k) if getattr(a, k) is not None else v for k, v in base.items()}
        doc = run(conf, a.xds, a.chart_ref)
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps(doc, indent=1) + "\n")
    print(table(doc["rows"]))
    print()
    print(summary_table(doc["rows"]))
    for line in ratio_lines(doc["rows"]):
        print(line)
    print(f"bench-mesh: {len(doc['rows'])} measurements in {doc['seconds']:.0f}s")
    if a.docs:
        write_docs(doc, a.docs)


def chart_at(ref: str, workdir: Path) -> Path:
    """The chart as committed at `ref` ("" for the working tree as it is now), copied into
    `workdir`, so that edits in the working tree during a long run change nothing."""
    out = workdir / "chart"
    shutil.rmtree(out, ignore_errors=True)
    if not ref:
        shutil.copytree(REPO / "charts" / "meshray", out)
        return out
    archive = subprocess.run(["git", "-C", str(REPO), "archive", ref, "charts/meshray"],
                             check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(workdir)], input=archive, check=True)
    (workdir / "charts" / "meshray").rename(out)
    return out


def git_ref(ref: str) -> str:
    if not ref:
        return "working tree"
    return subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", ref], check=True,
                          capture_output=True, text=True).stdout.strip()


def run(conf: dict[str, str], xds: Path | None = None, ref: str = "HEAD") -> dict[str, Any]:
    import xds_support
    from controlplane import with_operator
    from kube import HELMS, Helm
    from kubelet import Kubelet

    if xds:
        xds_support.XDS = xds
    ports = [int(x) for x in _csv(conf["ports"])]
    replicas = [int(x) for x in _csv(conf["replicas"])]
    tlss = [x == "on" for x in _csv(conf["tls"])]
    export_to = _csv(conf["export_to"])
    guide_ports = [int(x) for x in _csv(conf["guide_ports"])]
    cp = with_operator(REPO / ".cache" / "cluster" / f"bench-mesh-{os.getpid()}", OPERATOR)
    t0 = time.monotonic()
    cp.start()
    kubelet = Kubelet(cp.api_client()).start()
    rows: list[dict[str, Any]] = []
    try:
        mesh = xds_support.Mesh(cp, cp.start_istiod())
        chart = chart_at(ref, cp.workdir)
        bench = Bench(mesh, Helm(HELMS["helm4"], cp.kubeconfig), chart)
        for p in guide_ports:
            rows += bench.guide(p, sorted(replicas))
        for tls in tlss:
            for p in ports:
                rows += bench.meshray(p, tls, steps(replicas, export_to))
    finally:
        kubelet.stop()
        cp.stop()
    return {
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "host": f"{os.cpu_count()} cores",
        "operator": OPERATOR,
        "conf": conf,
        "chart": git_ref(ref),
        "seconds": round(time.monotonic() - t0),
        "rows": rows,
    }


if __name__ == "__main__":
    main()
