"""meshray/audit/rayjob.py, and a RayJob's cluster judged by every family like a RayCluster.

The bases are the chart's renders (once per module): values-examples/rayjob.yaml (a RayJob
with its own cluster), the same with values-examples/multi-group.yaml (two worker groups), and
values-examples/rayjob-existing-cluster.yaml next to the RayCluster release it runs on
(raycluster-shared, whose policy admits the submitter through dashboardPrincipals, as the
example's comment says). Each audits clean; each case then breaks one invariant the KubeRay
operator's source sets (/work/notes/rayjob-kuberay.md: the job's RayCluster is named
<rayjob>-<5 random>, so its Pods never carry ray.io/cluster: <rayjob>; clusterSelector is a
GET by name; the submitter is a Job's Pod built from submitterPodTemplate as written) or Istio
does (a sidecar that is not native keeps a Job's Pod running, istio#11045; an ALLOW policy
denies what no rule admits), and asserts the finding's check, severity and that it names the
RayJob. The oracle is the edit, not the audit's code.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest
from chart_support import CHART, EXAMPLES_DIR
from meshray.audit import Finding, audit
from meshray.audit import rayjob as family
from meshray.manifests import Manifest
from meshray.render import RenderRequest, render

NS = "jobs"
JOB = "rayjob-sample"  # clusterName of values-examples/rayjob.yaml
MULTI = "ray-multi"  # clusterName of values-examples/multi-group.yaml
ON_CLUSTER = "rayjob-on-cluster"  # clusterName of values-examples/rayjob-existing-cluster.yaml
SHARED = "raycluster-shared"  # the cluster rayjob-existing-cluster.yaml selects
SUBMITTER_SA = f"{JOB}-submitter"
RAY_SA = f"{JOB}-ray"

Docs = list[dict[str, Any]]
Edit = Callable[[Docs], Any]


def _render(*files: str, sets: tuple[str, ...] = ()) -> Docs:
    return render(RenderRequest(values_files=[EXAMPLES_DIR / f for f in files],
                                set_values=sets, namespace=NS, chart=CHART))


@pytest.fixture(scope="module")
def renders() -> dict[str, Docs]:
    return {
        "job": _render("rayjob.yaml"),
        "multi": _render("rayjob.yaml", "multi-group.yaml"),
        "existing": _render("rayjob-existing-cluster.yaml"),
        "shared": _render(sets=(
            f"clusterName={SHARED}",
            "mesh.authorizationPolicy.dashboardPrincipals="
            f"{{cluster.local/ns/{NS}/sa/{ON_CLUSTER}-submitter}}")),
    }


def run(docs: Docs, source: str = "test") -> list[Finding]:
    return audit([Manifest(d, f"{source}#{i}") for i, d in enumerate(docs)], namespace=NS)


def of(docs: Docs, kind: str, name: str | None = None) -> dict[str, Any]:
    return next(d for d in docs if d["kind"] == kind and (name is None
                                                           or d["metadata"]["name"] == name))


def job(d: Docs) -> dict[str, Any]:
    return of(d, "RayJob")


def cluster_spec(d: Docs) -> dict[str, Any]:
    return dict(job(d)["spec"]["rayClusterSpec"])


def submitter(d: Docs) -> dict[str, Any]:
    return dict(job(d)["spec"]["submitterPodTemplate"])


def headless(d: Docs) -> dict[str, Any]:
    return next(o for o in d if o["kind"] == "Service" and o["spec"].get("clusterIP") == "None")


def policy(d: Docs) -> dict[str, Any]:
    return of(d, "AuthorizationPolicy")


def submitter_rule(d: Docs) -> dict[str, Any]:
    return next(r for r in policy(d)["spec"]["rules"]
                if any("submitter" in p for f in r["from"] for p in f["source"]["principals"]))


def hits(found: list[Finding], check: str) -> list[Finding]:
    return [f for f in found if f.check == check]


def names_job(f: Finding, name: str = JOB) -> bool:
    """The finding is on RayJob/<name>, or its message names it."""
    return (f.kind, f.name) == ("RayJob", name) or f"RayJob/{name}" in f.message


# ------------------------------------------------------------------------------ clean bases


def test_the_rayjob_example_audits_clean(renders: dict[str, Docs]) -> None:
    docs = renders["job"]
    assert {d["kind"] for d in docs} >= {"RayJob", "Service", "AuthorizationPolicy", "Sidecar"}
    assert run(docs) == []


def test_two_worker_groups_audit_clean(renders: dict[str, Docs]) -> None:
    assert [g["groupName"] for g in cluster_spec(renders["multi"])["workerGroupSpecs"]] == [
        "cpu", "highmem"]
    assert run(renders["multi"]) == []


def test_the_existing_cluster_example_audits_clean(renders: dict[str, Docs]) -> None:
    """Alone, the cluster it names is not in the input (one warning); with the cluster's
    release that admits its submitter, nothing."""
    alone = run(renders["existing"])
    assert [(f.check, f.severity, f.kind, f.name, f.value) for f in alone] == [
        ("rayjob-cluster-not-found", "warning", "RayJob", ON_CLUSTER, SHARED)]
    assert run(renders["shared"]) == []
    assert run(renders["existing"] + renders["shared"]) == []


# ------------------------------------------------------- the job's cluster, named the RayJob


def base(renders: dict[str, Docs], name: str = "job") -> Docs:
    return copy.deepcopy(renders[name])


def broken(renders: dict[str, Docs], edit: Edit, name: str = "job") -> list[Finding]:
    docs = base(renders, name)
    edit(docs)
    return run(docs)


def select_job_name(kind: str) -> Edit:
    """The object of ``kind`` selects the RayJob's name as ray.io/cluster."""
    def edit(d: Docs) -> None:
        for o in d:
            if o["kind"] != kind:
                continue
            spec = o["spec"]
            if kind == "Service":
                sel = spec["selector"]
            elif kind == "Sidecar":
                sel = spec["workloadSelector"]["labels"]
            else:
                sel = spec["selector"]["matchLabels"]
            sel.pop("meshray.io/cluster")
            sel["ray.io/cluster"] = JOB
    return edit


