"""meshray/audit/identity.py: the Ray identity an ALLOW policy admits, shared with others.

The base is tests/fixtures/audit/hardened.yaml, the chart's default render shape written by
hand: the Ray pods run as their own ServiceAccount demo-ray and an ALLOW policy admits
cluster.local/ns/ray/sa/demo-ray to every port but the dashboard and Ray Client. Each case
makes that identity shared (Kubernetes: a pod without serviceAccountName runs as its
namespace's `default`; a principal is the pod's namespace and ServiceAccount) while a policy
admits it, by Istio's matching of `principals` (exact, prefix*, *suffix). The clean variants
keep it the cluster's own, or admit nobody by it.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
from audit_support import ACK, Case, Docs, Mutation, base, case_ids, hardened, run
from audit_support import cluster as rc
from meshray.audit import Finding, registry
from meshray.audit import identity as family

DEFAULT = "identity-default-service-account"
SHARED = "identity-shared-service-account"
PRINCIPAL = "cluster.local/ns/ray/sa/demo-ray"


def hits(docs: Docs) -> list[Finding]:
    return [f for f in run(docs) if f.check in {DEFAULT, SHARED}]


def policy(d: Docs) -> dict[str, Any]:
    return next(o for o in d if o["kind"] == "AuthorizationPolicy")


def pod_specs(d: Docs) -> list[dict[str, Any]]:
    s = rc(d)["spec"]
    return [g["template"]["spec"] for g in [s["headGroupSpec"], *s["workerGroupSpecs"]]]


def run_as(sa: str | None) -> Mutation:
    """Every Ray pod runs as ``sa`` (None: no serviceAccountName), and the policy admits it."""
    def edit(d: Docs) -> None:
        for spec in pod_specs(d):
            spec.pop("serviceAccountName")
            if sa is not None:
                spec["serviceAccountName"] = sa
        admit(f"cluster.local/ns/ray/sa/{sa or 'default'}")(d)
    return edit


def admit(*principals: str) -> Mutation:
    def edit(d: Docs) -> None:
        policy(d)["spec"]["rules"][0]["from"][0]["source"]["principals"] = list(principals)
    return edit


def workload(kind: str, sa: str | None = "demo-ray", namespace: str = "ray",
             name: str = "batch") -> Mutation:
    """Another workload of ``kind`` running as ``sa`` (None: names no ServiceAccount)."""
    pod: dict[str, Any] = {"containers": [{"name": "main", "image": "busybox:1"}]}
    if sa is not None:
        pod["serviceAccountName"] = sa
    template = {"metadata": {"labels": {"app": name}}, "spec": pod}
    api, spec = {
        "Pod": ("v1", pod),
        "Deployment": ("apps/v1", {"selector": {"matchLabels": {"app": name}},
                                   "template": template}),
        "StatefulSet": ("apps/v1", {"serviceName": name, "template": template,
                                    "selector": {"matchLabels": {"app": name}}}),
        "DaemonSet": ("apps/v1", {"selector": {"matchLabels": {"app": name}},
                                  "template": template}),
        "ReplicaSet": ("apps/v1", {"selector": {"matchLabels": {"app": name}},
                                   "template": template}),
        "Job": ("batch/v1", {"template": template}),
        "CronJob": ("batch/v1", {"schedule": "* * * * *",
                                 "jobTemplate": {"spec": {"template": template}}}),
        "RayJob": ("ray.io/v1", {"entrypoint": "python x.py", "submitterPodTemplate": template}),
        "RayService": ("ray.io/v1", {"rayClusterConfig": {"headGroupSpec": {
            "rayStartParams": {}, "template": template}}}),
    }[kind]
    obj = {"apiVersion": api, "kind": kind, "metadata": {"name": name, "namespace": namespace},
           "spec": spec}
    return lambda d: d.append(obj)


def acknowledge(ids: str) -> Mutation:
    return lambda d: rc(d)["metadata"].setdefault("annotations", {}).update({ACK: ids})


def both(*mutations: Mutation) -> Mutation:
    return lambda d: [m(d) for m in mutations]


CASES: list[Case] = [
    # no serviceAccountName: the namespace's default, which every pod naming none runs as
    (DEFAULT, "error", run_as(None)),
    (DEFAULT, "error", run_as("default")),
    (DEFAULT, "error", run_as("")),
    # the chart's own ServiceAccount reused by another workload of the namespace
    *[(SHARED, "error", workload(kind)) for kind in (
        "Pod", "Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "CronJob",
        "RayJob", "RayService")],
    # the deprecated field name counts the same
    (SHARED, "error", lambda d: d.append({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "old", "namespace": "ray"},
        "spec": {"serviceAccount": "demo-ray", "containers": []}})),
    # another RayCluster (its running Pods stand for it in a live audit)
    (SHARED, "error", lambda d: d.append({**copy.deepcopy(rc(d)),
                                          "metadata": {"name": "other", "namespace": "ray"}})),
    # Istio's wildcards: a prefix naming the namespace, a suffix naming the account
    (SHARED, "error", both(admit("cluster.local/ns/ray/*"), workload("Deployment"))),
    (SHARED, "error", both(admit("*/sa/demo-ray"), workload("Deployment"))),
    # another trust domain in the policy: the audit cannot see the mesh's
    (SHARED, "error", both(admit("example.org/ns/ray/sa/demo-ray"), workload("Job"))),
    # a RayJob's default submitter Job names no ServiceAccount (KubeRay common/job.go)
    (DEFAULT, "error", both(run_as(None), lambda d: d.append({
        "apiVersion": "ray.io/v1", "kind": "RayJob",
        "metadata": {"name": "nightly", "namespace": "ray"},
        "spec": {"entrypoint": "python x.py", "clusterSelector": {"ray.io/cluster": "demo"}}}))),
]


def assert_triggers(check: str, severity: str, mutate: Mutation) -> Finding:
    docs = hardened()
    assert not hits(docs)
    mutate(docs)
    found = hits(docs)
    assert [(f.check, f.severity) for f in found] == [(check, severity)], [
        f.line() for f in found]
    f = found[0]
    assert (f.kind, f.name, f.key) == ("RayCluster", "demo",
                                       "spec.headGroupSpec.template.spec.serviceAccountName")
    assert "admitted" in f.message and "GCS and raylets" in f.message and f.fix
    return f


@pytest.mark.parametrize(("check", "severity", "mutate"), CASES, ids=case_ids(CASES))
def test_check_triggers(check: str, severity: str, mutate: Mutation) -> None:
    assert_triggers(check, severity, mutate)


@pytest.mark.parametrize(("check", "severity", "mutate"), CASES, ids=case_ids(CASES))
def test_acknowledged_is_a_warning(check: str, severity: str, mutate: Mutation) -> None:
    f = assert_triggers(check, "warning", both(mutate, acknowledge("shared-identity")))
    assert "acknowledged" in f.message and "shared-identity" in f.message


def test_another_acknowledgement_does_not_count() -> None:
    assert_triggers(DEFAULT, "error", both(run_as(None),
                                           acknowledge("mesh-capture,unrestricted-pods")))


def test_messages_name_the_principal_and_who_shares_it() -> None:
    f = assert_triggers(SHARED, "error", both(workload("Deployment", name="api"),
                                              workload("CronJob", name="report")))
    assert f.value == PRINCIPAL
    assert f.message == (
        "the head group and worker group cpu run as ServiceAccount demo-ray; "
        f"AuthorizationPolicy demo-ray admits that principal, {PRINCIPAL}, to the GCS and "
        "raylets, where a caller runs code on the cluster, and other workloads run as "
        "demo-ray too (in the input: Deployment/api, CronJob/report): they are admitted as well")
    g = assert_triggers(DEFAULT, "error", both(run_as(None), workload("Job", sa=None)))
    assert g.value == "cluster.local/ns/ray/sa/default"
    assert "namespace ray's default ServiceAccount" in g.message
    assert "every Pod of namespace ray that names no other ServiceAccount is admitted" in (
        g.message)
    assert "(in the input: Job/batch)" in g.message
    # groups with different accounts: one finding per account, naming only its groups
    h = assert_triggers(SHARED, "error", both(
        lambda d: pod_specs(d)[1].update(serviceAccountName="worker-sa"), workload("Job")))
    assert h.message.startswith("the head group runs as ServiceAccount demo-ray; ")


CLEAN_VARIANTS: list[tuple[str, Mutation]] = [
    ("another namespace's workload", workload("Deployment", namespace="other")),
    ("another ServiceAccount", workload("Deployment", sa="api")),
    ("a workload naming none, Ray's own", workload("Deployment", sa=None)),
    # the cluster's own running Pods are not someone else
    ("its own Pods", lambda d: d.append({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "demo-head-x", "namespace": "ray",
                     "labels": {"ray.io/cluster": "demo", "ray.io/node-type": "head"}},
        "spec": {"serviceAccountName": "demo-ray", "containers": [{
            "name": "ray-head", "command": ["/bin/bash", "-c", "--"],
            "args": ["ray start --head --port=6379 --block"]}]}})),
]


@pytest.mark.parametrize(("name", "mutate"), CLEAN_VARIANTS, ids=[n for n, _ in CLEAN_VARIANTS])
def test_clean_variants(name: str, mutate: Mutation) -> None:
    docs = hardened()
    mutate(docs)
    assert hits(docs) == []


# shared identities that no ALLOW policy admits by name: nothing for this family
NOT_ADMITTED: list[tuple[str, Mutation]] = [
    ("no policy at all", both(run_as(None), lambda d: d.remove(policy(d)))),
    ("the policy admits another account", both(workload("Deployment"),
                                               admit("cluster.local/ns/ray/sa/api"))),
    ("the policy admits another namespace's", both(run_as(None),
                                                   admit("cluster.local/ns/x/sa/default"))),
    # any peer: the authz family's finding (authz-any-source), not a shared identity
    ("principals *", both(workload("Deployment"), admit("*"))),
    ("notPrincipals excludes it", both(workload("Deployment"), lambda d: policy(d)["spec"][
        "rules"][0]["from"][0]["source"].update(notPrincipals=[PRINCIPAL]))),
    ("a when condition excludes it", both(workload("Deployment"), lambda d: policy(d)["spec"][
        "rules"][0].update(when=[{"key": "source.principal",
                                  "values": ["cluster.local/ns/ray/sa/api"]}]))),
    ("a DENY policy", both(workload("Deployment"),
                           lambda d: policy(d)["spec"].update(action="DENY"))),
    ("the policy selects other pods", both(workload("Deployment"), lambda d: policy(d)["spec"][
        "selector"]["matchLabels"].update({"ray.io/cluster": "other"}))),
    ("only to the dashboard", both(workload("Deployment"), lambda d: policy(d)["spec"]["rules"][
        0].update(to=[{"operation": {"ports": ["8265"]}}]))),
]


@pytest.mark.parametrize(("name", "mutate"), NOT_ADMITTED, ids=[n for n, _ in NOT_ADMITTED])
def test_not_admitted_is_not_reported(name: str, mutate: Mutation) -> None:
    docs = hardened()
    mutate(docs)
    assert hits(docs) == []


def test_samples_without_a_policy_are_clean() -> None:
    """clean.yaml's pods run as default (no serviceAccountName), as KubeRay's samples and the
    guide's do; without a policy that admits that identity there is nothing to report."""
    docs = base()
    workload("Deployment", sa=None)(docs)
    assert hits(docs) == []


def test_negative_control_without_the_check(monkeypatch: pytest.MonkeyPatch) -> None:
    """With the family taken out of the run, the triggering cases fail: they test it."""
    monkeypatch.setattr(registry, "ACROSS_INPUT",
                        tuple(c for c in registry.ACROSS_INPUT if c is not family.check))
    for check, severity, mutate in CASES:
        with pytest.raises(AssertionError):
            assert_triggers(check, severity, mutate)
