"""Fuzzing `meshray audit` with arbitrary YAML: it never crashes, exits 0, 1 or 2, and prints
the findings of every readable file.

Two generators (hypothesis): Kubernetes-shaped trees made of the keys the audit reads
(``spec``, ``rayStartParams``, ``selector``, ``rules``, ``networkPolicy``...) nested at random
with values of every YAML type; and the audit's own clean bases (tests/fixtures/audit/) and
the foreign corpus with random paths overwritten by such values, which reaches the deep
checks a random tree rarely gets to. Each example is written to a file and audited by the CLI
in-process (`--format json`), next to a file that cannot be read.

The properties, independent of what the audit finds: no internal error (the CLI turns an
exception into "internal error", exit 2); exit 2 exactly when some input could not be audited,
else 1 exactly when a finding is an error; and the findings printed for the readable file are
those it gets when audited alone (the unreadable one hides nothing).

Bounded and deterministic for the fast suite: a fixed seed, no example database, EXAMPLES
examples per generator (about a second). ``MESHRAY_FUZZ_EXAMPLES=N`` runs N instead.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
from pathlib import Path
from typing import Any

import yaml
from chart_support import FIXTURES as FIXTURES_ROOT
from hypothesis import HealthCheck, example, given, seed, settings
from hypothesis import strategies as st
from meshray.cli import main

FIXTURES = FIXTURES_ROOT


def _readable(path: Path) -> list[dict[str, Any]]:
    """The mappings of a fixture file; none for the corpus's deliberately broken ones."""
    try:
        return [d for d in yaml.safe_load_all(path.read_text()) if isinstance(d, dict)]
    except yaml.YAMLError:
        return []


BASES = [b for p in [*sorted((FIXTURES / "audit").glob("*.yaml")),
                     *sorted((FIXTURES / "foreign").glob("*.yaml"))] if (b := _readable(p))]
EXAMPLES = int(os.environ.get("MESHRAY_FUZZ_EXAMPLES") or 40)
SETTINGS = settings(max_examples=EXAMPLES, database=None, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
SEED = 20260526

# the keys the audit reads, at any depth (and a few it does not)
KEYS = ["apiVersion", "kind", "metadata", "name", "namespace", "labels", "annotations",
        "generateName", "ownerReferences", "uid", "controller", "spec", "status", "podIP",
        "rayVersion", "headGroupSpec", "workerGroupSpecs", "groupName", "numOfHosts",
        "rayStartParams", "template", "containers", "initContainers", "env", "value",
        "valueFrom", "fieldRef", "fieldPath", "ports", "containerPort", "port", "targetPort",
        "appProtocol", "protocol", "endPort", "selector", "matchLabels", "matchExpressions",
        "key", "operator", "values", "clusterIP", "publishNotReadyAddresses", "headService",
        "authOptions", "mode", "tlsOptions", "networkPolicy", "head", "worker", "workerGroups",
        "egressRules", "ingressRules", "to", "from", "ipBlock", "namespaceSelector",
        "podSelector", "policyTypes", "ingress", "egress", "rules", "source", "operation",
        "principals", "notPorts", "action", "targetRef", "when", "mtls", "portLevelMtls",
        "workloadSelector", "backend", "service", "number", "http", "paths", "parentRefs",
        "backendRefs", "hostnames", "gatewayClassName", "securityContext", "runAsUser",
        "capabilities", "add", "privileged", "volumes", "hostPath", "path", "sysctls",
        "serviceAccountName", "rayClusterSpec", "clusterSelector", "submissionMode",
        "submitterPodTemplate", "restartPolicy", "command", "args", "items", "x", ""]
KINDS = [("ray.io/v1", "RayCluster"), ("ray.io/v1", "RayJob"), ("ray.io/v1", "RayService"),
         ("v1", "Service"), ("v1", "Pod"), ("v1", "Namespace"), ("v1", "List"),
         ("security.istio.io/v1", "PeerAuthentication"),
         ("security.istio.io/v1", "AuthorizationPolicy"),
         ("networking.istio.io/v1", "Sidecar"), ("networking.k8s.io/v1", "Ingress"),
         ("networking.k8s.io/v1", "NetworkPolicy"), ("apps/v1", "Deployment"),
         ("batch/v1", "CronJob"), ("gateway.networking.k8s.io/v1", "Gateway"),
         ("gateway.networking.k8s.io/v1", "HTTPRoute"),
         ("gateway.networking.k8s.io/v1", "TLSRoute"),
         ("gateway.networking.k8s.io/v1beta1", "ReferenceGrant")]
TEXT = st.sampled_from(["", "true", "false", "6380", "10002", "0", "-1", "99999", "abc", "*",
                        "None", "ray", "demo", "STRICT", "DISABLE", "DenyAll", "${POD_IP}",
                        "$(hostname -I)", "a\\b", "ray.io/cluster", "headgroup", "token",
                        "grpc", "tls", "http", "ambient", "15012", "8265,10001", "\n"])
SCALARS = (st.none() | st.booleans() | st.integers(-5, 70000) | st.floats(allow_nan=False)
           | TEXT | st.text(max_size=8))
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3)
    | st.dictionaries(st.sampled_from(KEYS) | TEXT, inner, max_size=4),
    max_leaves=24)