@pytest.mark.parametrize("kind", ["Service", "AuthorizationPolicy", "PeerAuthentication",
                                  "Sidecar"])
def test_selecting_the_rayjob_name_selects_none_of_its_pods(renders: dict[str, Docs],
                                                           kind: str) -> None:
    found = broken(renders, select_job_name(kind))
    got = hits(found, "rayjob-selects-job-name")
    assert got and {(f.kind, f.severity) for f in got} == {(kind, "error")}
    for f in got:
        assert f.key.endswith(".ray.io/cluster") and f.value == JOB
        assert names_job(f) and "selects none of the job's Pods" in f.message
        assert f"meshray.io/cluster: {JOB}" in f.fix
    assert not hits(found, "peerauth-no-match")  # said once, by the rayjob family
    if kind == "Service":
        # the cluster then has no headless Service: said on the RayJob, naming the Service
        (gone,) = hits(found, "no-headless-service")
        assert (gone.kind, gone.name) == ("RayJob", JOB) and "ray.io/cluster: " in gone.message


def test_a_raycluster_named_like_the_job_is_what_the_selector_means(
        renders: dict[str, Docs]) -> None:
    """Control: with a RayCluster of the RayJob's name in the input, the selector picks its
    Pods, and only the job's cluster misses its headless Service."""
    def edit(d: Docs) -> None:
        select_job_name("Service")(d)
        d.append({"apiVersion": "ray.io/v1", "kind": "RayCluster",
                  "metadata": {"name": JOB, "namespace": NS},
                  "spec": copy.deepcopy(cluster_spec(d))})
    found = broken(renders, edit)
    assert not hits(found, "rayjob-selects-job-name")
    assert [(f.kind, f.name) for f in hits(found, "no-headless-service")] == [("RayJob", JOB)]


