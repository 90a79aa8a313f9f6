"""meshray/live.py: what ``meshray audit --cluster`` reads, through a fake dynamic client.

The fake serves objects the way the API server lists them (items without apiVersion and
kind, filtered by namespace and label selector), answers discovery with the real client's
ResourceNotFoundError for a kind it does not serve and a list with the real ApiException for
one RBAC denies. The cluster is tests/fixtures/audit/hardened.yaml (RayCluster demo in
namespace ray, whose pods run as ServiceAccount demo-ray, which an ALLOW policy admits to the
GCS and raylets) plus, per test, other workloads with the ownerReferences their controllers
write (Kubernetes: a Deployment controls its ReplicaSets, a ReplicaSet and a Job their Pods,
a CronJob its Jobs; KubeRay v1.7.0: a RayJob its RayCluster and submitter Job, a RayCluster its
Pods). The oracle is the list of workloads the identity finding names, written per test.
"""

from __future__ import annotations

import copy
import re
from typing import Any

import pytest
import yaml
from chart_support import FIXTURES
from kubernetes.client.exceptions import ApiException
from kubernetes.dynamic.exceptions import ResourceNotFoundError
from meshray import live
from meshray.audit import Finding, audit
from meshray.manifests import Manifest

HARDENED: list[dict[str, Any]] = [d for d in yaml.safe_load_all(
    (FIXTURES / "audit" / "hardened.yaml").read_text()) if d]
NS = "ray"
SHARED = "identity-shared-service-account"
API = {"Pod": "v1", "Deployment": "apps/v1", "StatefulSet": "apps/v1", "DaemonSet": "apps/v1",
       "ReplicaSet": "apps/v1", "Job": "batch/v1", "CronJob": "batch/v1",
       "RayJob": "ray.io/v1", "RayService": "ray.io/v1"}


class FakeList:
    def __init__(self, items: list[dict[str, Any]]) -> None:
        self.items = items

    def to_dict(self) -> dict[str, Any]:
        return {"apiVersion": "v1", "kind": "List", "items": self.items}


class FakeResource:
    def __init__(self, objs: list[dict[str, Any]], denied: bool) -> None:
        self.objs, self.denied = objs, denied

    def get(self, namespace: str, label_selector: str | None = None,
            _request_timeout: int | None = None) -> FakeList:
        if self.denied:
            raise ApiException(status=403, reason="Forbidden")
        out = []
        for o in self.objs:
            labels = o["metadata"].get("labels") or {}
            # a selector is "key" or "key=value", as live.py once read Ray Pods
            key, _, value = (label_selector or "").partition("=")
            if o["metadata"].get("namespace") != namespace or (
                    key and (key not in labels or (value and labels[key] != value))):
                continue
            item = copy.deepcopy(o)
            del item["apiVersion"], item["kind"]  # list items carry neither
            out.append(item)
        return FakeList(out)


class FakeDynamic:
    """``DynamicClient``'s ``resources.get(api_version=, kind=).get(namespace=)``."""

    def __init__(self, objs: list[dict[str, Any]], absent: tuple[str, ...] = (),
                 denied: tuple[str, ...] = ()) -> None:
        self.objs, self.absent, self.denied = objs, absent, denied
        self.resources = self
        self.asked: list[str] = []

    def get(self, api_version: str, kind: str) -> FakeResource:
        self.asked.append(kind)
        if kind in self.absent:
            raise ResourceNotFoundError(f"No matches found for {{'kind': '{kind}'}}")
        return FakeResource([o for o in self.objs if (o["apiVersion"], o["kind"]) == (
            api_version, kind)], kind in self.denied)


def base() -> list[dict[str, Any]]:
    docs = copy.deepcopy(HARDENED)
    for i, d in enumerate(docs):
        d["metadata"]["uid"] = f"uid-{d['kind']}-{i}"
    return docs


