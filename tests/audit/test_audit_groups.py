"""Every per-group check looks at every worker group, not only the first.

The other audit test modules break ``workerGroupSpecs[0]``; an audit that read only the first
worker group would pass them all. Here the bases (clean.yaml, hardened.yaml) get two more
worker groups, copies of the first (``gpu`` and ``mem``: same ports, so still clean), and each
case breaks the LAST one (index 2) or the middle one (index 1) with the edit the family
modules use on index 0. The negative control runs the same cases with the audit's model cut to
the head and the first worker group: every case must then fail.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest
from audit_support import Docs, base, cluster, hardened, run, svc
from meshray.audit import engine
from meshray.raymodel import Cluster

GroupEdit = Callable[[dict[str, Any], Docs], Any]  # (the group, all the documents)
# (check, severity, base, index of the group to break, edit of that group)
GroupCase = tuple[str, str, Callable[[], Docs], int, GroupEdit]


def three_groups(make: Callable[[], Docs]) -> Callable[[], Docs]:
    def build() -> Docs:
        docs = make()
        groups = cluster(docs)["spec"]["workerGroupSpecs"]
        for name in ("gpu", "mem"):
            g = copy.deepcopy(groups[0])
            g["groupName"] = name
            groups.append(g)
        return docs
    return build


CLEAN = three_groups(base)
HARD = three_groups(hardened)


def params(**kv: Any) -> GroupEdit:
    return lambda g, _: g["rayStartParams"].update(kv)


def drop(flag: str) -> GroupEdit:
    return lambda g, _: g["rayStartParams"].pop(flag)


def meta(g: dict[str, Any], part: str) -> dict[str, Any]:
    out: dict[str, Any] = g["template"].setdefault("metadata", {}).setdefault(part, {})
    return out


def pod_labels(**kv: str) -> GroupEdit:
    return lambda g, _: meta(g, "labels").update(kv)


def pod_annotations(**kv: str) -> GroupEdit:
    return lambda g, _: meta(g, "annotations").update(kv)


def container_security(**kv: Any) -> GroupEdit:
    return lambda g, _: g["template"]["spec"]["containers"][0]["securityContext"].update(kv)


def own_worker_ports(g: dict[str, Any], d: Docs) -> None:
    """The group gets its own worker ports 10006-10007, declared http (they are gRPC)."""
    g["rayStartParams"].update({"min-worker-port": "10006", "max-worker-port": "10007"})
    svc(d)["spec"]["ports"] += [{"name": f"p{p}", "port": p, "appProtocol": "http"}
                                for p in (10006, 10007)]


def tier_selector(g: dict[str, Any], d: Docs) -> None:
    """The Service selects tier: ray, which every group's pods carry but this one's."""
    svc(d)["spec"]["selector"]["tier"] = "ray"
    spec = cluster(d)["spec"]
    for other in [spec["headGroupSpec"], *spec["workerGroupSpecs"]]:
        if other is not g:
            meta(other, "labels")["tier"] = "ray"


def multi_host(g: dict[str, Any], d: Docs) -> None:
    g["numOfHosts"] = 2
    svc(d)["metadata"]["labels"].pop("ray.io/headless-worker-svc")


def default_account(g: dict[str, Any], d: Docs) -> None:
    """This group runs as the namespace's default account, which the policy also admits."""
    g["template"]["spec"].pop("serviceAccountName")
    policy = next(x for x in d if x["kind"] == "AuthorizationPolicy")
    policy["spec"]["rules"][0]["from"][0]["source"]["principals"].append(
        "cluster.local/ns/ray/sa/default")


def netpol_without_istiod(g: dict[str, Any], d: Docs) -> None:
    """istiod admitted to every group but this one, whose workerGroups entry replaces it."""
    istiod = {"to": [{"namespaceSelector": {"matchLabels": {
        "kubernetes.io/metadata.name": "istio-system"}}}], "ports": [{"port": 15012}]}
    cluster(d)["spec"]["networkPolicy"] = {
        "head": {"egressRules": [istiod]}, "worker": {"egressRules": [istiod]},
        "workerGroups": [{"groupName": g["groupName"], "egressRules": []}]}