def test_a_worker_port_missing_from_the_service(renders: dict[str, Docs]) -> None:
    def edit(d: Docs) -> None:
        svc = headless(d)
        svc["spec"]["ports"] = [p for p in svc["spec"]["ports"] if p["port"] != 10051]
    found = broken(renders, edit)
    (f,) = hits(found, "worker-port-missing")
    assert (f.severity, f.kind, f.name, f.value) == ("error", "RayJob", JOB, "10051")
    assert f.key.startswith("spec.rayClusterSpec.")


def test_only_the_second_of_two_worker_groups_is_broken(renders: dict[str, Docs]) -> None:
    """multi-group: the highmem group (the second) pins another node-manager-port and drops
    the cluster's pod-template label; the findings name it, and not the cpu group."""
    def edit(d: Docs) -> None:
        second = cluster_spec(d)["workerGroupSpecs"][1]
        second["rayStartParams"]["node-manager-port"] = "6390"
        second["template"]["metadata"]["labels"].pop("meshray.io/cluster")
    found = broken(renders, edit, "multi")
    (missing,) = hits(found, "port-missing")
    assert (missing.severity, missing.kind, missing.name, missing.value) == (
        "error", "RayJob", MULTI, 6390)
    assert missing.key == "spec.rayClusterSpec.workerGroupSpecs[1].rayStartParams.node-manager-port"
    assert "groups: highmem)" in missing.message
    (unselected,) = hits(found, "group-not-selected")
    assert unselected.kind == "Service" and "group highmem of RayJob/" + MULTI in (
        unselected.message)
    assert "meshray.io/cluster: " + MULTI in unselected.fix
    assert not [f for f in found if "group cpu" in f.message or "groups: cpu" in f.message]


@pytest.mark.parametrize(("check", "edit", "key"), [
    # node-ip-address under another Service than the one selecting the pods
    ("node-ip-not-fqdn", lambda d: cluster_spec(d)["headGroupSpec"]["rayStartParams"].update(
        {"node-ip-address": "${MESHRAY_POD_IP//[.:]/-}.other-svc.jobs.svc.cluster.local"}),
     "spec.rayClusterSpec.headGroupSpec.rayStartParams.node-ip-address"),
    # a privileged Ray container
    ("pod-privileged", lambda d: cluster_spec(d)["headGroupSpec"]["template"]["spec"][
        "containers"][0]["securityContext"].update({"privileged": True}),
     "spec.rayClusterSpec.headGroupSpec.template.spec.containers[0].securityContext.privileged"),
    # an inbound port taken out of the sidecar
    ("mesh-capture-override", lambda d: cluster_spec(d)["workerGroupSpecs"][0]["template"][
        "metadata"]["annotations"].update(
        {"traffic.sidecar.istio.io/excludeInboundPorts": "6380"}),
     "spec.rayClusterSpec.workerGroupSpecs[0].template.metadata.annotations."
     "traffic.sidecar.istio.io/excludeInboundPorts"),
    # the Ray identity shared with another workload while the policy admits it
    ("identity-shared-service-account", lambda d: d.append({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "app",
                                                                   "namespace": NS},
        "spec": {"template": {"spec": {"serviceAccountName": RAY_SA, "containers": []}}}}),
     "spec.rayClusterSpec.headGroupSpec.template.spec.serviceAccountName"),
])
def test_the_cluster_families_report_on_the_rayjob(renders: dict[str, Docs], check: str,
                                                   edit: Edit, key: str) -> None:
    found = hits(broken(renders, edit), check)
    assert found and all((f.severity, f.kind, f.name) == ("error", "RayJob", JOB)
                         for f in found), [f.line() for f in found]
    assert key in {f.key for f in found}


def test_the_rayjob_acknowledges_a_risk(renders: dict[str, Docs]) -> None:
    """The chart writes meshray.io/acknowledged on the RayJob: its findings become warnings."""
    def edit(d: Docs) -> None:
        cluster_spec(d)["headGroupSpec"]["template"]["metadata"]["annotations"][
            "traffic.sidecar.istio.io/excludeInboundPorts"] = "6380"
        job(d)["metadata"]["annotations"]["meshray.io/acknowledged"] = "mesh-capture"
    (f,) = hits(broken(renders, edit), "mesh-capture-override")
    assert f.severity == "warning" and f"RayJob/{JOB} has meshray.io/acknowledged" in f.message