def uid(docs: list[dict[str, Any]], kind: str, name: str) -> str:
    return str(next(d for d in docs if (d["kind"], d["metadata"]["name"]) == (kind, name))[
        "metadata"]["uid"])


def workload(kind: str, name: str, sa: str | None = "demo-ray",
             owner: tuple[str, str, str] | None = None) -> dict[str, Any]:
    """A ``kind`` named ``name`` in namespace ray whose pods run as ``sa``, controlled by
    ``owner`` (kind, name, uid) when given."""
    pod: dict[str, Any] = {"containers": [{"name": "main", "image": "busybox:1"}]}
    if sa is not None:
        pod["serviceAccountName"] = sa
    template = {"metadata": {"labels": {"app": name}}, "spec": pod}
    spec = {"Pod": pod, "Job": {"template": template},
            "CronJob": {"schedule": "@daily", "jobTemplate": {"spec": {"template": template}}},
            "RayJob": {"entrypoint": "python x.py", "submitterPodTemplate": template},
            }.get(kind, {"selector": {"matchLabels": {"app": name}}, "template": template})
    meta: dict[str, Any] = {"name": name, "namespace": NS, "uid": f"uid-{kind}-{name}"}
    if owner is not None:
        meta["ownerReferences"] = [{"apiVersion": API.get(owner[0], "ray.io/v1"),
                                    "kind": owner[0], "name": owner[1], "uid": owner[2],
                                    "controller": True, "blockOwnerDeletion": True}]
    return {"apiVersion": API[kind], "kind": kind, "metadata": meta, "spec": spec}


def chain(*links: tuple[str, str], sa: str | None = "demo-ray") -> list[dict[str, Any]]:
    """A controller and what it creates, each controlling the next, all running as ``sa``."""
    out: list[dict[str, Any]] = []
    for kind, name in links:
        owner = None if not out else (out[-1]["kind"], out[-1]["metadata"]["name"],
                                      out[-1]["metadata"]["uid"])
        out.append(workload(kind, name, sa, owner))
    return out


def ray_pod(docs: list[dict[str, Any]]) -> dict[str, Any]:
    """A running head Pod of RayCluster demo, as KubeRay creates it."""
    pod = workload("Pod", "demo-head-x7k2p", "demo-ray",
                   ("RayCluster", "demo", uid(docs, "RayCluster", "demo")))
    pod["metadata"]["labels"] = {"ray.io/cluster": "demo", "ray.io/node-type": "head"}
    return pod


def identity(objs: list[Manifest]) -> list[Finding]:
    return [f for f in audit(objs, namespace=NS) if f.check.startswith("identity-")]


def named(objs: list[Manifest]) -> set[str]:
    """The workloads the identity-shared finding on RayCluster demo names."""
    found = identity(objs)
    assert [(f.check, f.kind, f.name) for f in found] == [(SHARED, "RayCluster", "demo")], [
        f.line() for f in found]
    m = re.search(r"\(in the input: ([^)]*)\)", found[0].message)
    assert m, found[0].message
    return set(m.group(1).split(", "))


def raw(docs: list[dict[str, Any]]) -> list[Manifest]:
    """The objects as files would give them: nothing left out."""
    return [Manifest(d, f"test#{i}") for i, d in enumerate(docs)]


def read(docs: list[dict[str, Any]], **fake: tuple[str, ...]) -> list[Manifest]:
    return live.read_objects(FakeDynamic(docs, **fake), NS, "istio-system")


def test_base_reads_clean() -> None:
    docs = base()
    got = read(docs)
    assert {(m.kind, m.name) for m in got} == {
        (d["kind"], d["metadata"]["name"]) for d in docs if d["kind"] != "ServiceAccount"}
    assert all(m.obj["apiVersion"] == d["apiVersion"] for m in got for d in docs
               if (d["kind"], d["metadata"]["name"]) == (m.kind, m.name))
    assert identity(got) == []


