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
from test_ecosystem_support import REPO, helm, helm_template, load_script, missing

EXAMPLES = sorted((REPO / "values-examples").glob("*.yaml"))
CASES: list[Path | None] = [None, *EXAMPLES]

# check id -> why the Ray pods fail it today. Keep one line per id; delete the entry when the
# chart's defaults fix it.
ACCEPTED: dict[str, str] = {
    # the Ray pods' securityContext is empty today (values head/workerDefaults.securityContext
    # and podSecurityContext default to {}); issue 11 part 4 adds restricted-PSS defaults
    "CKV_K8S_20": "empty securityContext: allowPrivilegeEscalation is not set to false",
    "CKV_K8S_23": "empty securityContext: runAsNonRoot is not set (the image's user decides)",
    "CKV_K8S_28": "empty securityContext: capabilities (NET_RAW) are not dropped",
    "CKV_K8S_29": "empty pod securityContext",
    "CKV_K8S_30": "empty container securityContext",
    "CKV_K8S_31": "empty securityContext: no RuntimeDefault seccomp profile",
    "CKV_K8S_37": "empty securityContext: capabilities are not dropped (drop: [ALL])",
    "CKV_K8S_40": "empty securityContext: runAsUser is not set to a high UID",
    "CKV_K8S_22": "Ray writes its session dir, logs and spilled objects under /tmp/ray; a "
                  "read-only root filesystem needs an emptyDir for /tmp, which the chart does "
                  "not mount yet",
    "CKV_K8S_38": "the service account token stays mounted: KubeRay's autoscaler container on "
                  "the head calls the Kubernetes API (workers could go without; not split yet)",
    "CKV2_K8S_6": "the chart renders no NetworkPolicy yet (issue 11 part 4: optional one); "
                  "NetworkPolicies of a render are scanned with the pods, so this goes away "
                  "when one selects them",
    # choices, not defects
    "CKV_K8S_8": "no livenessProbe in the template: KubeRay adds its own Ray health probes "
                 "to the pods it creates",
    "CKV_K8S_9": "no readinessProbe in the template: KubeRay adds its own Ray health probes "
                 "to the pods it creates",
    "CKV_K8S_15": "imagePullPolicy IfNotPresent (ray.image.pullPolicy): tags are pinned Ray "
                  "versions; Always makes every pod start depend on the registry",
    "CKV_K8S_43": "images by tag (rayproject/ray:<ray.version>): the version-aware port map "
                  "reads the version from it; a digest is the user's ray.image.tag choice",
    # resources: the defaults set requests and limits for every Ray container; two examples
    # do not for one container each
    "CKV_K8S_10": "rayclient-ingress-tls.yaml: the Ray-native TLS init container (ray-tls) "
                  "has no resources; kuberay-istio-guide.yaml: the guide's worker group sets "
                  "none (reproduced as is)",
    "CKV_K8S_11": "same containers as CKV_K8S_10 (CPU limits)",
    "CKV_K8S_12": "same containers as CKV_K8S_10 (memory requests)",
    "CKV_K8S_13": "same containers as CKV_K8S_10 (memory limits)",
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