def test_the_head_service_needs_a_port_named_dashboard(renders: dict[str, Docs]) -> None:
    def edit(d: Docs) -> None:
        for p in cluster_spec(d)["headGroupSpec"]["headService"]["spec"]["ports"]:
            if p["name"] == "dashboard":
                p["name"] = "http-dashboard"
    (f,) = hits(broken(renders, edit), "rayjob-dashboard-port-missing")
    assert (f.severity, f.kind, f.name) == ("error", "RayJob", JOB)
    assert "http-dashboard:8265" in f.message and "Initializing" in f.message


def test_no_cluster_at_all(renders: dict[str, Docs]) -> None:
    (f,) = hits(broken(renders, lambda d: job(d)["spec"].pop("rayClusterSpec")),
                "rayjob-no-cluster")
    assert (f.severity, f.kind, f.name) == ("error", "RayJob", JOB)


# ------------------------------------------------------------------------------ submitter


def test_the_submitter_needs_a_native_sidecar(renders: dict[str, Docs]) -> None:
    def edit(d: Docs) -> None:
        submitter(d)["metadata"]["annotations"].pop("sidecar.istio.io/nativeSidecar")
    (f,) = hits(broken(renders, edit), "rayjob-submitter-native-sidecar")
    assert (f.severity, f.kind, f.name) == ("error", "RayJob", JOB)
    assert "istio#11045" in f.message


@pytest.mark.parametrize(("namespace_labels", "severity"), [
    (None, "warning"),  # injection unknown: the Ray pods run with a sidecar
    ({"istio-injection": "enabled"}, "error"),
    ({"istio.io/rev": "1-24"}, "error"),
    ({"istio-injection": "disabled"}, None),
    ({}, None),
])
def test_namespace_injection_decides_for_an_unlabelled_submitter(
        renders: dict[str, Docs], namespace_labels: dict[str, str] | None,
        severity: str | None) -> None:
    def edit(d: Docs) -> None:
        meta = submitter(d)["metadata"]
        meta["annotations"].pop("sidecar.istio.io/nativeSidecar")
        meta["labels"].pop("sidecar.istio.io/inject")
        if namespace_labels is not None:
            d.append({"apiVersion": "v1", "kind": "Namespace",
                      "metadata": {"name": NS, "labels": namespace_labels}})
    found = hits(broken(renders, edit), "rayjob-submitter-native-sidecar")
    assert [f.severity for f in found] == ([severity] if severity else [])
    assert all(names_job(f) for f in found)


def test_an_ambient_submitter_needs_no_native_sidecar(renders: dict[str, Docs]) -> None:
    def edit(d: Docs) -> None:
        meta = submitter(d)["metadata"]
        meta["annotations"].pop("sidecar.istio.io/nativeSidecar")
        meta["labels"].pop("sidecar.istio.io/inject")
        meta["labels"]["istio.io/dataplane-mode"] = "ambient"
    assert not hits(broken(renders, edit), "rayjob-submitter-native-sidecar")


def test_the_policy_must_admit_the_submitter(renders: dict[str, Docs]) -> None:
    def edit(d: Docs) -> None:
        policy(d)["spec"]["rules"].remove(submitter_rule(d))
    (f,) = hits(broken(renders, edit), "rayjob-submitter-denied")
    principal = f"cluster.local/ns/{NS}/sa/{SUBMITTER_SA}"
    assert (f.severity, f.kind, f.name, f.value) == ("error", "RayJob", JOB, principal)
    assert f"{JOB}-ray" in f.message and "8265" in f.fix


def test_the_submitter_admitted_elsewhere_than_the_dashboard(renders: dict[str, Docs]) -> None:
    """Its rule admitted to every port (no `to`): the GCS, raylets, Ray Client too."""
    (f,) = hits(broken(renders, lambda d: submitter_rule(d).pop("to")),
                "rayjob-submitter-beyond-dashboard")
    assert (f.severity, f.kind, f.name) == ("error", "AuthorizationPolicy", f"{JOB}-ray")
    assert names_job(f) and "6379" in str(f.value) and "10001" in str(f.value)
    assert "8265" not in str(f.value).split(", ")