def test_every_workload_kind_is_read() -> None:
    """Each kind the identity family judges is listed, and a workload of it running as
    demo-ray is named; the same workloads as another account are not (negative control)."""
    kinds = ("Pod", "Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "CronJob",
             "RayJob")
    docs = base() + [workload(k, f"w-{k.lower()}") for k in kinds] + [
        {**workload("Deployment", "w-rayservice"), "apiVersion": "ray.io/v1",
         "kind": "RayService", "spec": {"rayClusterConfig": {"headGroupSpec": {
             "rayStartParams": {}, "template": {"spec": {"serviceAccountName": "demo-ray"}}}}}}]
    assert named(read(docs)) == {f"{k}/w-{k.lower()}" for k in (*kinds, "RayService")}
    for d in docs[len(HARDENED):]:
        d["spec"] = {}  # no pod spec: the namespace's default account
    assert identity(read(docs)) == []


def test_a_controlled_workload_is_named_once_by_its_controller() -> None:
    """Deployment -> ReplicaSet -> Pod and CronJob -> Job -> Pod: only the controllers are
    named; an uncontrolled Pod and the Ray pods' own Pod (its RayCluster's) as before. The
    same objects unfiltered name every link (the negative control: the read does the work)."""
    docs = base()
    docs += chain(("Deployment", "app"), ("ReplicaSet", "app-7c9f"), ("Pod", "app-7c9f-q2x"))
    docs += chain(("CronJob", "nightly"), ("Job", "nightly-2903"), ("Pod", "nightly-2903-z"))
    docs += [workload("Pod", "debug"), ray_pod(docs)]
    got = read(docs)
    assert named(got) == {"Deployment/app", "CronJob/nightly", "Pod/debug"}
    assert ("Pod", "demo-head-x7k2p") in {(m.kind, m.name) for m in got}  # pod-* judge it
    assert named(raw(docs)) == {
        "Deployment/app", "ReplicaSet/app-7c9f", "Pod/app-7c9f-q2x", "CronJob/nightly",
        "Job/nightly-2903", "Pod/nightly-2903-z", "Pod/debug"}


def test_a_child_under_another_account_or_an_unread_controller_is_kept() -> None:
    """A Pod whose ReplicaSet's template names another account (a webhook changed it) is not
    what its controller runs; a ReplicaSet whose Deployment was not read has no stand-in."""
    docs = base()
    rs = workload("ReplicaSet", "app-7c9f", sa="app")
    docs += [rs, workload("Pod", "app-7c9f-q2x", owner=("ReplicaSet", "app-7c9f",
                                                        rs["metadata"]["uid"]))]
    docs.append(workload("ReplicaSet", "orphan-5d", owner=("Deployment", "orphan", "gone")))
    assert named(read(docs)) == {"Pod/app-7c9f-q2x", "ReplicaSet/orphan-5d"}
    rs["spec"]["template"]["spec"]["serviceAccountName"] = "demo-ray"  # the control
    assert named(read(docs)) == {"ReplicaSet/app-7c9f", "ReplicaSet/orphan-5d"}


def rayjob_owning_demo(docs: list[dict[str, Any]], submitter_sa: str | None) -> None:
    """RayCluster demo created by RayJob train (KubeRay: the RayJob controls it and its
    submitter Job, named as the RayJob, whose pods the Job controls)."""
    demo = next(d for d in docs if d["kind"] == "RayCluster")
    job = workload("RayJob", "train", sa=submitter_sa)
    job["spec"]["rayClusterSpec"] = copy.deepcopy(demo["spec"])
    demo["metadata"]["ownerReferences"] = [{
        "apiVersion": "ray.io/v1", "kind": "RayJob", "name": "train",
        "uid": job["metadata"]["uid"], "controller": True}]
    # the chain's RayJob link has job's uid, so the Job is job's
    docs += [job, *chain(("RayJob", "train"), ("Job", "train"), ("Pod", "train-abcde"),
                         sa=submitter_sa)[1:]]


