"""checkov over the pod templates inside every RayCluster the chart renders.

Scanners do not look inside a RayCluster (REFERENCE §6), so tools/ecosystem/checkov_scan.py
turns each head and worker group template into a Pod and runs checkov's Kubernetes checks on
the defaults and every values-examples/*.yaml. Zero findings, except the check ids in ACCEPTED,
each with the reason it is accepted today. When the chart fixes one (secure defaults: issue 11
part 4), test_every_accepted_finding_still_occurs fails until the entry is deleted, so the list
only shrinks.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from chart_support import RAYCLUSTER_EXAMPLES
from ecosystem_support import helm, helm_template, load_script, missing

# Needs the ecosystem tools `make lint-setup` installs; `make check` leaves it out.
pytestmark = pytest.mark.ecosystem

# RayCluster renders (a RayJob's cluster spec is the same: tests/render/test_render_rayjob.py)
EXAMPLES = RAYCLUSTER_EXAMPLES
CASES: list[Path | None] = [None, *EXAMPLES]

# check id -> why the Ray pods fail it today. Keep one line per id; delete the entry when the
# chart's defaults fix it.
ACCEPTED: dict[str, str] = {
    # restricted-PSS defaults (podSecurity.*) fixed CKV_K8S_20/23/28/29/30/31/37; what is left:
    "CKV_K8S_40": "runAsUser 1000, not a high UID: it is the rayproject/ray image's own `ray` "
                  "user (USER 1000, gid 100), which owns /home/ray and its Python environment; "
                  "another uid cannot install runtime_env packages there",
    "CKV_K8S_22": "Ray writes its session dir, logs and spilled objects under /tmp/ray; a "
                  "read-only root filesystem needs an emptyDir for /tmp, which the chart does "
                  "not mount yet",
    "CKV_K8S_38": "multi-group.yaml: the head mounts its service account token because "
                  "KubeRay's in-tree autoscaler (ray.autoscaling) calls the Kubernetes API from "
                  "it; every other pod has automountServiceAccountToken: false",
    "CKV2_K8S_6": "the chart's NetworkPolicy is optional (networkPolicy.enabled, off by default: "
                  "it needs a CNI that enforces it, and Istio's AuthorizationPolicy already "
                  "admits each Ray port by mTLS identity); NetworkPolicies of a render are "
                  "scanned with the pods (test_network_policy_selects_every_ray_pod)",
    # choices, not defects
    "CKV_K8S_8": "no livenessProbe in the template: KubeRay adds its own Ray health probes "
                 "to the pods it creates",
    "CKV_K8S_9": "no readinessProbe in the template: KubeRay adds its own Ray health probes "
                 "to the pods it creates",
    "CKV_K8S_15": "imagePullPolicy IfNotPresent (ray.image.pullPolicy): tags are pinned Ray "
                  "versions; Always makes every pod start depend on the registry",
    "CKV_K8S_43": "images by tag (rayproject/ray:<ray.version>): the version-aware port map "
                  "reads the version from it; a digest is the user's ray.image.tag choice",
    # resources: the defaults set requests and limits for every Ray container (the ray-tls init
    # container takes its group's); one example does not for one container
    "CKV_K8S_10": "kuberay-istio-guide.yaml: the guide's worker group sets no resources "
                  "(reproduced as is)",
    "CKV_K8S_11": "same container as CKV_K8S_10 (CPU limits)",
    "CKV_K8S_12": "same container as CKV_K8S_10 (memory requests)",
    "CKV_K8S_13": "same container as CKV_K8S_10 (memory limits)",
}


@pytest.fixture(scope="module")
def scanner() -> Any:
    eco = load_script("checkov_scan")
    if not eco.checkov_binary().is_file():
        missing(f"checkov {eco.CHECKOV_VERSION} is not installed ({eco.checkov_binary()})")
    return eco


@pytest.fixture(scope="module")
def renders() -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    binary = helm()
    for values in CASES:
        name = "defaults" if values is None else values.name
        text = helm_template(binary, values)
        out[name] = [d for d in yaml.safe_load_all(text) if isinstance(d, dict)]
    return out


@pytest.fixture(scope="module")
def findings(scanner: Any, renders: dict[str, list[dict[str, Any]]]) -> list[Any]:
    objs: list[dict[str, Any]] = []
    for case, docs in renders.items():
        for obj in scanner.scan_input(docs):
            # one resource per case and group: checkov names resources by namespace and name
            obj["metadata"]["namespace"] = Path(case).stem
            objs.append(obj)
    found: list[Any] = scanner.scan(objs)
    return found


def test_pods_from_extracts_every_group_template() -> None:
    """A hand-written RayCluster: one Pod per group with its template's spec, the template's
    labels and the ones KubeRay sets on the pods it creates (REFERENCE §2)."""
    eco = load_script("checkov_scan")
    head_spec = {"containers": [{"name": "ray-head", "image": "rayproject/ray:2.46.0"}]}
    worker_spec = {"containers": [{"name": "ray-worker", "image": "rayproject/ray:2.46.0"}]}
    rc = {"apiVersion": "ray.io/v1", "kind": "RayCluster",
          "metadata": {"name": "demo", "namespace": "ray"},
          "spec": {"headGroupSpec": {"template": {"metadata": {"labels": {"a": "b"}},
                                                  "spec": head_spec}},
                   "workerGroupSpecs": [{"groupName": "cpu", "template": {"spec": worker_spec}}]}}
    other = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "demo"}}
    assert eco.pods_from([rc, other]) == [
        {"apiVersion": "v1", "kind": "Pod",
         "metadata": {"name": "demo-headgroup", "namespace": "ray", "labels": {
             "a": "b", "ray.io/cluster": "demo", "ray.io/node-type": "head",
             "ray.io/group": "headgroup", "ray.io/is-ray-node": "yes",
             "ray.io/identifier": "demo-head"}},
         "spec": head_spec},
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "demo-cpu", "namespace": "ray",
                                                         "labels": {
             "ray.io/cluster": "demo", "ray.io/node-type": "worker", "ray.io/group": "cpu",
             "ray.io/is-ray-node": "yes", "ray.io/identifier": "demo-worker"}},
         "spec": worker_spec},
    ]


def test_every_render_has_ray_pods(renders: dict[str, list[dict[str, Any]]]) -> None:
    eco = load_script("checkov_scan")
    for case, docs in renders.items():
        assert len(eco.pods_from(docs)) >= 2, case  # head + at least one worker group


def test_no_finding_beyond_the_accepted(findings: list[Any]) -> None:
    unexpected = sorted({f"{f.check_id} {f.resource}: {f.name}" for f in findings
                         if f.check_id not in ACCEPTED})
    assert unexpected == []


def test_every_accepted_finding_still_occurs(findings: list[Any]) -> None:
    """An accepted id the chart no longer triggers must leave ACCEPTED."""
    assert sorted(set(ACCEPTED) - {f.check_id for f in findings}) == []


def test_scanner_flags_a_privileged_container(scanner: Any,
                                              renders: dict[str, list[dict[str, Any]]]) -> None:
    """The scan can fail: a privileged Ray container is a finding nobody accepted."""
    docs = copy.deepcopy(renders["defaults"])
    rc = next(d for d in docs if d["kind"] == "RayCluster")
    container = rc["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]
    container["securityContext"] = {"privileged": True}
    found = scanner.scan(scanner.scan_input(docs))
    new = {f.check_id for f in found} - set(ACCEPTED)
    assert "CKV_K8S_16" in new  # "Container should not be privileged"
    assert any(f.resource.endswith("-headgroup") for f in found if f.check_id == "CKV_K8S_16")


def test_network_policy_selects_every_ray_pod(scanner: Any) -> None:
    """CKV2_K8S_6 (no NetworkPolicy selects the pod) is accepted only because the chart's
    NetworkPolicy is off by default: with networkPolicy.enabled it goes away for every group."""
    text = helm_template(helm(), None, "--set", "networkPolicy.enabled=true")
    docs = [d for d in yaml.safe_load_all(text) if isinstance(d, dict)]
    assert [d["kind"] for d in docs].count("NetworkPolicy") == 1
    found = scanner.scan(scanner.scan_input(docs))
    pods = {f.resource for f in found if f.resource.startswith("Pod.")}
    assert len(pods) >= 2  # the head and the worker group were scanned
    assert [f.resource for f in found if f.check_id == "CKV2_K8S_6"] == []
    off = scanner.scan(scanner.scan_input([d for d in docs if d["kind"] != "NetworkPolicy"]))
    assert {f.resource for f in off if f.check_id == "CKV2_K8S_6"} == pods