def test_the_submitter_with_the_ray_identity(renders: dict[str, Docs]) -> None:
    def edit(d: Docs) -> None:
        submitter(d)["spec"]["serviceAccountName"] = RAY_SA
    found = broken(renders, edit)
    (f,) = hits(found, "rayjob-submitter-ray-identity")
    assert (f.severity, f.kind, f.name, f.value) == ("error", "RayJob", JOB, RAY_SA)
    # said once: not also as the Ray identity shared with another workload
    assert not [x for x in found if x.check.startswith("identity-")]
    assert not hits(found, "rayjob-submitter-beyond-dashboard")


def test_the_submitter_without_a_service_account(renders: dict[str, Docs]) -> None:
    """default: a warning; an error once the policy admits default to the Jobs API."""
    def edit(d: Docs) -> None:
        submitter(d)["spec"].pop("serviceAccountName")
    (f,) = hits(broken(renders, edit), "rayjob-submitter-default-service-account")
    assert (f.severity, f.kind, f.name, f.value) == ("warning", "RayJob", JOB, "default")

    def admit_default(d: Docs) -> None:
        edit(d)
        submitter_rule(d)["from"][0]["source"]["principals"] = [
            f"cluster.local/ns/{NS}/sa/default"]
    (f,) = hits(broken(renders, admit_default), "rayjob-submitter-default-service-account")
    assert f.severity == "error" and f"{JOB}-ray" in f.message


@pytest.mark.parametrize("restart", [None, "Always"])
def test_the_submitter_restart_policy(renders: dict[str, Docs], restart: str | None) -> None:
    def edit(d: Docs) -> None:
        spec = submitter(d)["spec"]
        spec.pop("restartPolicy")
        if restart:
            spec["restartPolicy"] = restart
    (f,) = hits(broken(renders, edit), "rayjob-submitter-restart-policy")
    assert (f.severity, f.kind, f.name, f.value) == ("error", "RayJob", JOB, restart)


def test_no_submitter_template(renders: dict[str, Docs]) -> None:
    found = broken(renders, lambda d: job(d)["spec"].pop("submitterPodTemplate"))
    (f,) = hits(found, "rayjob-submitter-template-missing")
    assert (f.severity, f.kind, f.name) == ("error", "RayJob", JOB)
    # HTTPMode has no submitter (control)
    found = broken(renders, lambda d: (job(d)["spec"].pop("submitterPodTemplate"),
                                       job(d)["spec"].update(submissionMode="HTTPMode")))
    assert not [f for f in found if f.check.startswith("rayjob-submitter-")]


# ------------------------------------------------------------------------ clusterSelector


def test_a_cluster_selector_naming_an_undeclared_cluster(renders: dict[str, Docs]) -> None:
    """Files: a warning (it may be deployed separately); read from a cluster: an error."""
    def edit(d: Docs) -> None:
        job(d)["spec"]["clusterSelector"] = {"ray.io/cluster": "nowhere"}
    docs = base(renders, "existing") + base(renders, "shared")
    edit(docs)
    (f,) = hits(run(docs), "rayjob-cluster-not-found")
    assert (f.severity, f.kind, f.name, f.value) == ("warning", "RayJob", ON_CLUSTER, "nowhere")
    (f,) = hits(run(docs, source="cluster:x"), "rayjob-cluster-not-found")
    assert f.severity == "error"
    assert not hits(run(base(renders, "existing") + base(renders, "shared"), source="cluster:x"),
                    "rayjob-cluster-not-found")