def test_a_rayjob_and_its_raycluster_are_one_workload() -> None:
    """The RayJob's embedded spec is its RayCluster's: not another workload. Both are read
    (the audit judges the RayJob too) and audited as one cluster; the submitter Job and its Pod
    give way to the RayJob, which stands for them. Without the ownerReference the RayJob's
    cluster is another one running as demo-ray (negative control: the ownerReference does the
    work).
    A submitter running as the Ray account is reported once, by the rayjob family."""
    docs = base()
    rayjob_owning_demo(docs, submitter_sa=None)
    got = read(docs)
    assert identity(got) == []
    assert {("RayJob", "train"), ("RayCluster", "demo")} <= {(m.kind, m.name) for m in got}
    assert not {("Job", "train"), ("Pod", "train-abcde")} & {(m.kind, m.name) for m in got}
    assert identity(raw(docs)) == []
    demo = next(d for d in docs if d["kind"] == "RayCluster")
    del demo["metadata"]["ownerReferences"]
    assert named(read(docs)) == {"RayJob/train"}
    docs = base()
    rayjob_owning_demo(docs, submitter_sa="demo-ray")
    findings = audit(read(docs), namespace=NS)
    assert not [f for f in findings if f.check.startswith("identity-")]
    assert [(f.kind, f.name, f.key) for f in findings
            if f.check == "rayjob-submitter-ray-identity"] == [
        ("RayJob", "train", "spec.submitterPodTemplate.spec.serviceAccountName")]


def test_a_rayjob_s_live_raycluster_is_reported_once_as_the_rayjob() -> None:
    """A port missing from the headless Service: the RayCluster the RayJob controls is audited
    once, its findings on RayJob/train (keys into its rayClusterSpec); its running Pod is the
    RayJob's too. Without the ownerReference (the control) the same port is missing for
    RayCluster/demo, and for the RayJob's own spec, which selects nothing."""
    docs = base()
    rayjob_owning_demo(docs, submitter_sa="train-submitter")
    pod = ray_pod(docs)
    pod["spec"]["containers"][0]["securityContext"] = {"privileged": True}
    docs.append(pod)
    svc = next(d for d in docs if d["kind"] == "Service")
    svc["spec"]["ports"] = [p for p in svc["spec"]["ports"] if p["port"] != 6383]
    found = [f for f in audit(read(docs), namespace=NS) if f.check == "port-missing"]
    assert [(f.kind, f.name, f.key, f.value) for f in found] == [
        ("RayJob", "train", "spec.rayClusterSpec.headGroupSpec.rayStartParams."
         "dashboard-agent-grpc-port", 6383)]
    privileged = [f for f in audit(read(docs), namespace=NS) if f.check == "pod-privileged"]
    assert [(f.kind, f.name) for f in privileged] == [("Pod", "demo-head-x7k2p")]
    assert privileged[0].message.startswith(
        "Pod demo-head-x7k2p (head of RayJob/train (RayCluster demo))")
    demo = next(d for d in docs if d["kind"] == "RayCluster")
    del demo["metadata"]["ownerReferences"]
    found = [f for f in audit(read(docs), namespace=NS) if f.check in {
        "port-missing", "no-headless-service"}]
    assert {(f.check, f.kind, f.name) for f in found} == {
        ("port-missing", "RayCluster", "demo"), ("no-headless-service", "RayJob", "train")}


def test_a_rayjob_s_live_raycluster_is_what_runs() -> None:
    """The operator ignores later edits of rayClusterSpec: the live RayCluster is judged, not
    the RayJob's copy (an edit of the copy alone changes nothing; of the RayCluster, it does)."""
    docs = base()
    rayjob_owning_demo(docs, submitter_sa="train-submitter")
    job = next(d for d in docs if d["kind"] == "RayJob")
    job["spec"]["rayClusterSpec"]["headGroupSpec"]["rayStartParams"].pop("node-ip-address")
    assert not [f for f in audit(read(docs), namespace=NS) if f.check == "node-ip-missing"]
    demo = next(d for d in docs if d["kind"] == "RayCluster")
    demo["spec"]["headGroupSpec"]["rayStartParams"].pop("node-ip-address")
    found = [f for f in audit(read(docs), namespace=NS) if f.check == "node-ip-missing"]
    assert [(f.kind, f.name) for f in found] == [("RayJob", "train")]