@st.composite
def objects(draw: st.DrawFn) -> dict[str, Any]:
    """A Kubernetes-ish object: a known (or random) kind, maybe a name, a random spec."""
    api, kind = draw(st.sampled_from(KINDS))
    obj: dict[str, Any] = {"apiVersion": api, "kind": kind}
    meta = draw(st.dictionaries(st.sampled_from(["name", "namespace", "labels",
                                                 "annotations", "generateName"]),
                                VALUES, max_size=3))
    if draw(st.booleans()):
        meta["name"] = draw(st.sampled_from(["demo", "x", "demo-headless-svc", ""]))
    # one object in four has metadata of the wrong type
    obj["metadata"] = meta if draw(st.integers(0, 3)) else draw(VALUES)
    obj.update(draw(st.dictionaries(st.sampled_from(["spec", "items", "status"]), VALUES,
                                    max_size=2)))
    return obj


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path into a tree of mappings and lists."""
    out = [prefix] if prefix else []
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths(v, (*prefix, i))
    return out


@st.composite
def mutated_bases(draw: st.DrawFn) -> list[dict[str, Any]]:
    """A clean base (or corpus file) with 1-4 edits: a path overwritten by a random value,
    or a key the audit reads added to a mapping with a random value."""
    docs: list[dict[str, Any]] = json.loads(json.dumps(draw(st.sampled_from(BASES))))
    for _ in range(draw(st.integers(1, 4))):
        path = draw(st.sampled_from(_paths(docs)))
        node: Any = docs
        for step in path[:-1]:
            node = node[step]
        if draw(st.booleans()) or not isinstance(node[path[-1]], dict):
            node[path[-1]] = draw(VALUES)
        else:
            node[path[-1]][draw(st.sampled_from(KEYS))] = draw(VALUES)
    return docs


def audit_json(*files: Path) -> tuple[int, dict[str, Any], str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["audit", "--format", "json", *map(str, files)], out=out)
    assert "internal error" not in err.getvalue(), err.getvalue()  # an exception escaped
    return code, json.loads(out.getvalue()), err.getvalue()


def check(docs: list[Any], tmp: Path) -> None:
    """The properties of the module docstring, for one generated input."""
    good = tmp / "input.yaml"
    good.write_text(yaml.safe_dump_all(docs, allow_unicode=True), encoding="utf-8")
    alone_code, alone, alone_err = audit_json(good)
    assert "internal error" not in alone_err, alone_err
    assert alone_code in (0, 1, 2)
    has_error = any(f["severity"] == "error" for f in alone["findings"])
    assert alone_code == (2 if alone["errors"] else 1 if has_error else 0), (alone_code, alone)
    bad = tmp / "unreadable.yaml"
    bad.write_text("kind: [\n", encoding="utf-8")
    code, both, err = audit_json(good, bad)
    assert "internal error" not in err, err
    assert code == 2
    assert both["findings"] == alone["findings"]
    assert [e["source"] for e in both["errors"]][-1].startswith(str(bad))


@seed(SEED)
@SETTINGS
@given(st.lists(objects(), min_size=1, max_size=4))
# what the first runs found (each crashed the audit): metadata that is not a mapping on a kind
# the audit sorts late (is_ray_pod read its labels first), and a Ray Pod's env entry whose
# valueFrom is a list
@example([{"apiVersion": "ray.io/v1", "kind": "RayCluster", "metadata": None},
          {"apiVersion": "ray.io/v1", "kind": "RayService", "metadata": True}])
@example([{"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": "p", "labels": {"ray.io/cluster": "demo"}},
           "spec": {"containers": [{"args": ["ray start --head"],
                                    "env": [{"name": "X", "valueFrom": [1]}]}]}}])
def test_random_objects(docs: list[dict[str, Any]]) -> None:
    with _tmp() as tmp:
        check(docs, tmp)


@seed(SEED + 1)
@SETTINGS
@given(mutated_bases())
def test_mutated_bases(docs: list[dict[str, Any]]) -> None:
    with _tmp() as tmp:
        check(docs, tmp)


@seed(SEED + 2)
@settings(max_examples=max(EXAMPLES // 3, 10), database=None, deadline=None)
@given(st.lists(VALUES, min_size=1, max_size=3))
def test_random_documents(docs: list[Any]) -> None:
    """Any YAML at all at top level (lists, scalars, mappings without a kind)."""
    with _tmp() as tmp:
        check(docs, tmp)


@contextlib.contextmanager
def _tmp() -> Any:
    import tempfile

    with tempfile.TemporaryDirectory(prefix="meshray-fuzz-") as d:
        yield Path(d)
