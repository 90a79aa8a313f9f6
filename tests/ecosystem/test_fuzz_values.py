"""Property-based fuzzing of VALID values: whatever legal values a user writes, the chart
renders, `meshray audit` finds no error in the render, and kubeconform (strict, offline, the
generated schemas) accepts every object.

The strategy draws values inside charts/meshray/values.schema.json and the chart's own rules:
a port map of distinct ports (1024-65535, outside Istio's 15000-15099), a worker range or an
explicit worker-port list within ``ports.maxWorkerPorts`` and clear of the named ports, 1-4
worker groups with DNS-label names and consistent replica bounds, every mTLS mode and scope,
``exportTo`` lists, Serve on/off, Ray-native TLS on/off, Istio API v1/v1beta1, Ray 2.10-2.60.

Bounded for CI and reproducible: the default run replays the example database committed under
tests/fixtures/fuzz-db/ (read only), then draws CI_EXAMPLES examples from a fixed seed, so every
run of `make test` checks the same values; a failure prints the values file.
``MESHRAY_FUZZ_EXAMPLES=500`` runs a larger random search instead and saves what fails (shrunk)
to that database: commit it, and the default run replays it from then on.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
import unittest
from pathlib import Path
from typing import Any

import pytest
import yaml
from ecosystem_support import helm, load_script, schemas_dir, tool
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st
from hypothesis.database import DirectoryBasedExampleDatabase, ReadOnlyDatabase
from meshray.audit import ERROR, audit
from meshray.manifests import Manifest
from meshray.render import RenderRequest, render_manifests

REPO = Path(__file__).resolve().parents[2]
DATABASE = DirectoryBasedExampleDatabase(str(REPO / "tests" / "fixtures" / "fuzz-db"))
CI_EXAMPLES = 40
DEEP_EXAMPLES = int(os.environ.get("MESHRAY_FUZZ_EXAMPLES") or 0)

COMMON = {"deadline": None, "suppress_health_check": [HealthCheck.too_slow]}
# MESHRAY_FUZZ_EXAMPLES=N: a random search that shrinks what fails and saves it to DATABASE
DEEP = settings(max_examples=DEEP_EXAMPLES or 1, database=DATABASE, **COMMON)
# the default (CI) run, in two deterministic passes: every example saved in DATABASE (read
# only, no generation), then CI_EXAMPLES fresh ones from a fixed seed. No shrinking: each example
# runs helm, so shrinking a failure takes minutes; the failing values print as drawn.
REPLAY = settings(max_examples=1000, database=ReadOnlyDatabase(DATABASE), phases=[Phase.reuse],
                  **COMMON)
FRESH = settings(max_examples=CI_EXAMPLES, database=None,
                 phases=[Phase.explicit, Phase.generate], **COMMON)
SEED = 20261122

NAMED_PORTS = ("gcs", "dashboard", "client", "nodeManager", "objectManager", "runtimeEnvAgent",
               "dashboardAgentGrpc", "dashboardAgentListen", "metricsExport", "dashboardGrpc",
               "autoscalerMetrics", "dashboardMetrics")
ISTIO_OWNED = range(15000, 15100)  # the sidecar's own ports (15001, 15006, 15020, 15090...)
# Serve's default proxy ports: a driver can start Serve with serve off, and its proxies bind them
# on every node, so the chart refuses any Ray port there with serve off (and the audit reports a
# worker port there); legal values leave them out.
SERVE_DEFAULTS = (8000, 9000)
# Names YAML 1.1 (go-yaml, which helm and kubectl use) reads as booleans, null or numbers: the
# chart quotes every name it writes (test_yaml_1_1_names_render_as_strings), so the strategies
# draw them too.
YAML11_NON_STRING = re.compile(
    r"\A(y|n|yes|no|on|off|true|false|null"
    r"|[-+]?[0-9][0-9_]*|0x[0-9a-f_]+|0b[01_]+|0o[0-7_]+"
    r"|[-+]?([0-9][0-9_]*)?\.?[0-9]*(e[-+]?[0-9]+)?)\Z")


def yaml11_string(name: str) -> bool:
    return not YAML11_NON_STRING.match(name)


# DNS-1035 labels for the cluster (the chart requires a leading letter), DNS-1123 for groups
CLUSTER_NAME = st.from_regex(r"\A[a-z]([-a-z0-9]{0,10}[a-z0-9])?\Z")
GROUP_NAME = st.from_regex(r"\A[a-z0-9]([-a-z0-9]{0,10}[a-z0-9])?\Z")


def legal_port(p: int) -> bool:
    return 1024 <= p <= 65535 and p not in ISTIO_OWNED and p not in SERVE_DEFAULTS


@st.composite
def port_maps(draw: st.DrawFn) -> dict[str, Any]:
    """Named ports and worker ports, all distinct, worker count within maxWorkerPorts."""
    max_worker_ports = draw(st.integers(min_value=2, max_value=120))
    count = draw(st.integers(min_value=2, max_value=max_worker_ports))
    explicit = draw(st.booleans())
    if explicit:
        workers = sorted(draw(st.sets(st.integers(1024, 65535).filter(legal_port),
                                      min_size=2, max_size=min(count, 40))))
    else:
        lo = draw(st.integers(1024, 65535 - count + 1).filter(
            lambda p: all(not p <= x < p + count for x in (*SERVE_DEFAULTS, ISTIO_OWNED.start))
            and not ISTIO_OWNED.start <= p < ISTIO_OWNED.stop))
        workers = list(range(lo, lo + count))
    taken = set(workers)
    named = draw(st.lists(st.integers(1024, 65535).filter(
        lambda p: legal_port(p) and p not in taken), min_size=len(NAMED_PORTS),
        max_size=len(NAMED_PORTS), unique=True))
    ports: dict[str, Any] = dict(zip(NAMED_PORTS, named, strict=True))
    ports["maxWorkerPorts"] = max_worker_ports
    if explicit:
        ports["workerPortList"] = workers
    else:
        ports["minWorkerPort"], ports["maxWorkerPort"] = workers[0], workers[-1]
    return ports


@st.composite
def worker_groups(draw: st.DrawFn) -> dict[str, Any]:
    names = draw(st.lists(GROUP_NAME, min_size=1, max_size=4, unique=True))
    groups: dict[str, Any] = {}
    for name in names:
        lo = draw(st.integers(0, 3))
        hi = draw(st.integers(lo, 6))
        groups[name] = {"minReplicas": lo, "maxReplicas": hi,
                        "replicas": draw(st.integers(lo, hi))}
    return groups


@st.composite
def values(draw: st.DrawFn) -> dict[str, Any]:
    minor = draw(st.integers(10, 60))
    scope = draw(st.sampled_from(["cluster", "namespace"]))
    v: dict[str, Any] = {
        "clusterName": draw(CLUSTER_NAME),
        "ray": {"version": f"2.{minor}.0", "autoscaling": draw(st.booleans())},
        "ports": draw(port_maps()),
        "workerGroups": draw(worker_groups()),
        "istio": {"apiVersion": draw(st.sampled_from(["v1", "v1beta1"]))},
        "mtls": {"enabled": draw(st.booleans()),
                 "mode": draw(st.sampled_from(["STRICT", "PERMISSIVE", "DISABLE"])),
                 "scope": scope},
        "service": {"exportTo": draw(st.sampled_from(
            [["."], ["*"], [".", "istio-system"], ["ray", "monitoring"]]))},
        "serve": {"enabled": draw(st.booleans())},
        "rayTls": {"enabled": draw(st.booleans())},
        "mesh": {"sidecar": {"enabled": draw(st.booleans())}},
        "networkPolicy": {"enabled": draw(st.booleans())},
    }
    if v["mtls"]["enabled"] and v["mtls"]["mode"] == "DISABLE":
        # the Ray pods' AuthorizationPolicy admits peers by mTLS identity: refused together
        v["mesh"]["authorizationPolicy"] = {"enabled": False}
    if v["serve"]["enabled"]:
        ports = v["ports"]
        taken = {p for k, p in ports.items() if k in NAMED_PORTS}
        taken |= set(ports.get("workerPortList", []))
        lo, hi = ports.get("minWorkerPort"), ports.get("maxWorkerPort")
        free = st.integers(1024, 65535).filter(
            lambda p: legal_port(p) and p not in taken
            and not (lo is not None and lo <= p <= hi))
        http, grpc = draw(st.lists(free, min_size=2, max_size=2, unique=True))
        v["serve"].update(httpPort=http, grpcPort=grpc)
    return v


def kubeconform_problems(files: list[Path]) -> list[dict[str, Any]]:
    """kubeconform, strict and offline, over rendered files in one run: the newest Kubernetes,
    KubeRay and Istio schema sets (Istio 1.29 serves both v1 and v1beta1)."""
    eco = load_script("check_renders")
    schemas = schemas_dir()
    sets = [eco.schema_sets(schemas, family)[-1] for family in ("k8s", "kuberay", "istio")]
    found: list[dict[str, Any]] = eco.kubeconform(tool("kubeconform"), files, sets)
    return found


@pytest.fixture(scope="module")
def workdir() -> Any:
    os.environ.setdefault("MESHRAY_HELM", helm())
    with tempfile.TemporaryDirectory(prefix="meshray-fuzz-") as tmp:
        yield Path(tmp)


def render(workdir: Path, v: dict[str, Any], name: str = "values") -> list[dict[str, Any]]:
    values_file = workdir / f"{name}.yaml"
    # JSON (a subset of YAML): helm reads every string as a string, `y` and `123` included
    values_file.write_text(json.dumps(v))
    return [m.obj for m in render_manifests(
        RenderRequest(values_files=[values_file], namespace="ray"))]


def audit_errors(docs: list[dict[str, Any]]) -> list[str]:
    return [f.line() for f in audit([Manifest(d, f"render#{i}") for i, d in enumerate(docs)],
                                    namespace="ray") if f.severity == ERROR]


def write_render(workdir: Path, docs: list[dict[str, Any]], name: str) -> Path:
    path = workdir / f"{name}.render.yaml"
    # JSON documents: PyYAML would write a string such as 1e3 unquoted (a string in its YAML
    # 1.1), which go-yaml in kubeconform reads as a number
    path.write_text("".join(f"---\n{json.dumps(d)}\n" for d in docs))
    return path


def conform_problems(files: dict[Path, str]) -> list[str]:
    """kubeconform's complaints about the files, each with the values file that made it."""
    return [f"{r.get('kind')}/{r.get('name')}: {r.get('status')}: {r.get('msg')}\n"
            f"values:\n{files.get(Path(str(r.get('filename'))), '?')}"
            for r in kubeconform_problems(list(files))]