CASES: list[GroupCase] = [
    ("port-not-pinned", "error", CLEAN, 2, drop("node-manager-port")),
    ("worker-range-not-pinned", "error", CLEAN, 2, drop("max-worker-port")),
    ("worker-range-large", "warning", CLEAN, 1, params(**{"max-worker-port": "19999"})),
    ("invalid-port", "error", CLEAN, 2, params(**{"object-manager-port": "abc"})),
    ("param-not-string", "error", CLEAN, 2, params(**{"num-cpus": 1})),
    ("params-not-mapping", "error", CLEAN, 2,
     lambda g, _: g.update(rayStartParams=["node-manager-port=6380"])),
    ("port-conflict", "error", CLEAN, 2, params(**{"metrics-export-port": "6380"})),
    ("port-missing", "error", CLEAN, 2, params(**{"object-manager-port": "6390"})),
    ("worker-port-missing", "error", CLEAN, 1, params(**{"max-worker-port": "10006"})),
    ("app-protocol-wrong", "error", CLEAN, 2, own_worker_ports),
    ("headless-label-missing", "error", CLEAN, 2, multi_host),
    ("group-not-selected", "error", CLEAN, 2, tier_selector),
    ("node-ip-missing", "error", CLEAN, 2, drop("node-ip-address")),
    ("node-ip-not-fqdn", "error", CLEAN, 2, params(**{"node-ip-address": "$POD_IP"})),
    ("node-ip-hostname-i", "error", CLEAN, 1, params(**{
        "node-ip-address": "$(hostname -I).demo-headless-svc.ray.svc.cluster.local"})),
    ("node-ip-env-missing", "error", CLEAN, 2,
     lambda g, _: g["template"]["spec"]["containers"][0].update(env=[])),
    ("flag-unused", "warning", CLEAN, 2, params(**{"gcs-server-port": "6379"})),
    ("mesh-capture-override", "error", HARD, 2, pod_annotations(**{
        "traffic.sidecar.istio.io/excludeInboundPorts": "6380"})),
    ("mesh-capture-override", "error", HARD, 1, pod_labels(**{
        "sidecar.istio.io/inject": "false"})),
    ("ambient-with-sidecar", "error", CLEAN, 2, pod_labels(**{
        "istio.io/dataplane-mode": "ambient", "sidecar.istio.io/inject": "true"})),
    ("pod-privileged", "error", HARD, 2, container_security(privileged=True)),
    ("pod-proxy-uid", "error", HARD, 2, container_security(runAsUser=1337)),
    ("identity-default-service-account", "error", HARD, 2, default_account),
    # a worker listening on 8265, which the policy leaves to the head's dashboard users
    ("authz-port-denied", "error", HARD, 2, params(**{"node-manager-port": "8265"})),
    ("kuberay-netpol-blocks-istiod", "error", HARD, 2, netpol_without_istiod),
]


def apply(docs: Docs, index: int, edit: GroupEdit) -> None:
    edit(cluster(docs)["spec"]["workerGroupSpecs"][index], docs)


def ids(cases: list[GroupCase]) -> list[str]:
    return [f"{c}-group{i}-{n}" for n, (c, _, _, i, _) in enumerate(cases)]


def broken_group_hits(case: GroupCase) -> list[Any]:
    """The case's findings of its check and severity after the edit (none before it)."""
    check, severity, make, index, edit = case
    docs = make()
    assert not [f for f in run(docs) if f.check == check], "the three-group base is clean"
    apply(docs, index, edit)
    return [f for f in run(docs) if f.check == check and f.severity == severity]


@pytest.mark.parametrize("case", CASES, ids=ids(CASES))
def test_a_later_group_is_checked(case: GroupCase) -> None:
    check, severity, _, index, _ = case
    hits = broken_group_hits(case)
    assert hits, f"{check} ({severity}) not reported for workerGroupSpecs[{index}]"
    name = ("cpu", "gpu", "mem")[index]
    # the finding points at that group: by its key, or by its name in the message
    assert any(f"workerGroupSpecs[{index}]" in f.key or f"group {name}" in f.message
               or f"groups {name}" in f.message or f"here: {name}" in f.message
               or "port 10006 (worker-port)" in f.message  # the ports only this group has
               for f in hits), [f.line() for f in hits]


def test_the_bases_are_clean() -> None:
    assert [f.line() for f in run(CLEAN())] == []
    assert [f.line() for f in run(HARD())] == []


def test_negative_control_an_audit_of_the_first_group_only(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Cut the model to the head and the first worker group, as an audit that read only
    ``workerGroupSpecs[0]`` would: every case above then goes unreported."""
    real = engine.cluster_from

    def first_only(obj: dict[str, Any], namespace: str, spec_key: str = "spec") -> Cluster:
        c = real(obj, namespace, spec_key)
        c.groups = c.groups[:2]
        return c

    monkeypatch.setattr(engine, "cluster_from", first_only)
    missed = [c for c in CASES if not broken_group_hits(c)]
    assert missed == CASES
