"""Shared support of the audit tests (no tests here): the clean base and its editors.

The base is tests/fixtures/audit/clean.yaml, written by hand from REFERENCE.md; each case in
the tests/audit/test_audit_<family>.py modules applies one small edit that breaks exactly the rule
the check guards (the oracle is the edit, not the audit code), and states the severity the
rule deserves. The test modules mirror the check modules of meshray/audit/.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import yaml
from chart_support import FIXTURES as FIXTURES_ROOT
from meshray.audit import Finding, audit
from meshray.manifests import Manifest

FIXTURES = FIXTURES_ROOT / "audit"
BASE: list[dict[str, Any]] = [
    d for d in yaml.safe_load_all((FIXTURES / "clean.yaml").read_text()) if d
]
# The chart's default render shape, written by hand: restricted pods, the cluster's own
# ServiceAccount and policy (the capture, identity and restricted families edit it).
HARDENED: list[dict[str, Any]] = [
    d for d in yaml.safe_load_all((FIXTURES / "hardened.yaml").read_text()) if d
]
# The RayCluster annotation that acknowledges a risk (its findings become warnings).
ACK = "meshray.io/acknowledged"

Docs = list[dict[str, Any]]
# (check, severity, mutation that must trigger it)
Mutation = Callable[[Docs], Any]
Case = tuple[str, str, Mutation]


def base() -> Docs:
    return copy.deepcopy(BASE)


def hardened() -> Docs:
    return copy.deepcopy(HARDENED)


def run(docs: Docs) -> list[Finding]:
    return audit([Manifest(d, f"test#{i}") for i, d in enumerate(docs)])


def of(docs: Docs, kind: str, name: str | None = None) -> dict[str, Any]:
    return next(d for d in docs if d["kind"] == kind and (name is None
                                                           or d["metadata"]["name"] == name))


def cluster(d: Docs) -> dict[str, Any]:
    return of(d, "RayCluster")


def head(d: Docs) -> dict[str, Any]:
    return cluster(d)["spec"]["headGroupSpec"]


def worker(d: Docs) -> dict[str, Any]:
    return cluster(d)["spec"]["workerGroupSpecs"][0]


def svc(d: Docs) -> dict[str, Any]:
    return of(d, "Service")


def svc_port(d: Docs, port: int) -> dict[str, Any]:
    return next(p for p in svc(d)["spec"]["ports"] if p["port"] == port)


def drop_port(d: Docs, port: int) -> None:
    svc(d)["spec"]["ports"] = [p for p in svc(d)["spec"]["ports"] if p["port"] != port]


def pa(d: Docs) -> dict[str, Any]:
    return of(d, "PeerAuthentication")


def ingress(d: Docs) -> dict[str, Any]:
    return of(d, "Ingress")


def backend(d: Docs) -> dict[str, Any]:
    b: dict[str, Any] = ingress(d)["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    return b


def both(fn: Callable[[dict[str, Any]], None]) -> Callable[[Docs], None]:
    return lambda d: (fn(head(d)), fn(worker(d)))  # type: ignore[func-returns-value]


def set_env(group: dict[str, Any], name: str, value: str) -> None:
    group["template"]["spec"]["containers"][0]["env"].append({"name": name, "value": value})


def case_ids(cases: list[Case]) -> list[str]:
    return [f"{c}-{i}" for i, (c, _, _) in enumerate(cases)]


def assert_triggers(check: str, severity: str, mutate: Mutation) -> None:
    """The clean base has no `check` finding; after the edit it has, all of `severity`."""
    docs = base()
    assert not [f for f in run(docs) if f.check == check]  # clean before
    mutate(docs)
    hits = [f for f in run(docs) if f.check == check]
    assert hits, f"{check} not reported"
    assert {f.severity for f in hits} == {severity}
    for f in hits:
        assert f.kind and f.key and f.message and f.fix
        # only the finding about a missing name has none to give (the line says so)
        assert f.name or check == "object-unnamed"
        assert f.line().startswith(f"{severity}: {f.kind}/{f.name or '(no metadata.name)'} ")


def assert_clean(mutate: Mutation) -> None:
    """A legal variation of the base: no finding at all."""
    docs = base()
    mutate(docs)
    assert [f.line() for f in run(docs)] == []