def test_valid_values_render_audit_and_conform(workdir: Path) -> None:
    """Render and audit each drawn values file (Hypothesis), then kubeconform every render in
    one run (a kubeconform start per example would double the time)."""
    renders: dict[Path, str] = {}

    def property_(v: dict[str, Any]) -> None:
        shown = yaml.safe_dump(v, sort_keys=False)
        docs = render(workdir, v)
        assert {"RayCluster", "Service"} <= {d["kind"] for d in docs}
        errors = audit_errors(docs)
        assert errors == [], shown + "\n".join(errors)
        renders[write_render(workdir, docs, f"example-{len(renders)}")] = shown

    def test(profile: settings) -> Any:  # one inner function: every pass has its database key
        return profile(given(v=values())(property_))

    passes = [test(DEEP)] if DEEP_EXAMPLES else [test(REPLAY), seed(SEED)(test(FRESH))]
    for run in passes:
        with contextlib.suppress(unittest.SkipTest):  # the replay pass when nothing is saved
            run()
    assert len(renders) >= (DEEP_EXAMPLES or CI_EXAMPLES) // 2  # the filters left enough
    assert conform_problems(renders) == []


def test_the_property_can_fail(workdir: Path) -> None:
    """The oracle is not vacuous: a render with a worker port dropped from the headless Service
    fails the audit, one with an unknown field fails kubeconform's strict schemas."""
    docs = render(workdir, {})
    assert audit_errors(docs) == []
    assert conform_problems({write_render(workdir, docs, "good"): "{}"}) == []
    svc = next(d for d in docs if d["kind"] == "Service")
    svc["spec"]["ports"] = [p for p in svc["spec"]["ports"] if p["port"] != 10002]
    assert any("[worker-port-missing]" in e for e in audit_errors(docs))
    docs = render(workdir, {})
    next(d for d in docs if d["kind"] == "RayCluster")["spec"]["headGroupSpec"]["replicaz"] = 1
    found = conform_problems({write_render(workdir, docs, "bad"): "{}"})
    assert len(found) == 1 and found[0].startswith("RayCluster/")


@pytest.mark.parametrize(("key", "v"), [
    ("group on", {"workerGroups": {"on": {}}}),
    ("group 123", {"workerGroups": {"123": {}}}),
    ("group 1e3", {"workerGroups": {"1e3": {}}}),
    ("cluster off", {"clusterName": "off"}),
])
def test_yaml_1_1_names_render_as_strings(workdir: Path, key: str, v: dict[str, Any]) -> None:
    """Schema-valid names YAML 1.1 reads as bool, null or a number: the chart quotes every
    cluster, release and group name it writes, so they render as strings."""
    assert not yaml11_string(key.split()[1])
    docs = render(workdir, v)
    assert audit_errors(docs) == []
    assert conform_problems({write_render(workdir, docs, "yaml11"): json.dumps(v)}) == []