def test_a_live_rayjob_s_cluster_must_exist() -> None:
    """clusterSelector names a RayCluster the read did not find: an error live (the operator
    requeues until it exists), a warning for the same objects given as files."""
    docs = base()
    docs += chain(("RayJob", "adhoc"), sa="adhoc-submitter")
    docs[-1]["spec"]["clusterSelector"] = {"ray.io/cluster": "gone"}

    def severities(objs: list[Manifest]) -> list[str]:
        return [f.severity for f in audit(objs, namespace=NS)
                if f.check == "rayjob-cluster-not-found"]
    assert severities(read(docs)) == ["error"]
    assert severities(raw(docs)) == ["warning"]
    docs[-1]["spec"]["clusterSelector"] = {"ray.io/cluster": "demo"}  # the control
    assert severities(read(docs)) == []


def test_a_rayjob_on_an_existing_cluster_stands_for_its_submitter() -> None:
    """A RayJob with a clusterSelector controls no RayCluster: it stays, for its Job."""
    docs = base()
    docs += chain(("RayJob", "adhoc"), ("Job", "adhoc"), ("Pod", "adhoc-xyz"))
    docs[-3]["spec"]["clusterSelector"] = {"ray.io/cluster": "demo"}
    assert named(read(docs)) == {"RayJob/adhoc"}


def test_pods_are_read_without_a_label_selector() -> None:
    docs = [*base(), workload("Pod", "debug")]
    assert "Pod/debug" in named(read(docs))
    # the fake honours selectors: a read of Ray Pods only would miss it (control)
    res = FakeDynamic(docs).get("v1", "Pod").get(namespace=NS, label_selector="ray.io/cluster")
    assert res.to_dict()["items"] == []


def test_absent_kinds_are_skipped() -> None:
    """No RayJob/RayService CRDs (nor Istio's, nor Gateway API's): the rest is read."""
    docs = [*base(), workload("Deployment", "app")]
    absent = ("RayJob", "RayService", "Sidecar", "Gateway", "HTTPRoute")
    fake = FakeDynamic(docs, absent=absent)
    got = live.read_objects(fake, NS, "istio-system")
    assert set(absent) <= set(fake.asked)
    assert named(got) == {"Deployment/app"}


@pytest.mark.parametrize("kind", ["Pod", "Deployment", "StatefulSet", "DaemonSet",
                                  "ReplicaSet", "Job", "CronJob", "RayJob", "RayService"])
def test_an_rbac_denial_stops_the_read(kind: str) -> None:
    """A list RBAC refuses is an error naming the kind and namespace, as for every kind
    live.py reads: a clean audit must not hide a kind it could not see."""
    plural = next(k.plural for k in live.KINDS if k.kind == kind)
    with pytest.raises(live.ClusterReadError,
                       match=rf"^listing {plural} in {NS}: 403 Forbidden$"):
        read(base(), denied=(kind,))
    read(base(), absent=(kind,))  # absent, not denied: no error (control)


def test_read_cluster_reads_the_kubeconfig_namespace(monkeypatch: pytest.MonkeyPatch) -> None:
    import kubernetes.dynamic

    docs = [*base(), workload("Deployment", "app")]
    monkeypatch.setattr(live, "_client", lambda kubeconfig, context: (object(), NS))
    monkeypatch.setattr(kubernetes.dynamic, "DynamicClient", lambda api: FakeDynamic(docs))
    objs, ns = live.read_cluster(None)
    assert ns == NS and named(objs) == {"Deployment/app"}
    assert "1 Deployment" in live.objects_summary(objs)