def test_the_existing_cluster_must_admit_the_submitter(renders: dict[str, Docs]) -> None:
    """The cluster's release without dashboardPrincipals (its default): the submitter is
    denied; a rule naming it on more ports admits it beyond the dashboard."""
    docs = base(renders, "existing") + base(renders, "shared")
    policy(docs)["spec"]["rules"].pop()
    (f,) = hits(run(docs), "rayjob-submitter-denied")
    assert (f.severity, f.kind, f.name) == ("error", "RayJob", ON_CLUSTER)
    assert f"RayCluster/{SHARED}" in f.message and "dashboardPrincipals" in f.fix
    docs = base(renders, "existing") + base(renders, "shared")
    policy(docs)["spec"]["rules"][0]["from"][0]["source"]["principals"].append(
        f"cluster.local/ns/{NS}/sa/{ON_CLUSTER}-submitter")
    found = run(docs)
    assert not hits(found, "rayjob-submitter-denied")
    (f,) = hits(found, "rayjob-submitter-beyond-dashboard")
    assert f.kind == "AuthorizationPolicy" and names_job(f, ON_CLUSTER)


def test_the_existing_cluster_s_ray_identity(renders: dict[str, Docs]) -> None:
    """The submitter runs as the existing cluster's Ray account: the RayJob is told, and the
    RayCluster's owners too (another workload shares the identity its policy admits)."""
    docs = base(renders, "existing") + base(renders, "shared")
    submitter(docs)["spec"]["serviceAccountName"] = f"{SHARED}-ray"
    found = run(docs)
    (f,) = hits(found, "rayjob-submitter-ray-identity")
    assert (f.kind, f.name) == ("RayJob", ON_CLUSTER) and f"RayCluster/{SHARED}" in f.message
    (shared,) = hits(found, "identity-shared-service-account")
    assert (shared.kind, shared.name) == ("RayCluster", SHARED)
    assert f"RayJob/{ON_CLUSTER}" in shared.message


# ------------------------------------------------------------------------------ coverage


CASES: list[tuple[str, Edit]] = [
    ("rayjob-selects-job-name", select_job_name("Service")),
    ("rayjob-no-cluster", lambda d: job(d)["spec"].pop("rayClusterSpec")),
    ("rayjob-cluster-not-found", lambda d: (job(d)["spec"].pop("rayClusterSpec"), job(d)[
        "spec"].update(clusterSelector={"ray.io/cluster": "nowhere"}))),
    ("rayjob-dashboard-port-missing", lambda d: cluster_spec(d)["headGroupSpec"][
        "headService"]["spec"]["ports"][1].update(name="dash")),
    ("rayjob-submitter-template-missing", lambda d: job(d)["spec"].pop("submitterPodTemplate")),
    ("rayjob-submitter-default-service-account", lambda d: submitter(d)["spec"].pop(
        "serviceAccountName")),
    ("rayjob-submitter-ray-identity", lambda d: submitter(d)["spec"].update(
        serviceAccountName=RAY_SA)),
    ("rayjob-submitter-restart-policy", lambda d: submitter(d)["spec"].pop("restartPolicy")),
    ("rayjob-submitter-native-sidecar", lambda d: submitter(d)["metadata"]["annotations"].pop(
        "sidecar.istio.io/nativeSidecar")),
    ("rayjob-submitter-denied", lambda d: policy(d)["spec"]["rules"].remove(submitter_rule(d))),
    ("rayjob-submitter-beyond-dashboard", lambda d: submitter_rule(d).pop("to")),
]


def test_cases_cover_the_family() -> None:
    assert [c for c, _ in CASES] == [c.id for c in family.CHECKS]


@pytest.mark.parametrize(("check", "edit"), CASES, ids=[c for c, _ in CASES])
def test_each_case_triggers_its_check_and_never_shows_a_made_up_name(
        renders: dict[str, Docs], check: str, edit: Edit) -> None:
    """Each edit of the clean render triggers its check, naming the RayJob; no finding shows
    the name the audit gives the generated cluster, nor an empty one."""
    assert not hits(run(renders["job"]), check)
    found = broken(renders, edit)
    assert hits(found, check) and all(names_job(f) for f in hits(found, check))
    for f in found:
        text = f"{f.line()} {f.value}"
        assert "-generated>" not in text and "RayCluster/ " not in text and "RayCluster/[" \
            not in text, f.line()
