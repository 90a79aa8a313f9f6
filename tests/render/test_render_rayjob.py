"""A RayJob (workload.kind=RayJob) from the same port map and pod template as a RayCluster.

The oracles read the rendered manifests only: the RayJob's embedded cluster spec against the
RayCluster the same values render, every mesh object's selector against the job's pod
templates (the operator names the job's cluster itself, so `ray.io/cluster` cannot select
them), the submitter's identity against the policies, and the operator's own CRDs for the
fields each KubeRay version has.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from chart_support import (
    EXAMPLES_DIR,
    RAYJOB_EXAMPLES,
    REPO,
    Renderer,
    helm_run,
    skip_unless_ci,
)

EXAMPLE = EXAMPLES_DIR / "rayjob.yaml"
EXISTING = EXAMPLES_DIR / "rayjob-existing-cluster.yaml"
NS = "jobs"
JOB_SETS = ("workload.kind=RayJob", "rayJob.entrypoint=python job.py")
SELECTING_KINDS = {
    # kind -> where its pod selector lives
    "Service": ("spec", "selector"),
    "AuthorizationPolicy": ("spec", "selector", "matchLabels"),
    "PeerAuthentication": ("spec", "selector", "matchLabels"),
    "Sidecar": ("spec", "workloadSelector", "labels"),
    "NetworkPolicy": ("spec", "podSelector", "matchLabels"),
}


def of(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d.get("kind") == kind]


def one(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = of(docs, kind)
    assert len(found) == 1, [d["metadata"]["name"] for d in found]
    return found[0]


def dig(doc: dict[str, Any], *path: str) -> Any:
    for p in path:
        doc = doc.get(p) or {}
    return doc


def job_pods(job: dict[str, Any]) -> list[dict[str, str]]:
    """The labels every Pod of the job's cluster gets: its template's, plus what the operator
    adds (ray.io/cluster is the generated cluster name: unknown here, never the job's name)."""
    spec = job["spec"]["rayClusterSpec"]
    groups = [("head", "headgroup", spec["headGroupSpec"])]
    groups += [("worker", g["groupName"], g) for g in spec.get("workerGroupSpecs", [])]
    out = []
    for node_type, group, g in groups:
        labels = dict(dig(g, "template", "metadata", "labels"))
        labels.update({"ray.io/cluster": job["metadata"]["name"] + "-x7k2p",
                       "ray.io/node-type": node_type, "ray.io/group": group,
                       "ray.io/is-ray-node": "yes"})
        out.append(labels)
    return out


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def selectors(docs: list[dict[str, Any]]) -> list[tuple[str, dict[str, str]]]:
    out = []
    for d in docs:
        path = SELECTING_KINDS.get(d["kind"])
        if path and (sel := dig(d, *path)):
            out.append((f"{d['kind']}/{d['metadata']['name']}", sel))
    return out


JOB_EXAMPLES = [p for p in RAYJOB_EXAMPLES
                if not (yaml.safe_load(p.read_text())["rayJob"].get("clusterSelector"))]


@pytest.mark.parametrize("example", [None, *JOB_EXAMPLES],
                         ids=["defaults", *(p.stem for p in JOB_EXAMPLES)])
def test_the_job_runs_the_same_cluster_spec_as_a_raycluster(
        render_chart: Renderer, example: Path | None, tmp_path: Path) -> None:
    """The RayJob's rayClusterSpec is the RayCluster the same values render as a cluster: so
    every check of a RayCluster render (tests/render/test_render*.py) holds for the job's
    cluster."""
    values = yaml.safe_load(example.read_text()) if example else {}
    as_cluster = {k: v for k, v in values.items() if k not in ("workload", "rayJob")}
    cluster_file = tmp_path / "cluster.yaml"
    cluster_file.write_text(yaml.safe_dump(as_cluster))
    cluster = one(render_chart(cluster_file, namespace=NS), "RayCluster")["spec"]
    job = one(render_chart(*([example] if example else []), namespace=NS,
                           set_values=() if example else JOB_SETS), "RayJob")
    embedded = copy.deepcopy(job["spec"]["rayClusterSpec"])
    # the only differences: the selection label on every pod template, no upgradeStrategy
    # (the operator never updates a job's cluster), the head Service template's exportTo
    # (KubeRay's copy of a job's head Service takes only the template's annotations), and each
    # worker group's defaults the operator's own RayJob update writes (tests/cluster)
    expected = copy.deepcopy(cluster)
    expected.pop("upgradeStrategy")
    expected["headGroupSpec"]["headService"].setdefault("metadata", {})["annotations"] = \
        cluster["headServiceAnnotations"]
    for g in expected["workerGroupSpecs"]:
        g.update({"numOfHosts": 1, "scaleStrategy": {}})
    groups = [expected["headGroupSpec"], *expected["workerGroupSpecs"]]
    for g in groups:
        g["template"]["metadata"].setdefault("labels", {})["meshray.io/cluster"] = \
            job["metadata"]["name"]
    assert embedded == expected


@pytest.mark.parametrize("values", [(), ("mesh.dataplane=ambient",),
                                    ("networkPolicy.enabled=true", "gateway.enabled=true",
                                     "gateway.routes.dashboard.enabled=true",
                                     "gateway.routes.dashboard.host=ray.example.com",
                                     "rayAuth.enabled=true")])
def test_every_mesh_object_selects_the_jobs_pods(render_chart: Renderer,
                                                 values: tuple[str, ...]) -> None:
    docs = render_chart(namespace=NS, set_values=JOB_SETS + values)
    pods = job_pods(one(docs, "RayJob"))
    found = selectors(docs)
    assert found
    for name, sel in found:
        assert "ray.io/cluster" not in sel, (name, sel)
        assert any(selects(sel, p) for p in pods), (name, sel)


def test_a_selector_on_the_job_name_would_select_nothing(render_chart: Renderer) -> None:
    """The oracle above is not vacuous: KubeRay's own label, with the job's name as the
    cluster's, matches none of the job's Pods."""
    job = one(render_chart(namespace=NS, set_values=JOB_SETS), "RayJob")
    assert not any(selects({"ray.io/cluster": "meshray"}, p) for p in job_pods(job))


def test_two_jobs_never_select_each_others_pods(render_chart: Renderer) -> None:
    a = render_chart(namespace=NS, set_values=(*JOB_SETS, "clusterName=train-a"))
    b = render_chart(namespace=NS, set_values=(*JOB_SETS, "clusterName=train-b"))
    pods_b = job_pods(one(b, "RayJob"))
    for name, sel in selectors(a):
        assert not any(selects(sel, p) for p in pods_b), (name, sel)


def submitter(docs: list[dict[str, Any]]) -> dict[str, Any]:
    return one(docs, "RayJob")["spec"]["submitterPodTemplate"]


def test_the_submitter_is_in_the_mesh_as_its_own_identity(render_chart: Renderer) -> None:
    docs = render_chart(EXAMPLE, namespace=NS)
    sub = submitter(docs)
    meta, spec = sub["metadata"], sub["spec"]
    assert meta["labels"]["sidecar.istio.io/inject"] == "true"
    # a classic istio-proxy keeps the Job's Pod running after the submitter exits (istio#11045)
    assert meta["annotations"]["sidecar.istio.io/nativeSidecar"] == "true"
    accounts = {d["metadata"]["name"] for d in of(docs, "ServiceAccount")}
    assert spec["serviceAccountName"] in accounts
    ray_accounts = {dig(g, "template", "spec").get("serviceAccountName")
                    for g in [one(docs, "RayJob")["spec"]["rayClusterSpec"]["headGroupSpec"]]}
    assert spec["serviceAccountName"] not in ray_accounts
    assert spec["restartPolicy"] == "Never"
    assert spec["automountServiceAccountToken"] is False
    for c in spec["containers"]:
        sc = c["securityContext"]
        assert sc["allowPrivilegeEscalation"] is False and sc["capabilities"]["drop"] == ["ALL"]
        assert sc["runAsNonRoot"] is True
    # the submitter is not one of the cluster's Pods: no Ray selector picks it
    for name, sel in selectors(docs):
        assert not selects(sel, meta["labels"]), name


def test_the_submitter_template_keeps_the_users_keys(render_chart: Renderer) -> None:
    docs = render_chart(REPO / "tests/fixtures/values-corpus/good/rayjob-submitter-template.yaml",
                        namespace=NS)
    sub = submitter(docs)
    assert sub["metadata"]["labels"]["team"] == "research"
    assert sub["spec"]["nodeSelector"] == {"pool": "batch"}
    (c,) = sub["spec"]["containers"]
    assert c["name"] == "submitter" and c["resources"]["limits"] == {"cpu": "500m",
                                                                      "memory": "512Mi"}
    assert c["image"].startswith("rayproject/ray:")


def rules_naming(policy: dict[str, Any], principal: str) -> list[dict[str, Any]]:
    return [r for r in policy["spec"]["rules"]
            if any(principal in dig(f, "source").get("principals", []) for f in r["from"])]


def test_the_submitter_and_the_operator_reach_the_jobs_api_only(render_chart: Renderer) -> None:
    docs = render_chart(EXAMPLE, namespace=NS, set_values=("networkPolicy.enabled=true",))
    job = one(docs, "RayJob")
    name = job["metadata"]["name"]
    dashboard = job["spec"]["rayClusterSpec"]["headGroupSpec"]["rayStartParams"]["dashboard-port"]
    values = yaml.safe_load(EXAMPLE.read_text())
    op = values["kuberay"]["operator"]
    policy = next(d for d in of(docs, "AuthorizationPolicy")
                  if d["metadata"]["name"] == f"{name}-ray")
    for principal in (f"cluster.local/ns/{NS}/sa/{submitter(docs)['spec']['serviceAccountName']}",
                      f"cluster.local/ns/{op['namespace']}/sa/{op['serviceAccount']}"):
        rules = rules_naming(policy, principal)
        assert rules, principal
        for r in rules:
            assert [op_["operation"].get("ports") for op_ in r["to"]] == [[dashboard]], r
    netpol = next(d for d in of(docs, "NetworkPolicy") if d["metadata"]["name"] == f"{name}-ray")
    sub_labels = submitter(docs)["metadata"]["labels"]
    admitted: dict[str, set[int]] = {"submitter": set(), "operator": set()}
    for rule in netpol["spec"]["ingress"]:
        ports = {p["port"] for p in rule["ports"]}
        for peer in rule["from"]:
            pod_sel = dig(peer, "podSelector", "matchLabels")
            ns_sel = dig(peer, "namespaceSelector", "matchLabels")
            if not ns_sel and selects(pod_sel, sub_labels):
                admitted["submitter"] |= ports
            if ns_sel.get("kubernetes.io/metadata.name") == op["namespace"]:
                admitted["operator"] |= ports
    assert admitted == {"submitter": {int(dashboard)}, "operator": {int(dashboard)}}


def test_http_mode_has_no_submitter(render_chart: Renderer) -> None:
    docs = render_chart(namespace=NS, set_values=(*JOB_SETS, "rayJob.submissionMode=HTTPMode"))
    job = one(docs, "RayJob")
    assert "submitterPodTemplate" not in job["spec"]
    assert not any(d["metadata"]["name"].endswith("-submitter") for d in of(docs, "ServiceAccount"))
    policy = one(docs, "AuthorizationPolicy")
    assert not rules_naming(policy, f"cluster.local/ns/{NS}/sa/meshray-submitter")
    assert rules_naming(policy, "cluster.local/ns/kuberay-system/sa/kuberay-operator")


def test_on_an_existing_cluster_only_the_job_and_its_identity_render(
        render_chart: Renderer) -> None:
    docs = render_chart(EXISTING, namespace=NS)
    assert sorted(d["kind"] for d in docs) == ["RayJob", "ServiceAccount"]
    job = one(docs, "RayJob")
    assert job["spec"]["clusterSelector"] == {"ray.io/cluster": "raycluster-shared"}
    assert "rayClusterSpec" not in job["spec"]
    assert one(docs, "ServiceAccount")["metadata"]["name"] == \
        submitter(docs)["spec"]["serviceAccountName"]


def test_the_fields_pass_through_as_kuberay_names_them(render_chart: Renderer) -> None:
    values = yaml.safe_load(EXAMPLE.read_text())["rayJob"]
    spec = one(render_chart(EXAMPLE, namespace=NS), "RayJob")["spec"]
    for key in ("entrypoint", "runtimeEnvYAML", "submissionMode", "shutdownAfterJobFinishes",
                "ttlSecondsAfterFinished", "activeDeadlineSeconds", "submitterConfig"):
        assert spec[key] == values[key], key


# ---- the KubeRay versions the chart refuses fields for, against the operators' own CRDs ----
def rayjob_crd_fields(version: str) -> set[str]:
    """The top-level spec fields of the RayJob CRD in the ray-operator Go module."""
    if not shutil.which("go"):
        skip_unless_ci("go is not installed")
    out = subprocess.run(["go", "mod", "download", "-json",
                          f"github.com/ray-project/kuberay/ray-operator@{version}"],
                         capture_output=True, text=True, timeout=600, check=False,
                         env={**os.environ, "GOFLAGS": "-mod=mod"}, cwd="/tmp")
    if out.returncode != 0:
        skip_unless_ci(f"the Go module proxy does not serve ray-operator {version}")
    module = Path(json.loads(out.stdout)["Dir"])
    doc = yaml.safe_load((module / "config/crd/bases/ray.io_rayjobs.yaml").read_text())
    schema = doc["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return set(schema["properties"]["spec"]["properties"])


FIELD_VALUES = {
    "backoffLimit": {"backoffLimit": 1},
    "submitterConfig": {"submitterConfig": {"backoffLimit": 1}},
    "deletionStrategy": {"shutdownAfterJobFinishes": False,
                         "deletionStrategy": {"onSuccess": {"policy": "DeleteCluster"},
                                              "onFailure": {"policy": "DeleteNone"}}},
}


@pytest.mark.parametrize("field", sorted(FIELD_VALUES))
def test_fields_refused_for_the_oldest_operator_are_missing_from_its_crd(
        field: str, tmp_path: Path) -> None:
    """The chart refuses the field for kuberay.version=1.1.0 and names it, because v1.1.0's
    RayJob CRD lacks it; v1.6.2's CRD (the default kuberay.version) has it, and renders."""
    assert field not in rayjob_crd_fields("v1.1.0")
    assert field in rayjob_crd_fields("v1.6.2")
    values = {"workload": {"kind": "RayJob"},
              "rayJob": {"entrypoint": "python job.py", **FIELD_VALUES[field]}}
    old = helm_run({**values, "kuberay": {"version": "1.1.0"}}, tmp_path)
    assert old.returncode != 0 and f"rayJob.{field}: needs KubeRay >= " in old.stderr, old.stderr
    new = helm_run(values, tmp_path)
    assert new.returncode == 0, new.stderr
    assert f"  {field}:" in new.stdout


def test_the_port_table_shows_the_jobs_cluster(render_chart_text: Any, tmp_path: Path) -> None:
    """`meshray render --ports` lists a RayJob's cluster as it lists the same RayCluster."""
    from meshray import manifests, ports

    values = yaml.safe_load(EXAMPLE.read_text())
    cluster_file = tmp_path / "cluster.yaml"
    cluster_file.write_text(yaml.safe_dump({k: v for k, v in values.items()
                                            if k not in ("workload", "rayJob")}))
    job_rows = ports.table(manifests.parse_stream(render_chart_text(EXAMPLE), "job"))
    cluster_rows = ports.table(manifests.parse_stream(render_chart_text(cluster_file), "rc"))
    assert job_rows and {r.cluster for r in job_rows} == {"RayJob/rayjob-sample"}
    assert [(r.port, r.name, r.protocol, r.groups, r.service) for r in job_rows] == \
        [(r.port, r.name, r.protocol, r.groups, r.service) for r in cluster_rows]
